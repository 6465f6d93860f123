import t from 'tap'
import { request } from 'undici'
import { freePort } from '../../scripts/free-port.js'
import { startRedisServer } from '../../scripts/redis-server.js'
import { answerJson, fixture, fuseForm, redisPrefix, startService, stubUpstream } from '../helper.js'

async function scrape (url: string, headers: Record<string, string> = {}): Promise<{ status: number, text: string }> {
  const reply = await request(`${url}/metrics`, { headers })
  return { status: reply.statusCode, text: await reply.body.text() }
}

/** The value of one series, or undefined when absent. */
function value (text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

t.test('/metrics counts requests, upstream calls and the image pipeline', async (t) => {
  const { url } = await startService(t)
  t.equal((await fuseForm(url, fixture('face.jpg'))).status, 200)
  const { status, text } = await scrape(url)
  t.equal(status, 200)
  t.equal(value(text, 'fusion_http_requests_total{route="/fuse",method="POST",status="200"}'), 1)
  t.equal(value(text, 'fusion_upstream_calls_total{provider="legacy",action="fuse",outcome="success",code="0"}'), 1)
  t.equal(value(text, 'fusion_upstream_call_duration_seconds_count{provider="legacy",action="fuse",outcome="success"}'), 1)
  t.equal(value(text, 'fusion_image_duration_seconds_count{outcome="ok"}'), 1)
  t.equal(value(text, 'fusion_image_wait_seconds_count{outcome="ok"}'), 1)
  t.equal(value(text, 'fusion_image_jobs{state="running"}'), 0, 'its job is over')
  t.equal(value(text, 'fusion_image_decode_memory_bytes'), 0, 'and its decode memory given back')
  t.equal(value(text, 'fusion_image_bytes_in_total'), fixture('face.jpg').length)
  t.ok((value(text, 'fusion_image_bytes_out_total') ?? 0) > 0)
  t.equal(value(text, 'fusion_upstream_breaker_state{provider="legacy"}'), 0)
  t.equal(value(text, 'fusion_http_requests_in_flight'), 1, 'the scrape itself is the one in flight')
  t.match(text, /fusion_budget_wait_seconds_count 1/)
  t.match(text, /fusion_process_resident_memory_bytes \d+/, 'process metrics are there too')
})

t.test('retries and upstream codes are counted', async (t) => {
  const upstream = await stubUpstream(t, ({ number }, response) => answerJson(response, number === 1 ? { ret: -5 } : { ret: 0, img_url: 'https://example.invalid/a.jpg' }))
  const { url } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, UPSTREAM_RETRY_DELAY_MS: '10' })
  t.equal((await fuseForm(url, fixture('orientation-1.jpg'))).status, 200)
  const { text } = await scrape(url)
  t.equal(value(text, 'fusion_upstream_retries_total{provider="legacy",code="-5"}'), 1)
  t.equal(value(text, 'fusion_upstream_calls_total{provider="legacy",action="fuse",outcome="error",code="-5"}'), 1)
  t.equal(value(text, 'fusion_upstream_calls_total{provider="legacy",action="fuse",outcome="success",code="0"}'), 1)
})

t.test('a token protects /metrics', async (t) => {
  const { url } = await startService(t, { METRICS_TOKEN: 'a-long-enough-metrics-token' })
  t.equal((await scrape(url)).status, 401)
  t.equal((await scrape(url, { authorization: 'Bearer wrong-token-of-some-length' })).status, 401)
  t.equal((await scrape(url, { authorization: 'Bearer a-long-enough-metrics-token' })).status, 200)
})

t.test('/metrics on a port of its own', async (t) => {
  const metricsPort = await freePort()
  const { url } = await startService(t, { METRICS_PORT: String(metricsPort), HOST: '127.0.0.1' })
  t.equal((await scrape(url)).status, 404, 'not on the public port')
  const separate = await scrape(`http://127.0.0.1:${metricsPort}`)
  t.equal(separate.status, 200)
  t.match(separate.text, /fusion_http_requests_in_flight/)
})

t.test('fusion_redis_up follows each Redis the replica uses, and is absent without one', async (t) => {
  t.notMatch((await scrape((await startService(t)).url)).text, /^fusion_redis_up/m, 'no Redis configured: no series')

  // A Redis of this test's own, so stopping it disturbs no other test; the wait line uses it too (no QUEUE_REDIS_URL).
  let redis = await startRedisServer()
  t.teardown(async () => await redis.stop())
  const { url } = await startService(t, { REDIS_URL: redis.url, REDIS_KEY_PREFIX: redisPrefix() })
  const states = async (): Promise<[number | undefined, number | undefined]> => {
    const { text } = await scrape(url)
    return [value(text, 'fusion_redis_up{store="shared"}'), value(text, 'fusion_redis_up{store="queue"}')]
  }
  const settled = async (wanted: number): Promise<[number | undefined, number | undefined]> => {
    let seen = await states()
    for (const deadline = Date.now() + 10_000; seen.some((state) => state !== wanted) && Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      seen = await states()
    }
    return seen
  }
  t.same(await states(), [1, 1], 'both up')
  await redis.stop()
  t.same(await settled(0), [0, 0], 'both down while Redis is stopped')
  redis = await startRedisServer(redis.port)
  t.same(await settled(1), [1, 1], 'and up again once it is back')
})
