import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { closedPort } from '../../scripts/free-port.js'
import { createIdempotency, parseIdempotencyKey, payloadFingerprint } from '../../src/idempotency/idempotency.js'
import { createMemoryStore, createRedisStore, decodeReply, encodeReply, withFallback, type IdempotencyStore, type SharedStore } from '../../src/idempotency/store.js'
import { redisPrefix, sharedRedisUrl } from '../helper.js'

const FINGERPRINT = 'a'.repeat(64)
const OTHER = 'b'.repeat(64)
const reply = (body = 'fused'): { status: number, contentType: string, body: Buffer } => ({ status: 200, contentType: 'application/json; charset=utf-8', body: Buffer.from(body) })

async function redisStore (t: Test): Promise<IdempotencyStore> {
  const redis = new Redis(sharedRedisUrl())
  t.teardown(() => { redis.disconnect() })
  return createRedisStore(redis, redisPrefix())
}

const stores: Array<[string, (t: Test) => Promise<IdempotencyStore>]> = [
  ['memory', async () => createMemoryStore(1024 * 1024)],
  ['redis', redisStore]
]

for (const [name, make] of stores) {
  t.test(`${name} store: one owner, then busy or mismatch, then the stored reply`, async (t) => {
    const store = await make(t)
    const owner = await store.claim('k', FINGERPRINT, 5_000)
    t.equal(owner.kind, 'owner')
    t.same(await store.claim('k', FINGERPRINT, 5_000), { kind: 'busy' }, 'the same payload waits')
    t.same(await store.claim('k', OTHER, 5_000), { kind: 'mismatch' }, 'another payload is refused')
    await store.complete('k', (owner as { token: string }).token, { ...reply(), fingerprint: FINGERPRINT }, 60_000)
    const replayed = await store.claim('k', FINGERPRINT, 5_000)
    t.equal(replayed.kind, 'replay')
    t.same(replayed.kind === 'replay' && { ...replayed.reply, body: replayed.reply.body.toString() }, { status: 200, contentType: 'application/json; charset=utf-8', fingerprint: FINGERPRINT, body: 'fused' })
  })

  t.test(`${name} store: a released claim lets the next request do the work; a stale one expires`, async (t) => {
    const store = await make(t)
    const first = await store.claim('k', FINGERPRINT, 5_000) as { kind: 'owner', token: string }
    await store.release('k', 'not-the-owner', FINGERPRINT)
    t.same(await store.claim('k', FINGERPRINT, 5_000), { kind: 'busy' }, 'only the owner can free the key')
    await store.release('k', first.token, FINGERPRINT)
    t.equal((await store.claim('k', FINGERPRINT, 5_000)).kind, 'owner')

    await store.claim('dead-owner', FINGERPRINT, 50)
    await new Promise((resolve) => setTimeout(resolve, 120))
    t.equal((await store.claim('dead-owner', FINGERPRINT, 5_000)).kind, 'owner', 'a claim whose owner vanished expires')
  })

  t.test(`${name} store: a late owner whose claim was taken over stores nothing`, async (t) => {
    const store = await make(t)
    const late = await store.claim('k', FINGERPRINT, 50) as { token: string }
    await new Promise((resolve) => setTimeout(resolve, 120))
    const next = await store.claim('k', OTHER, 5_000) as { kind: string, token: string }
    t.equal(next.kind, 'owner', 'the expired claim was taken over by another payload')
    await store.complete('k', late.token, { ...reply('late'), fingerprint: FINGERPRINT }, 60_000)
    t.same(await store.claim('k', OTHER, 5_000), { kind: 'busy' }, 'the late reply was not planted')
    await store.complete('k', next.token, { ...reply('current'), fingerprint: OTHER }, 60_000)
    const replayed = await store.claim('k', OTHER, 5_000)
    t.equal(replayed.kind === 'replay' && replayed.reply.body.toString(), 'current')
    await store.discard('k')
    t.equal((await store.claim('k', OTHER, 5_000)).kind, 'owner', 'a discarded reply is gone')
  })

  t.test(`${name} store: replies expire after their ttl`, async (t) => {
    const store = await make(t)
    const owner = await store.claim('short', FINGERPRINT, 5_000) as { token: string }
    await store.complete('short', owner.token, { ...reply(), fingerprint: FINGERPRINT }, 80)
    await new Promise((resolve) => setTimeout(resolve, 150))
    t.equal((await store.claim('short', FINGERPRINT, 5_000)).kind, 'owner')
  })
}

t.test('a reply survives encoding byte for byte', async (t) => {
  const body = Buffer.from([0xff, 0xd8, 0x00, 0x7b, 0x22])
  const decoded = decodeReply(encodeReply({ fingerprint: FINGERPRINT, status: 422, contentType: 'image/jpeg', body, expiresAt: 123 }))
  t.same({ ...decoded, body: [...decoded.body] }, { fingerprint: FINGERPRINT, status: 422, contentType: 'image/jpeg', body: [...body], expiresAt: 123 })
})

t.test('the memory store is bounded in bytes', async (t) => {
  const store = createMemoryStore(4_096)
  for (let i = 0; i < 20; i++) {
    const owner = await store.claim(`k${i}`, FINGERPRINT, 5_000) as { token: string }
    await store.complete(`k${i}`, owner.token, { ...reply('x'.repeat(500)), fingerprint: FINGERPRINT }, 60_000)
  }
  t.equal((await store.claim('k19', FINGERPRINT, 5_000)).kind, 'replay', 'the newest is kept')
  t.equal((await store.claim('k0', FINGERPRINT, 5_000)).kind, 'owner', 'the oldest made room')
  const big = await store.claim('big', FINGERPRINT, 5_000) as { token: string }
  await store.complete('big', big.token, { ...reply('x'.repeat(2_000)), fingerprint: FINGERPRINT }, 60_000)
  t.equal((await store.claim('big', FINGERPRINT, 5_000)).kind, 'owner', 'a reply over a quarter of the store is not kept')
})

t.test('with Redis unreachable, the replica keeps keys in its own memory', async (t) => {
  const down = new Redis(`redis://127.0.0.1:${await closedPort()}`, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null })
  t.teardown(() => { down.disconnect() })
  const failures: unknown[] = []
  const store = withFallback(createRedisStore(down, 'x:'), createMemoryStore(1024 * 1024), { onFallback: (error) => failures.push(error) })
  const owner = await store.claim('k', FINGERPRINT, 5_000) as { kind: string, token: string }
  t.equal(owner.kind, 'owner')
  await store.complete('k', owner.token, { ...reply(), fingerprint: FINGERPRINT }, 60_000)
  t.equal((await store.claim('k', FINGERPRINT, 5_000)).kind, 'replay')
  t.ok(failures.length > 0, 'the fallback was reported')
})

/** A Redis store that fails every command while `down` is set, as an unreachable Redis does. */
async function flakyRedisStore (t: Test, prefix: string): Promise<{ store: SharedStore, state: { down: boolean } }> {
  const redis = new Redis(sharedRedisUrl())
  t.teardown(() => { redis.disconnect() })
  const real = createRedisStore(redis, prefix)
  const state = { down: false }
  const guarded = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    if (state.down) throw new Error('Connection is closed.')
    return await fn(...args)
  }
  const store: SharedStore = {
    claim: guarded(real.claim),
    complete: guarded(real.complete),
    release: guarded(real.release),
    discard: guarded(real.discard),
    restore: guarded(real.restore)
  }
  return { store, state }
}

t.test('after an outage, what memory held is read first, and written back for the other replicas', async (t) => {
  const prefix = redisPrefix()
  const { store: shared, state } = await flakyRedisStore(t, prefix)
  const written: unknown[] = []
  const replica = withFallback(shared, createMemoryStore(1024 * 1024), { onFallback: () => {}, onWrittenBack: (counts) => written.push(counts) })
  const other = (await flakyRedisStore(t, prefix)).store

  state.down = true
  const owner = await replica.claim('k', FINGERPRINT, 5_000) as { kind: string, token: string }
  t.equal(owner.kind, 'owner', 'claimed in memory')
  await replica.complete('k', owner.token, { ...reply(), fingerprint: FINGERPRINT }, 60_000)

  state.down = false
  t.equal((await replica.claim('k', FINGERPRINT, 5_000)).kind, 'replay', 'Redis is back: memory is still read first')
  t.match(await replica.claim('k', OTHER, 5_000), { kind: 'replay', reply: { fingerprint: FINGERPRINT } },
    'the key stays bound to its payload (the caller refuses another)')
  await replica.writeBack()
  t.same(written, [{ replies: 1, claims: 0 }])
  const seen = await other.claim('k', FINGERPRINT, 5_000)
  t.equal(seen.kind, 'replay', 'another replica sees the answer')
  t.equal((seen as { reply: { body: Buffer } }).reply.body.toString(), 'fused')
  await replica.writeBack()
  t.equal(written.length, 1, 'nothing new: nothing written again')
})

t.test('a claim held in memory across the outage\'s end is written back, then completed or released in Redis', async (t) => {
  const prefix = redisPrefix()
  const { store: shared, state } = await flakyRedisStore(t, prefix)
  const replica = withFallback(shared, createMemoryStore(1024 * 1024), { onFallback: () => {} })
  const other = (await flakyRedisStore(t, prefix)).store

  state.down = true
  const done = await replica.claim('done', FINGERPRINT, 5_000) as { token: string }
  const dropped = await replica.claim('dropped', FINGERPRINT, 5_000) as { token: string }
  state.down = false
  await replica.writeBack()
  t.same(await other.claim('done', FINGERPRINT, 5_000), { kind: 'busy' }, 'another replica waits for the claim written back')
  t.same(await other.claim('dropped', OTHER, 5_000), { kind: 'mismatch' })

  await replica.complete('done', done.token, { ...reply(), fingerprint: FINGERPRINT }, 60_000)
  t.equal((await other.claim('done', FINGERPRINT, 5_000)).kind, 'replay', 'completed in Redis too')
  await replica.release('dropped', dropped.token, FINGERPRINT)
  t.equal((await other.claim('dropped', FINGERPRINT, 5_000)).kind, 'owner', 'released in Redis too: the next request does the work')
})

t.test('a write-back that fails is tried again at the next chance', async (t) => {
  const prefix = redisPrefix()
  const { store: shared, state } = await flakyRedisStore(t, prefix)
  const failures: unknown[] = []
  const replica = withFallback(shared, createMemoryStore(1024 * 1024), { onFallback: (error) => failures.push(error) })
  state.down = true
  const owner = await replica.claim('k', FINGERPRINT, 5_000) as { token: string }
  await replica.complete('k', owner.token, { ...reply(), fingerprint: FINGERPRINT }, 60_000)
  const before = failures.length
  await replica.writeBack()
  t.ok(failures.length > before, 'the failed write-back is reported')
  state.down = false
  // Any request that reaches Redis again triggers it.
  t.equal((await replica.claim('unrelated', FINGERPRINT, 5_000)).kind, 'owner')
  await replica.writeBack()
  t.equal((await (await flakyRedisStore(t, prefix)).store.claim('k', FINGERPRINT, 5_000)).kind, 'replay')
})

t.test('the service: replays, waits, refuses, and never replays past a result\'s lifetime', async (t) => {
  const idempotency = createIdempotency({ store: createMemoryStore(1024 * 1024), ttlMs: 60_000, pollMs: 20 })
  const deadline = (): number => Date.now() + 2_000
  const first = await idempotency.begin('k', FINGERPRINT, deadline())
  if (!('owner' in first)) throw new Error('expected to own the key')
  const waiting = idempotency.begin('k', FINGERPRINT, deadline())
  await new Promise((resolve) => setTimeout(resolve, 60))
  await first.owner.complete(reply())
  const second = await waiting
  t.ok('replay' in second && second.replay.body.toString() === 'fused', 'the waiting request got the stored reply')
  await t.rejects(idempotency.begin('k', OTHER, deadline()), { code: 'FUSION_IDEMPOTENCY_KEY_REUSED' })

  const short = await idempotency.begin('url', FINGERPRINT, deadline())
  if (!('owner' in short)) throw new Error('expected to own the key')
  await short.owner.complete({ ...reply(), expiresAt: Date.now() + 60_000 + 150 })
  t.ok('replay' in await idempotency.begin('url', FINGERPRINT, deadline()), 'replayed while the URL has more than a minute to live')
  await new Promise((resolve) => setTimeout(resolve, 250))
  const after = await idempotency.begin('url', FINGERPRINT, deadline())
  t.ok('owner' in after, 'within a minute of expiresAt the key does the work again')

  const held = await idempotency.begin('held', FINGERPRINT, deadline())
  t.ok('owner' in held)
  await t.rejects(idempotency.begin('held', FINGERPRINT, Date.now() + 100), { code: 'FUSION_IDEMPOTENCY_IN_PROGRESS', retryAfterSeconds: 1 })
})

t.test('a stored reply past its result\'s lifetime is discarded, never replayed, and the request becomes the owner', async (t) => {
  // A store that still holds a stale reply: as when the replica that stored it had a clock behind ours.
  const memory = createMemoryStore(1024 * 1024)
  let stale = true
  const discarded: string[] = []
  const store: IdempotencyStore = {
    ...memory,
    claim: async (key, fingerprint, claimMs) => stale
      ? { kind: 'replay', reply: { ...reply(), fingerprint, expiresAt: Date.now() - 1_000 } }
      : await memory.claim(key, fingerprint, claimMs),
    discard: async (key) => { discarded.push(key); stale = false }
  }
  const idempotency = createIdempotency({ store, ttlMs: 60_000, pollMs: 20 })
  const begun = await idempotency.begin('url', FINGERPRINT, Date.now() + 2_000)
  t.ok('owner' in begun, 'the stale reply was not replayed')
  t.same(discarded, ['url'])

  const stuck = createIdempotency({ store: { ...store, claim: async (_key, fingerprint) => ({ kind: 'replay', reply: { ...reply(), fingerprint, expiresAt: 1 } }) }, ttlMs: 60_000 })
  await t.rejects(stuck.begin('url', FINGERPRINT, Date.now() + 2_000), { code: 'FUSION_IDEMPOTENCY_IN_PROGRESS' }, 'a reply that will not go away ends the request, not the event loop')
})

t.test('keys and fingerprints', async (t) => {
  t.equal(parseIdempotencyKey(undefined), undefined)
  t.equal(parseIdempotencyKey('8e03978e-40d5-43e8-bc93-6894a57f9324'), '8e03978e-40d5-43e8-bc93-6894a57f9324')
  t.equal(parseIdempotencyKey('"8e03978e-40d5"'), '8e03978e-40d5', 'the draft\'s structured-field string')
  for (const bad of ['', '""', 'a b', 'x'.repeat(256), 'é']) t.throws(() => parseIdempotencyKey(bad), { code: 'FUSION_INVALID_IDEMPOTENCY_KEY' }, JSON.stringify(bad))
  t.throws(() => parseIdempotencyKey(['a', 'b']), { code: 'FUSION_INVALID_IDEMPOTENCY_KEY' })

  const base = { projectId: '100307', modelId: 'm', answer: 'url', options: { faceDegree: 10, logoAdd: false }, image: Buffer.from('photo') }
  t.equal(payloadFingerprint(base), payloadFingerprint({ ...base, options: { logoAdd: false, faceDegree: 10 } }), 'option order does not matter')
  for (const change of [{ projectId: '100646' }, { modelId: 'n' }, { answer: 'image' }, { options: { faceDegree: 11, logoAdd: false } }, { image: Buffer.from('photo!') }]) {
    t.not(payloadFingerprint({ ...base, ...change }), payloadFingerprint(base), JSON.stringify(Object.keys(change)))
  }
})
