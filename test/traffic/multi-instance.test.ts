import t from 'tap'
import { request } from 'undici'
import { fixture, fuseForm, redisPrefix, runOnFreePort, sharedRedisUrl, until } from '../helper.js'

/**
 * Three service instances share one Redis and one upstream account, and the
 * emulator enforces its QPS limit. Offered five times the budget, together
 * they must never trip the upstream's frequency control, and the budget slots
 * they take must add up to the budget. Every part is a process of its own, as
 * deployed: in the test's process, the work of sending the load would delay the
 * emulator's clock and bunch the calls it sees.
 */
const BUDGET_QPS = 4
// The emulator's quota sits above the budget, as the docs advise (UPSTREAM_QPS under the quota), with room for a
// busy machine's scheduling to bunch calls a little on their way.
const EMULATOR_QPS = 5
const SECONDS = 4

t.test(`three replicas, one Redis: ${BUDGET_QPS} QPS budget, ${5 * BUDGET_QPS} req/s offered`, async (t) => {
  const { process: emulator, url: emulatorUrl } = await runOnFreePort(t, 'emulator/server.ts',
    { EMULATOR_HOST: '127.0.0.1', EMULATOR_QPS: String(EMULATOR_QPS), LOG_LEVEL: 'debug' }, /Server listening/, { portVariable: 'EMULATOR_PORT' })
  const env = {
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    TENCENT_LEGACY_URL: `${emulatorUrl}/fuseapi/face`,
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

  // The emulator logs a line per answer with its code (emulator/server.ts at debug), the last ones maybe a moment later.
  const answered = (): number[] => emulator.output().split('\n').filter((line) => line.includes('"msg":"answered"')).map((line) => JSON.parse(line).ret as number)
  await until(() => answered().length >= (statuses[200] ?? 0))
  const answers = answered()
  t.equal(answers.filter((ret) => ret === -20004).length, 0, 'the emulator never had to refuse a call for frequency')
  t.equal((statuses[200] ?? 0) + (statuses[503] ?? 0), offered, `every request got 200 or 503: ${JSON.stringify(statuses)}`)
  // A replica starved of CPU gives up a slot that came too late to keep the spacing, rather than send bunched: such a
  // slot was the budget's all the same.
  let stale = 0
  for (const { url } of replicas) {
    const metrics = await (await request(`${url}/metrics`)).body.text()
    stale += Number(/^fusion_budget_stale_slots_total (\d+)/m.exec(metrics)?.[1] ?? 0)
  }
  const slots = answers.length + stale
  const rate = slots / elapsed
  t.ok(Math.abs(rate - BUDGET_QPS) <= BUDGET_QPS * 0.2,
    `${answers.length} calls and ${stale} slots given up in ${elapsed.toFixed(2)} s = ${rate.toFixed(2)}/s, budget ${BUDGET_QPS}/s`)
})
