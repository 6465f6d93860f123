import t, { type Test } from 'tap'
import { request } from 'undici'
import { answerJson, finishedJob, fixture, fuseForm, LEGACY_OK, redisPrefix, runOnFreePort, sharedRedisUrl, stubUpstream } from '../helper.js'


/** A replica as operators run it: its own process, on the shared Redis, in front of `upstreamUrl`. */
async function replica (t: Test, upstreamUrl: string, prefix: string): Promise<{ url: string, kill: (signal: NodeJS.Signals) => void, exited: Promise<number | null> }> {
  const { process: child, url } = await runOnFreePort(t, 'src/server.ts', {
    HOST: '127.0.0.1',
    TENCENT_LEGACY_URL: upstreamUrl,
    REDIS_URL: sharedRedisUrl(),
    REDIS_KEY_PREFIX: prefix,
    QUEUE_WORKERS: '1',
    // Short, so that a killed replica's job is taken up soon; long enough that a replica starting up on a busy machine
    // (loading its modules as its first job runs) keeps the lock of the job it is sending.
    QUEUE_LOCK_SECONDS: '5',
    RATE_LIMIT_MAX: '1000'
  }, /Server listening/)
  return { url, kill: child.kill, exited: child.exited }
}

t.test('a replica killed with SIGKILL loses no queued job, and a job it was sending is never sent twice', async (t) => {
  // The first call is never answered: the replica dies with it in flight.
  const upstream = await stubUpstream(t, (call, response) => { if (call.number > 1) answerJson(response, LEGACY_OK) })
  const prefix = redisPrefix()
  const doomed = await replica(t, upstream.url, prefix)
  const sending = (await fuseForm(doomed.url, fixture('orientation-1.jpg'), {}, { prefer: 'respond-async' })).headers.location as string
  const queued = (await fuseForm(doomed.url, fixture('orientation-1.jpg'), {}, { prefer: 'respond-async' })).headers.location as string
  for (let i = 0; i < 200 && upstream.calls.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(upstream.calls.length, 1, 'the first job\'s call went out')
  doomed.kill('SIGKILL')
  await doomed.exited

  const survivor = await replica(t, upstream.url, prefix)
  const sent = await finishedJob(survivor.url, sending)
  t.equal(sent.status, 'failed', 'the job whose call may have been billed is not sent again')
  t.equal(sent.error.code, 'FUSION_JOB_INTERRUPTED')
  t.equal(sent.error.statusCode, 503)
  const recovered = await finishedJob(survivor.url, queued)
  t.equal(recovered.status, 'succeeded', 'the queued job is taken up by the other replica')
  t.equal(upstream.calls.length, 2, 'one call per job, none repeated')
  const metrics = await (await request(`${survivor.url}/metrics`)).body.text()
  t.match(metrics, /^fusion_jobs_interrupted_total 1$/m)
})

t.test('SIGTERM finishes the job a replica is sending, and leaves the queued ones to the others', async (t) => {
  let answer: (() => void) | undefined
  const upstream = await stubUpstream(t, (call, response) => {
    if (call.number === 1) answer = () => { answerJson(response, LEGACY_OK) }
    else answerJson(response, LEGACY_OK)
  })
  const prefix = redisPrefix()
  const leaving = await replica(t, upstream.url, prefix)
  const sending = (await fuseForm(leaving.url, fixture('orientation-1.jpg'), {}, { prefer: 'respond-async' })).headers.location as string
  const queued = (await fuseForm(leaving.url, fixture('orientation-1.jpg'), {}, { prefer: 'respond-async' })).headers.location as string
  for (let i = 0; i < 200 && answer === undefined; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  leaving.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, 300))
  answer!()
  t.equal(await leaving.exited, 0, 'it exits once its job is done')

  const staying = await replica(t, upstream.url, prefix)
  t.equal((await finishedJob(staying.url, sending)).status, 'succeeded', 'the job it was sending was finished, not dropped')
  t.equal((await finishedJob(staying.url, queued)).status, 'succeeded', 'the queued job waited for another replica')
  t.equal(upstream.calls.length, 2)
})
