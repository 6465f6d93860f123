import { Writable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { closedPort } from '../../scripts/free-port.js'
import { finishedJob, fixture, fuseForm, heldUpstream, LEGACY_OK, ownRedis, redisPrefix, sharedRedisUrl, startService, stubEnv, until } from '../helper.js'

/** The Redis line (src/jobs/redis-line.ts) as the service runs it, each test on a Redis of its own where it tampers with it. */

const photo = fixture('orientation-1.jpg')

async function view (url: string, location: string): Promise<any> {
  return await (await request(`${url}${location}`)).body.json()
}

t.test('redis line: a job that would fill its Redis past 90 % of maxmemory is 503 FUSION_QUEUE_FULL; every job taken ends', async (t) => {
  // A Redis of this test's own: its memory limit concerns no other test.
  const { url: redisUrl, admin } = await ownRedis(t)
  const usedMemory = async (): Promise<number> => Number(/^used_memory:(\d+)/m.exec(await admin.info('memory'))?.[1])
  const upstream = await heldUpstream(t)
  const { url } = await startService(t, {
    ...stubEnv('legacy', upstream.url), REDIS_URL: redisUrl, REDIS_KEY_PREFIX: redisPrefix(), QUEUE_WORKERS: '1', QUEUE_MAX_JOBS_PER_CLIENT: '1000'
  })
  // A photo of about 100 KB once normalised; the first job loads BullMQ's scripts and holds the worker.
  const large = fixture('face.jpg')
  const first = await fuseForm(url, large, {}, { prefer: 'respond-async' })
  t.equal(first.status, 202)
  await until(() => upstream.calls.length === 1)
  const limit = await usedMemory() + 4 * 1024 * 1024
  await admin.config('SET', 'maxmemory', String(limit))
  await admin.config('SET', 'maxmemory-policy', 'noeviction')

  const taken = [first]
  let refused
  for (let i = 0; i < 200 && refused === undefined; i++) {
    const reply = await fuseForm(url, large, {}, { prefer: 'respond-async' })
    if (reply.status === 202) taken.push(reply)
    else refused = reply
  }
  t.ok(taken.length > 10, `jobs are taken until the store nears its limit (${taken.length})`)
  t.equal(refused?.status, 503)
  t.equal(refused?.json().code, 'FUSION_QUEUE_FULL', 'refused as a full line, before Redis refuses a write')
  t.ok(Number(refused?.headers['retry-after']) >= 10, 'with a Retry-After of 10 s at least: memory comes back slowly')
  t.ok(await usedMemory() <= limit, 'the store stays within its limit')

  upstream.release()
  for (const reply of taken) {
    t.equal((await finishedJob(url, reply.headers.location as string)).status, 'succeeded', 'every job taken ends with its result stored')
  }
})

t.test('redis line: views of queued jobs share one read of the line a second, not a walk of it each', async (t) => {
  // A Redis of this test's own, to count the commands the views send.
  const { url: redisUrl, admin } = await ownRedis(t)
  const upstream = await heldUpstream(t)
  const { url } = await startService(t, {
    ...stubEnv('legacy', upstream.url), REDIS_URL: redisUrl, REDIS_KEY_PREFIX: redisPrefix(), QUEUE_WORKERS: '1', QUEUE_MAX_JOBS_PER_CLIENT: '100'
  })
  const locations = []
  for (let i = 0; i < 13; i++) locations.push((await fuseForm(url, photo, {}, { prefer: 'respond-async' })).headers.location as string)
  await until(() => upstream.calls.length === 1)
  const queued = locations.slice(1)

  await admin.config('RESETSTAT')
  const views = await Promise.all([0, 1, 2, 3].flatMap(() => queued.map(async (location) => await view(url, location))))
  t.same(views.map((view) => view.position), [0, 1, 2, 3].flatMap(() => queued.map((_location, index) => index + 1)),
    'each queued job at its place, the oldest next')
  const stats = await admin.info('commandstats')
  const calls = (command: string): number => Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(stats)?.[1] ?? 0)
  t.equal(calls('lpos'), 0, 'no walk of the line per view')
  t.ok(calls('lrange') >= 1 && calls('lrange') <= 2, `${queued.length * 4} views, ${calls('lrange')} read(s) of the line`)
  upstream.release()
})

t.test('redis line: a Redis stall as a job ends leaves its outcome standing', async (t) => {
  const { url: lineRedisUrl, admin } = await ownRedis(t)
  const upstream = await heldUpstream(t)
  const { url } = await startService(t, {
    ...stubEnv('legacy', upstream.url), REDIS_URL: sharedRedisUrl(), QUEUE_REDIS_URL: lineRedisUrl, REDIS_KEY_PREFIX: redisPrefix(), QUEUE_WORKERS: '1'
  })
  const { location } = (await fuseForm(url, photo, {}, { prefer: 'respond-async' })).headers
  await until(() => upstream.calls.length === 1)
  // Longer than the line's command timeout: the cleanup after the answer fails; storing the outcome waits it out.
  await admin.call('CLIENT', 'PAUSE', '3000', 'ALL')
  upstream.release()
  await admin.ping()
  const job = await finishedJob(url, location as string)
  t.equal(job.status, 'succeeded', 'the billed answer is the job\'s, not a 500')
  t.equal(job.result.imageUrl, LEGACY_OK.img_url)
})

t.test('redis line: a Redis stall as a job is about to be sent puts it back in the line, and it is sent once', async (t) => {
  const { url: lineRedisUrl, admin } = await ownRedis(t)
  const upstream = await heldUpstream(t)
  upstream.release()
  const lines: string[] = []
  const logStream = new Writable({ write (chunk, _encoding, done) { lines.push(String(chunk)); done() } })
  // The template's budget gives a call every 5 s: the second job, taken at once, waits that long for its slot.
  const { url } = await startService(t, {
    ...stubEnv('legacy', upstream.url), REDIS_URL: sharedRedisUrl(), QUEUE_REDIS_URL: lineRedisUrl, REDIS_KEY_PREFIX: redisPrefix(),
    QUEUE_WORKERS: '2', UPSTREAM_PROJECT_QPS: '100307=0.2', UPSTREAM_BUDGET_WAIT_MS: '15000', LOG_LEVEL: 'warn'
  }, { logStream })
  const first = (await fuseForm(url, photo, {}, { prefer: 'respond-async' })).headers.location as string
  const second = (await fuseForm(url, photo, {}, { prefer: 'respond-async' })).headers.location as string
  await until(() => upstream.calls.length === 1)
  await until(async () => (await view(url, second)).status === 'running')
  // Writes wait 9 s: the "sent" marker, written when the slot comes, times out (2 s) before they resume.
  await admin.call('CLIENT', 'PAUSE', '9000', 'WRITE')

  t.equal((await finishedJob(url, first)).status, 'succeeded')
  const job = await finishedJob(url, second)
  t.equal(job.status, 'succeeded', 'the job waited for its Redis instead of failing')
  t.equal(upstream.calls.length, 2, 'each job was sent once')
  t.ok(lines.some((line) => line.includes('its Redis failed before a call went out')), 'the marker could not be written in time')
})

t.test('redis line: a replica whose circuit breaker is open stops taking jobs, and the others go on', async (t) => {
  const line = { REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix(), QUEUE_WORKERS: '1' }
  // A replica that cannot reach the upstream: one failure opens its breaker for a minute.
  const cut = await startService(t, {
    ...stubEnv('legacy', `http://127.0.0.1:${await closedPort()}/fuseapi/face`), ...line,
    UPSTREAM_RETRIES: '0', UPSTREAM_BREAKER_MIN_CALLS: '1', UPSTREAM_BREAKER_WINDOW: '1', UPSTREAM_BREAKER_OPEN_MS: '60000'
  })
  t.equal((await fuseForm(cut.url, photo)).json().code, 'FUSION_UPSTREAM_UNREACHABLE')
  const { location } = (await fuseForm(cut.url, photo, {}, { prefer: 'respond-async' })).headers
  const requeued = /^fusion_jobs_requeued_total\{cause="breaker_open"\} 1$/m
  const metrics = async (): Promise<string> => await (await request(`${cut.url}/metrics`)).body.text()
  await until(async () => requeued.test(await metrics()))

  const upstream = await heldUpstream(t)
  upstream.release()
  const healthy = await startService(t, { ...stubEnv('legacy', upstream.url), ...line })
  const started = Date.now()
  const job = await finishedJob(healthy.url, location as string)
  t.equal(job.status, 'succeeded', 'the job is sent by a replica that can reach the upstream')
  t.ok(Date.now() - started < 10_000, `without waiting for the other replica's breaker (${Date.now() - started} ms)`)
  t.equal(upstream.calls.length, 1)
  t.match(await metrics(), requeued, 'the replica cut off took no job again')
})
