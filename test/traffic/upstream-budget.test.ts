import t from 'tap'
import { Redis } from 'ioredis'
import { createUpstreamBudget, type BudgetOptions } from '../../src/traffic/upstream-budget.js'
import { closedPort } from '../../scripts/free-port.js'
import { redisPrefix, sharedRedisUrl } from '../helper.js'

function redisClient (t: { teardown: (fn: () => unknown) => void }, url = sharedRedisUrl()): Redis {
  const client = new Redis(url, { connectTimeout: 500, commandTimeout: 500, maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null })
  client.on('error', () => { /* an unreachable Redis is what some tests are about */ })
  t.teardown(() => client.disconnect())
  return client
}

const base = (overrides: Partial<BudgetOptions> = {}): BudgetOptions => ({
  qps: 10, projectQps: new Map(), maxWaitMs: 1_000, fallbackQps: 0, keyPrefix: redisPrefix(), ...overrides
})

/** Start times of `count` acquisitions fired at once. */
async function startTimes (acquire: () => Promise<unknown>, count: number): Promise<number[]> {
  const origin = performance.now()
  const times = await Promise.all(Array.from({ length: count }, async () => { await acquire(); return performance.now() - origin }))
  return times.sort((a, b) => a - b)
}

t.test('in memory: calls are spaced 1/QPS apart, a burst waits its turn', async (t) => {
  const budget = createUpstreamBudget(base())
  const times = await startTimes(async () => await budget.acquire('100307'), 5)
  // Call i is granted no sooner than i intervals after the first, which was granted no sooner than the origin: that is
  // the spacing. (A gap between neighbours would also measure how late a loaded machine noticed the earlier grant:
  // 89 ms and 9 ms were seen, so neighbours are not compared.)
  for (let i = 1; i < times.length; i++) {
    t.ok(times[i]! >= i * 100 - 2, `call ${i} starts ${Math.round(times[i]!)} ms after the burst (at least ${i * 100})`)
  }
  t.equal(budget.mode(), 'local')
})

t.test('a call that would wait longer than the limit is refused with an honest Retry-After', async (t) => {
  const budget = createUpstreamBudget(base({ qps: 0.5, maxWaitMs: 300 }))
  await budget.acquire('100307')
  await t.rejects(budget.acquire('100307'), { code: 'FUSION_UPSTREAM_BUSY', statusCode: 503, retryAfterSeconds: 2 })
})

t.test('an activity with a lower quota is spaced by its own interval; others are not held up', async (t) => {
  const budget = createUpstreamBudget(base({ qps: 100, projectQps: new Map([['100307', 4]]) }))
  const limited = await startTimes(async () => await budget.acquire('100307'), 3)
  t.ok(limited[2]! - limited[0]! >= 480, `three calls of the limited activity span ${Math.round(limited[2]! - limited[0]!)} ms`)
  const other = await startTimes(async () => await budget.acquire('100646'), 3)
  t.ok(other[2]! < 100, 'another activity goes at the account rate')
})

t.test('through Redis, budgets of different replicas share one spacing', async (t) => {
  const options = base({ qps: 10 })
  const replicas = [0, 1, 2].map(() => {
    const redis = redisClient(t)
    return { redis, budget: createUpstreamBudget({ ...options, redis }) }
  })
  await Promise.all(replicas.map(async ({ redis }) => await redis.connect()))
  const origin = performance.now()
  const times = (await Promise.all(Array.from({ length: 9 }, async (_, i) => {
    await replicas[i % 3]!.budget.acquire('100307')
    return performance.now() - origin
  }))).sort((a, b) => a - b)
  t.ok(times[8]! - times[0]! >= 750, `nine calls from three replicas span ${Math.round(times[8]! - times[0]!)} ms (≥ 800 ms at 10 QPS, less timer slack)`)
  t.equal(replicas[0]!.budget.mode(), 'shared')
})

t.test('after the upstream\'s frequency control, every replica pauses', async (t) => {
  const options = base({ qps: 100, maxWaitMs: 200 })
  const a = redisClient(t)
  const b = redisClient(t)
  await Promise.all([a.connect(), b.connect()])
  const first = createUpstreamBudget({ ...options, redis: a })
  const second = createUpstreamBudget({ ...options, redis: b })
  await first.backOff(1_500)
  await t.rejects(second.acquire('100307'), { code: 'FUSION_UPSTREAM_BUSY', retryAfterSeconds: 2 }, 'the other replica sees the pause')
})

t.test('with Redis unreachable, the budget falls back to its per-replica share at once', async (t) => {
  const dead = redisClient(t, `redis://127.0.0.1:${await closedPort()}`)
  await dead.connect().catch(() => {})
  let reported = 0
  const budget = createUpstreamBudget(base({ qps: 8, fallbackQps: 2, redis: dead, onFallback: () => { reported++ } }))
  const started = performance.now()
  const times = await startTimes(async () => await budget.acquire('100307'), 2)
  t.equal(budget.mode(), 'fallback')
  t.ok(times[1]! - times[0]! >= 450, `spaced at the fallback share (2 QPS): ${Math.round(times[1]! - times[0]!)} ms`)
  t.ok(performance.now() - started < 1_500, 'nothing waited on Redis')
  t.equal(reported, 1, 'the fallback is reported once')
})
