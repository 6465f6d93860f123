import t from 'tap'
import { request } from 'undici'
import {
  answerJson, finishedJob, fixture, fuseForm, heldUpstream, JOB_LINES, LEGACY_OK, ownRedis, redisPrefix, sharedRedisUrl, startService, stubEnv, stubUpstream, until
} from '../helper.js'

/** What interrupts a job on its way (the upstream failing or throttling, the line stalling, the service closing), and what the job and its client get. */

const photo = fixture('orientation-1.jpg')


for (const [line, lineEnv] of Object.entries(JOB_LINES)) {
  t.test(`${line} line: an open circuit breaker holds the line; only the jobs whose calls failed fail`, async (t) => {
    // The first three calls fail (a proxy's HTML 502), then the upstream recovers.
    let failuresLeft = 3
    const upstream = await stubUpstream(t, (_call, response) => {
      if (failuresLeft-- > 0) {
        response.writeHead(502, { 'content-type': 'text/html' }).end('<html>bad gateway</html>')
        return
      }
      answerJson(response, LEGACY_OK)
    })
    const { url } = await startService(t, {
      ...stubEnv('legacy', upstream.url), ...lineEnv(), QUEUE_WORKERS: '1', UPSTREAM_RETRIES: '0',
      UPSTREAM_BREAKER_MIN_CALLS: '3', UPSTREAM_BREAKER_WINDOW: '3', UPSTREAM_BREAKER_OPEN_MS: '500', UPSTREAM_BREAKER_HALF_OPEN_SUCCESSES: '1'
    })
    const locations = []
    for (let i = 0; i < 8; i++) locations.push((await fuseForm(url, photo, {}, { prefer: 'respond-async' })).headers.location as string)
    const jobs = []
    for (const location of locations) jobs.push(await finishedJob(url, location))
    t.same(jobs.map((job) => job.status), ['failed', 'failed', 'failed', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded'],
      'the three jobs whose calls failed fail; the others wait out the open circuit')
    t.ok(jobs.slice(0, 3).every((job) => job.error.code !== 'FUSION_UPSTREAM_UNAVAILABLE'))
    t.equal(upstream.calls.length, 8, 'one call a job')
  })
}

for (const [line, lineEnv] of Object.entries(JOB_LINES)) {
  t.test(`${line} line: while frequency control pauses the line, the ETAs given count the pause`, async (t) => {
    let refusedAt = 0
    const upstream = await stubUpstream(t, (call, response) => {
      if (call.number > 1) return answerJson(response, LEGACY_OK)
      refusedAt = Date.now()
      answerJson(response, { ret: '-20004', msg: 'too frequent' })
    })
    const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...lineEnv(), QUEUE_WORKERS: '1', UPSTREAM_BACKOFF_MS: '4000' })
    const first = (await fuseForm(url, photo, {}, { prefer: 'respond-async' })).headers.location as string
    await until(() => upstream.calls.length === 1)
    const view = async (location: string): Promise<any> => await (await request(`${url}${location}`)).body.json()
    await until(async () => (await view(first)).status === 'queued')
    // The pause began once the refusal came back: at least this much of it is left.
    const pauseLeft = (): number => (4_000 - (Date.now() - refusedAt)) / 1000
    const waiting = await view(first)
    t.ok(waiting.etaSeconds >= pauseLeft(), `the job put back: ${waiting.etaSeconds} s, with the pause's ${pauseLeft().toFixed(1)} s left`)
    const second = (await fuseForm(url, photo, {}, { prefer: 'respond-async' }))
    t.ok(second.json().etaSeconds >= pauseLeft(), `a job queued meanwhile: ${second.json().etaSeconds} s`)
    t.equal((await finishedJob(url, first)).status, 'succeeded')
    t.equal((await finishedJob(url, second.headers.location as string)).status, 'succeeded')
  })
}

t.test('redis line: frequency control pauses the line and puts the job back at its head; it never fails it', async (t) => {
  const order: string[] = []
  const upstream = await stubUpstream(t, (call, response) => {
    order.push(JSON.parse(call.body.toString()).model_id)
    if (call.number === 1) answerJson(response, { ret: '-20004', msg: 'too frequent' })
    else answerJson(response, LEGACY_OK)
  })
  const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...JOB_LINES.redis(), QUEUE_WORKERS: '1', UPSTREAM_BACKOFF_MS: '500' })
  const first = (await fuseForm(url, photo, { model_id: 'qc_100307_152854_1' }, { prefer: 'respond-async' })).headers.location as string
  await until(() => upstream.calls.length > 0)
  const second = (await fuseForm(url, photo, { model_id: 'qc_100307_152854_2' }, { prefer: 'respond-async' })).headers.location as string
  t.equal((await finishedJob(url, first)).status, 'succeeded', 'the refused job was sent again, not failed')
  t.equal((await finishedJob(url, second)).status, 'succeeded')
  t.same(order, ['qc_100307_152854_1', 'qc_100307_152854_1', 'qc_100307_152854_2'], 'first in, first out: the refused job went first again')
})

t.test('redis line: a wait its line fails to answer gives the queued job\'s id (202), and the same key the same job', async (t) => {
  // The line on a Redis of this test's own, paused below; the stored answers on the shared one.
  const { url: lineRedisUrl, admin } = await ownRedis(t)
  const upstream = await heldUpstream(t)
  const { url } = await startService(t, {
    ...stubEnv('legacy', upstream.url),
    REDIS_URL: sharedRedisUrl(),
    QUEUE_REDIS_URL: lineRedisUrl,
    REDIS_KEY_PREFIX: redisPrefix(),
    QUEUE_WORKERS: '1'
  })
  const headers = { prefer: 'respond-async, wait=20', 'idempotency-key': 'wait-on-a-stalled-line' }
  const replying = fuseForm(url, photo, {}, headers)
  await until(() => upstream.calls.length === 1)
  // Longer than the line's command timeout: the wait's look at the job fails.
  await admin.call('CLIENT', 'PAUSE', '3000', 'ALL')
  const reply = await replying
  t.equal(reply.status, 202, 'answered 202, not 503: the job is queued')
  t.match(reply.headers.location, /^\/fuse\/jobs\//)
  // Answered once the pause is over.
  await admin.ping()
  upstream.release()
  const again = await fuseForm(url, photo, {}, headers)
  t.equal(again.headers.location, reply.headers.location, 'a retry with the same key follows the same job')
  t.equal((await finishedJob(url, reply.headers.location as string)).status, 'succeeded')
  t.equal(upstream.calls.length, 1, 'sent upstream once')
})

t.test('redis line: waits still running when the service starts closing are answered 202 with their jobs\' ids', async (t) => {
  const upstream = await heldUpstream(t)
  const { app, url } = await startService(t, {
    ...stubEnv('legacy', upstream.url), ...JOB_LINES.redis(), QUEUE_WORKERS: '1', QUEUE_MAX_JOBS_PER_CLIENT: '100'
  })
  const replying = Array.from({ length: 3 }, async () => await fuseForm(url, photo, {}, { prefer: 'respond-async, wait=60' }))
  await until(() => upstream.calls.length === 1)
  await new Promise((resolve) => setTimeout(resolve, 500))
  const closed = app.close()
  // A guard, not a measure: unanswered after 20 s, the waits were not cut short.
  const replies = await Promise.race([Promise.all(replying), new Promise<undefined>((resolve) => setTimeout(() => { resolve(undefined) }, 20_000).unref())])
  t.same(replies?.map((reply) => reply.status), [202, 202, 202], 'answered at once, not at the end of the wait (which outlasts the grace period)')
  t.ok(replies?.every((reply) => /^\/fuse\/jobs\//.test(String(reply.headers.location))), 'each with where to follow its job')
  t.equal(replies?.[0]?.headers.connection, 'close')
  upstream.release()
  await closed
})

t.test('memory line: a wait still running when the service starts closing goes on, and gets the answer itself', async (t) => {
  // The line ends with the process: a job id would lead nowhere.
  const upstream = await heldUpstream(t)
  const { app, url } = await startService(t, { ...stubEnv('legacy', upstream.url), QUEUE_WORKERS: '1' })
  const replying = fuseForm(url, photo, {}, { prefer: 'respond-async, wait=60' })
  await until(() => upstream.calls.length === 1)
  const closed = app.close()
  await new Promise((resolve) => setTimeout(resolve, 500))
  upstream.release()
  const reply = await replying
  t.equal(reply.status, 200, 'the fusion\'s own answer')
  t.equal(reply.json().imageUrl, LEGACY_OK.img_url)
  t.equal(reply.headers['preference-applied'], 'wait=60')
  await closed
})

