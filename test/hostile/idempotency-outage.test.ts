import t from 'tap'
import { request } from 'undici'
import { startRedisServer, type RedisServer } from '../../scripts/redis-server.js'
import { answerJson, captureLogs, fixture, fuseForm, redisPrefix, startEmulator, startService, stubEnv, stubUpstream, until, upstreamEnv } from '../helper.js'

/**
 * A Redis outage must not make a retry pay for a second fusion: what a replica answered (or was still working on)
 * from its own memory while Redis was away still counts once Redis is back, on that replica and on the others.
 */
const photo = fixture('face.jpg')

async function redisState (url: string): Promise<unknown> {
  const reply = await request(`${url}/readyz`)
  return ((await reply.body.json()) as { redis?: unknown }).redis
}

async function untilRedis (urls: string[], state: 'ready' | 'unreachable'): Promise<void> {
  const deadline = Date.now() + 15_000
  for (const url of urls) {
    while (await redisState(url) !== state) {
      if (Date.now() > deadline) throw new Error(`${url} never saw redis ${state}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

/** Two replicas on one Redis of the test's own (stopping it disturbs no other test). */
async function twoReplicas (t: Parameters<typeof startService>[0], env: Record<string, string>): Promise<{
  redis: () => RedisServer
  restart: () => Promise<void>
  a: string
  b: string
  logsOfA: ReturnType<typeof captureLogs>
}> {
  let redis = await startRedisServer()
  t.teardown(async () => await redis.stop())
  // Shedding on a slow event loop (a saturated test machine) is not what these tests are about.
  const shared = { ...env, REDIS_URL: redis.url, REDIS_KEY_PREFIX: redisPrefix(), LOG_LEVEL: 'info', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0' }
  const logsOfA = captureLogs()
  const a = (await startService(t, shared, { logStream: logsOfA.stream })).url
  const b = (await startService(t, shared)).url
  return {
    redis: () => redis,
    restart: async () => { redis = await startRedisServer(redis.port) },
    a,
    b,
    logsOfA
  }
}

const writtenBack = (logs: ReturnType<typeof captureLogs>): Record<string, number> | undefined => {
  const line = logs.lines().find((entry) => (entry.idempotency as { writtenBack?: unknown } | undefined)?.writtenBack !== undefined)
  return (line?.idempotency as { writtenBack: Record<string, number> } | undefined)?.writtenBack
}

t.test('an answer given from memory during the outage is replayed after it, by every replica, and fused once', async (t) => {
  let fusions = 0
  const emulator = await startEmulator(t, { onAnswer: () => { fusions++ } })
  const { redis, restart, a, b, logsOfA } = await twoReplicas(t, upstreamEnv('legacy', emulator))
  const key = { 'idempotency-key': 'outage-order-1' }

  await redis().stop()
  await untilRedis([a, b], 'unreachable')
  const first = await fuseForm(a, photo, {}, key)
  t.equal(first.status, 200)
  t.notOk(first.headers['idempotent-replayed'], 'fused during the outage')
  t.equal(fusions, 1)

  await restart()
  await untilRedis([a, b], 'ready')
  await until(() => writtenBack(logsOfA) !== undefined)
  t.match(writtenBack(logsOfA), { replies: 1 }, 'the answer kept in memory was written back to Redis')

  const sameReplica = await fuseForm(a, photo, {}, key)
  t.equal(sameReplica.status, 200)
  t.equal(sameReplica.headers['idempotent-replayed'], 'true', 'the same replica replays it')
  t.ok(sameReplica.body.equals(first.body), 'byte for byte')
  const otherReplica = await fuseForm(b, photo, {}, key)
  t.equal(otherReplica.status, 200)
  t.equal(otherReplica.headers['idempotent-replayed'], 'true', 'another replica replays it too')
  t.ok(otherReplica.body.equals(first.body), 'byte for byte')
  const otherPayload = await fuseForm(b, fixture('face.webp'), {}, key)
  t.match({ status: otherPayload.status, ...otherPayload.json() }, { status: 422, code: 'FUSION_IDEMPOTENCY_KEY_REUSED' },
    'the key is still bound to its payload')
  t.equal(fusions, 1, 'the emulator saw one fusion')
})

t.test('a fusion still at work when Redis returns: a retry on another replica waits for it and gets its answer', async (t) => {
  let release = (): void => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  const upstream = await stubUpstream(t, (_call, response) => {
    void gate.then(() => answerJson(response, { ret: '0', img_url: 'https://example.invalid/fused.jpg' }))
  })
  const { redis, restart, a, b, logsOfA } = await twoReplicas(t, stubEnv('legacy', upstream.url))
  const key = { 'idempotency-key': 'outage-order-2' }

  await redis().stop()
  await untilRedis([a, b], 'unreachable')
  const first = fuseForm(a, photo, {}, key)
  await until(() => upstream.calls.length === 1)

  await restart()
  await untilRedis([a, b], 'ready')
  await until(() => writtenBack(logsOfA) !== undefined)
  t.match(writtenBack(logsOfA), { claims: 1 }, 'the claim held in memory was written back to Redis')
  const retry = fuseForm(b, photo, {}, key)
  // The retry is waiting for the first request (it polls the claim), not fusing again.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(upstream.calls.length, 1, 'no second call while the first is at work')
  release()

  const [answer, replayed] = await Promise.all([first, retry])
  t.equal(answer.status, 200)
  t.equal(replayed.status, 200)
  t.equal(replayed.headers['idempotent-replayed'], 'true')
  t.ok(replayed.body.equals(answer.body), 'the first answer, byte for byte')
  t.equal(upstream.calls.length, 1, 'one upstream call in all')
})
