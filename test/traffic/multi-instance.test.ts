import t from 'tap'
import { fixture, fuseForm, redisPrefix, runOnFreePort, sharedRedisUrl, startEmulator } from '../helper.js'

/**
 * Three service instances share one Redis and one upstream account, and the
 * emulator enforces its QPS limit. Offered five times the budget, together
 * they must never trip the upstream's frequency control, and what they let
 * through must stay close to the budget. The replicas are processes of their
 * own, as deployed: in this process, their work would delay the emulator's
 * clock and bunch the calls it sees.
 */
const BUDGET_QPS = 4.5
// The emulator's quota sits a little above the budget, as the docs advise
// (UPSTREAM_QPS about 10 % under the quota), so network jitter cannot push two calls into one second.
const EMULATOR_QPS = 5
const SECONDS = 4

t.test(`three replicas, one Redis: ${BUDGET_QPS} QPS budget, ${5 * BUDGET_QPS} req/s offered`, async (t) => {
  let frequencyControl = 0
  let accepted = 0
  const emulator = await startEmulator(t, {
    qps: EMULATOR_QPS,
    onAnswer: (ret) => {
      if (ret === -20004) frequencyControl++
      if (ret === 0) accepted++
    }
  })
  const env = {
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    TENCENT_LEGACY_URL: emulator.legacyUrl,
    REDIS_URL: sharedRedisUrl(),
    REDIS_KEY_PREFIX: redisPrefix(),
    UPSTREAM_QPS: String(BUDGET_QPS),
    UPSTREAM_BUDGET_WAIT_MS: '500',
    RATE_LIMIT_MAX: '100000',
    // This test is about the budget: no shedding on a busy machine's event-loop lag.
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0'
  }
  const start = async (): Promise<{ url: string }> => await runOnFreePort(t, 'src/server.ts', env, /Server listening/)
  const replicas = await Promise.all([start(), start(), start()])
  const photo = fixture('orientation-1.jpg')

  const offered = 5 * BUDGET_QPS * SECONDS
  const interval = 1000 / (5 * BUDGET_QPS)
  const statuses: Record<number, number> = {}
  const started = performance.now()
  const sends: Array<Promise<void>> = []
  for (let i = 0; i < offered; i++) {
    const due = started + i * interval
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - performance.now())))
    sends.push((async () => {
      const reply = await fuseForm(replicas[i % 3]!.url, photo)
      statuses[reply.status] = (statuses[reply.status] ?? 0) + 1
      if (reply.status === 503) {
        t.equal(reply.json().code, 'FUSION_UPSTREAM_BUSY')
        t.ok(Number(reply.headers['retry-after']) >= 1, 'a refusal says when to come back')
      }
    })())
  }
  await Promise.all(sends)
  const elapsed = (performance.now() - started) / 1000

  t.equal(frequencyControl, 0, 'the emulator never had to refuse a call for frequency')
  t.equal((statuses[200] ?? 0) + (statuses[503] ?? 0), offered, `every request got 200 or 503: ${JSON.stringify(statuses)}`)
  const rate = accepted / elapsed
  t.ok(Math.abs(rate - BUDGET_QPS) <= BUDGET_QPS * 0.2, `accepted ${accepted} in ${elapsed.toFixed(2)} s = ${rate.toFixed(2)}/s, budget ${BUDGET_QPS}/s`)
})
