import t from 'tap'
import { connect } from 'node:net'
import { request } from 'undici'
import { JOB_READS_PER_SUBMISSION } from '../../src/routes/fuse-jobs.js'
import { post, redisPrefix, sharedRedisUrl, startService } from '../helper.js'

// An empty JSON body: refused with 400 after the limiter, so each call is cheap and still counted.
const cheap = async (url: string, headers: Record<string, string> = {}): Promise<Awaited<ReturnType<typeof post>>> =>
  await post(`${url}/fuse`, '{}', { 'content-type': 'application/json', ...headers })

t.test('probing unknown paths and wrong methods is limited too', async (t) => {
  const { url } = await startService(t, { RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW_MS: '30000', REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() })
  const statuses: number[] = []
  for (const [path, method] of [['/nope', 'GET'], ['/fuse', 'GET'], ['/admin', 'GET'], ['/templates', 'DELETE']] as const) {
    const reply = await request(`${url}${path}`, { method })
    statuses.push(reply.statusCode)
    await reply.body.dump()
  }
  t.same(statuses, [404, 405, 429, 429])
  const health = await request(`${url}/healthz`)
  t.equal(health.statusCode, 200, 'health checks are never limited')
  await health.body.dump()
})

t.test('over the limit: 429 with Retry-After in seconds and the rate-limit headers', async (t) => {
  const { url } = await startService(t, { RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW_MS: '30000', REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() })
  const first = await cheap(url)
  t.equal(first.status, 400)
  t.equal(first.headers['x-ratelimit-limit'], '2')
  t.equal(first.headers['x-ratelimit-remaining'], '1')
  t.equal((await cheap(url)).status, 400)
  const third = await cheap(url)
  t.equal(third.status, 429)
  t.match(third.json(), { statusCode: 429, code: 'FUSION_CLIENT_RATE_LIMITED', error: 'Too Many Requests', requestId: String })
  const retryAfter = Number(third.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= 30, `Retry-After ${retryAfter} s: the window's remaining time, in seconds`)
  t.equal(third.headers['x-ratelimit-remaining'], '0')

  const health = await request(`${url}/healthz`)
  t.equal(health.statusCode, 200, 'health checks are never limited')
  await health.body.dump()
})

t.test('the limiter answers before the body is read', async (t) => {
  const { url } = await startService(t, { RATE_LIMIT_MAX: '1', REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() })
  await cheap(url)
  // Headers announcing a 5 MB upload, and not one byte of it.
  const socket = connect(Number(new URL(url).port), '127.0.0.1')
  socket.setTimeout(10_000, () => socket.destroy())
  socket.write('POST /fuse HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000000\r\n\r\n')
  const answer = await new Promise<string>((resolve) => {
    let text = ''
    socket.on('data', (chunk: Buffer) => { text += String(chunk); if (text.includes('}')) resolve(text) })
    socket.on('close', () => resolve(text))
  })
  socket.destroy()
  t.match(answer, /^HTTP\/1\.1 429 /)
  t.match(answer, /FUSION_CLIENT_RATE_LIMITED/)
})

t.test('behind a trusted proxy, each client behind it has its own bucket', async (t) => {
  const { url } = await startService(t, { RATE_LIMIT_MAX: '1', TRUST_PROXY: '127.0.0.1', REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() })
  t.equal((await cheap(url, { 'x-forwarded-for': '203.0.113.7' })).status, 400)
  t.equal((await cheap(url, { 'x-forwarded-for': '198.51.100.23' })).status, 400, 'a second client is not throttled by the first')
  t.equal((await cheap(url, { 'x-forwarded-for': '203.0.113.7' })).status, 429, 'the first client is')
  t.equal((await cheap(url, { 'x-forwarded-for': '2001:db8:1:2::1' })).status, 400)
  t.equal((await cheap(url, { 'x-forwarded-for': '2001:db8:1:2::99' })).status, 429, 'IPv6 clients are counted per /64')
})

t.test('X-Forwarded-For from an untrusted peer is ignored', async (t) => {
  // The trusted proxy is elsewhere: the test client (127.0.0.1) is a direct client.
  const { url } = await startService(t, { RATE_LIMIT_MAX: '1', TRUST_PROXY: '10.0.0.0/8', REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() })
  t.equal((await cheap(url, { 'x-forwarded-for': '203.0.113.7' })).status, 400)
  t.equal((await cheap(url, { 'x-forwarded-for': '198.51.100.23' })).status, 429, 'a spoofed address does not buy a new bucket')
})

t.test('a known API key has its own bucket and limit; an unknown one is refused', async (t) => {
  const { url } = await startService(t, {
    RATE_LIMIT_MAX: '1', RATE_LIMIT_API_KEY_MAX: '3', CLIENT_API_KEYS: 'partner-key-1,partner-key-2', REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix()
  })
  t.equal((await cheap(url)).status, 400)
  t.equal((await cheap(url)).status, 429, 'the IP bucket is spent')
  const withKey = await cheap(url, { 'x-api-key': 'partner-key-1' })
  t.equal(withKey.status, 400, 'the key is counted on its own')
  t.equal(withKey.headers['x-ratelimit-limit'], '3')
  t.equal((await cheap(url, { 'x-api-key': 'partner-key-1' })).status, 400)
  t.equal((await cheap(url, { 'x-api-key': 'partner-key-1' })).status, 400)
  t.equal((await cheap(url, { 'x-api-key': 'partner-key-1' })).status, 429)
  t.equal((await cheap(url, { 'x-api-key': 'partner-key-2' })).status, 400, 'another key has its own bucket')
  t.equal((await cheap(url, { 'x-api-key': 'guessed-key' })).status, 429, 'an unknown key is counted against the IP, whose bucket is spent')
})

t.test('an unknown API key is refused, and guessing keys is rate-limited like anything else', async (t) => {
  const { url } = await startService(t, { RATE_LIMIT_MAX: '2', CLIENT_API_KEYS: 'partner-key-1', REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() })
  const unknown = await cheap(url, { 'x-api-key': 'guessed-key-1' })
  t.match({ status: unknown.status, code: unknown.json().code }, { status: 401, code: 'FUSION_UNKNOWN_API_KEY' })
  t.equal((await cheap(url, { 'x-api-key': 'guessed-key-2' })).status, 401)
  t.equal((await cheap(url, { 'x-api-key': 'guessed-key-3' })).status, 429, 'the third guess from this IP is throttled')
  const job = await request(`${url}/fuse/jobs/${'A'.repeat(22)}`, { headers: { 'x-api-key': 'guessed-key-4' } })
  t.match({ status: job.statusCode, code: (await job.body.json() as { code: string }).code }, { status: 401, code: 'FUSION_UNKNOWN_API_KEY' },
    'on the job routes too')
})

t.test('replicas sharing Redis count together', async (t) => {
  const env = { RATE_LIMIT_MAX: '2', REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() }
  const a = await startService(t, env)
  const b = await startService(t, env)
  t.equal((await cheap(a.url)).status, 400)
  t.equal((await cheap(b.url)).status, 400)
  t.equal((await cheap(a.url)).status, 429, 'the third call is over the limit, whichever replica takes it')
  t.equal((await cheap(b.url)).status, 429)
})

t.test(`a client may look at its jobs ${JOB_READS_PER_SUBMISSION} times as often as it submits, counted apart from its submissions`, async (t) => {
  const { url } = await startService(t, { RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW_MS: '30000', REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() })
  const job = `${url}/fuse/jobs/${'A'.repeat(22)}`
  const statuses: number[] = []
  let last
  for (let i = 0; i <= 2 * JOB_READS_PER_SUBMISSION; i++) {
    last = await request(job)
    statuses.push(last.statusCode)
    await last.body.dump()
  }
  t.same(statuses, [...Array(2 * JOB_READS_PER_SUBMISSION).fill(404), 429], 'an unknown job, then over the limit')
  t.equal(last?.headers['x-ratelimit-limit'], String(2 * JOB_READS_PER_SUBMISSION))
  t.ok(Number(last?.headers['retry-after']) >= 1)
  const events = await request(`${job}/events`)
  t.equal(events.statusCode, 404, 'the event streams are counted on their own')
  await events.body.dump()
  t.equal((await cheap(url)).status, 400, 'and so are the submissions')
})
