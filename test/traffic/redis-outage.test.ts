import t from 'tap'
import { request } from 'undici'
import { startRedisServer } from '../../scripts/redis-server.js'
import { fixture, fuseForm, post, redisPrefix, startService } from '../helper.js'

const readiness = async (url: string, status = 200): Promise<Record<string, unknown>> => {
  const reply = await request(`${url}/readyz`)
  t.equal(reply.statusCode, status)
  return await reply.body.json() as Record<string, unknown>
}

t.test('Redis stopped mid-run and restarted: the documented fallback, and nothing hangs', async (t) => {
  // A Redis of this test's own, so stopping it disturbs no other test.
  let redis = await startRedisServer()
  t.teardown(async () => await redis.stop())
  const { url } = await startService(t, {
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: redisPrefix(),
    RATE_LIMIT_MAX: '2',
    UPSTREAM_QPS: '20',
    UPSTREAM_FALLBACK_QPS: '5'
  })
  const photo = fixture('orientation-1.jpg')
  const cheap = async (): Promise<number> => (await post(`${url}/fuse`, '{}', { 'content-type': 'application/json' })).status

  t.match(await readiness(url), { status: 'ready', degraded: false, redis: 'ready', budget: 'shared', clientLimits: 'shared' })
  t.equal((await fuseForm(url, photo)).status, 200)
  t.equal(await cheap(), 400)
  t.equal(await cheap(), 429, 'with Redis up, the shared client limit holds')

  await redis.stop()
  const started = performance.now()
  const during = await Promise.all([0, 1, 2].map(async () => (await fuseForm(url, photo)).status))
  t.same(during, [200, 200, 200], 'fusions go on, on the per-replica budget')
  t.equal(await cheap(), 400, 'client limits fail open: the spent limit is not enforced')
  t.equal(await cheap(), 400)
  t.ok(performance.now() - started < 5_000, `nothing waited on the dead Redis (${Math.round(performance.now() - started)} ms for five requests)`)
  t.match(await readiness(url), { status: 'ready', degraded: true, redis: 'unreachable', budget: 'per-replica fallback', clientLimits: 'fail open' })

  redis = await startRedisServer(redis.port)
  const deadline = Date.now() + 10_000
  let state = await readiness(url)
  while (state.redis !== 'ready' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    state = await readiness(url)
  }
  t.match(state, { degraded: false, redis: 'ready', budget: 'shared' }, 'reconnected by itself')
  t.equal((await fuseForm(url, photo)).status, 200)
  t.equal(await cheap(), 400, 'the restarted Redis is empty: counting starts again')
  t.equal(await cheap(), 429, 'and the shared limit holds again')
})

t.test('with READYZ_REQUIRES_REDIS, an unreachable Redis makes the replica unready', async (t) => {
  const redis = await startRedisServer()
  t.teardown(async () => await redis.stop())
  const { url } = await startService(t, { REDIS_URL: redis.url, REDIS_KEY_PREFIX: redisPrefix(), READYZ_REQUIRES_REDIS: 'true' })
  t.match(await readiness(url), { status: 'ready', redis: 'ready' })
  await redis.stop()
  const deadline = Date.now() + 5_000
  let reply = await request(`${url}/readyz`)
  while (reply.statusCode !== 503 && Date.now() < deadline) {
    await reply.body.dump()
    await new Promise((resolve) => setTimeout(resolve, 100))
    reply = await request(`${url}/readyz`)
  }
  t.equal(reply.statusCode, 503)
  t.match(await reply.body.json(), { status: 'not ready', redis: 'unreachable' })
})
