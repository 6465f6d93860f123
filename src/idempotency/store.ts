import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'

/**
 * Where idempotent replies and in-flight claims live: Redis when configured
 * (every replica sees them), memory otherwise (bounded in bytes). A key has at
 * most one of: a stored reply, or a claim by the request doing the work.
 *
 * A claim names the payload's fingerprint, so a second request with the same
 * key learns at once whether it is a retry (wait for the first) or a different
 * payload (refuse). It expires with its owner's deadline, so a replica that
 * dies mid-request cannot block the key for longer than one request could take.
 */
export interface StoredReply {
  fingerprint: string
  status: number
  contentType: string
  body: Buffer
  /** Epoch ms after which the reply must not be replayed (its result URL expires). */
  expiresAt?: number
}

export type ClaimOutcome =
  | { kind: 'replay', reply: StoredReply }
  | { kind: 'owner', token: string }
  /** Another request with the same key and payload is at work. */
  | { kind: 'busy' }
  /** The key is taken by a different payload. */
  | { kind: 'mismatch' }

export interface IdempotencyStore {
  claim: (key: string, fingerprint: string, claimMs: number) => Promise<ClaimOutcome>
  /**
   * Stores the reply (for `ttlMs`) and ends the claim, if the claim is still
   * this owner's or nobody's: an owner whose claim expired and was taken over
   * must not plant its reply under someone else's payload.
   */
  complete: (key: string, token: string, reply: StoredReply, ttlMs: number) => Promise<void>
  /** Ends the claim without storing anything: the next request with the key does the work again. */
  release: (key: string, token: string, fingerprint: string) => Promise<void>
  /** Drops a stored reply that must not be replayed any more. */
  discard: (key: string) => Promise<void>
}

/** A reply as one binary value: a length-prefixed JSON head, then the body bytes as they were sent. */
export function encodeReply (reply: StoredReply): Buffer {
  const { body, ...head } = reply
  const headBytes = Buffer.from(JSON.stringify(head))
  const length = Buffer.allocUnsafe(4)
  length.writeUInt32BE(headBytes.length)
  return Buffer.concat([length, headBytes, body])
}

export function decodeReply (value: Buffer): StoredReply {
  const headLength = value.readUInt32BE(0)
  const head = JSON.parse(value.subarray(4, 4 + headLength).toString('utf8')) as Omit<StoredReply, 'body'>
  return { ...head, body: value.subarray(4 + headLength) }
}

export function createMemoryStore (maxBytes: number): IdempotencyStore {
  const replies = new LRUCache<string, Buffer>({
    maxSize: maxBytes,
    sizeCalculation: (value, key) => value.length + key.length,
    // A single reply larger than a quarter of the store is not kept: it would evict everything else.
    maxEntrySize: Math.max(1, Math.floor(maxBytes / 4)),
    ttlAutopurge: false
  })
  const claims = new Map<string, { fingerprint: string, token: string, expiresAt: number }>()

  return {
    async claim (key, fingerprint, claimMs) {
      const stored = replies.get(key)
      if (stored !== undefined) return { kind: 'replay', reply: decodeReply(stored) }
      const held = claims.get(key)
      if (held !== undefined && held.expiresAt > Date.now()) {
        return held.fingerprint === fingerprint ? { kind: 'busy' } : { kind: 'mismatch' }
      }
      const token = randomUUID()
      claims.set(key, { fingerprint, token, expiresAt: Date.now() + claimMs })
      return { kind: 'owner', token }
    },
    async complete (key, token, reply, ttlMs) {
      const held = claims.get(key)
      const ours = held?.token === token
      if (!ours && held !== undefined && held.expiresAt > Date.now()) return
      if (!replies.has(key)) replies.set(key, encodeReply(reply), { ttl: ttlMs })
      if (ours) claims.delete(key)
    },
    async release (key, token) {
      if (claims.get(key)?.token === token) claims.delete(key)
    },
    async discard (key) {
      replies.delete(key)
    }
  }
}

// KEYS: the reply, the claim. ARGV: fingerprint (64 hex), owner token, claim ms.
// One script, so two replicas can never both become the owner of a key.
const CLAIM_SCRIPT = `
local stored = redis.call('GET', KEYS[1])
if stored then return {'replay', stored} end
local held = redis.call('GET', KEYS[2])
if held then
  if string.sub(held, 1, 64) == ARGV[1] then return {'busy'} end
  return {'mismatch'}
end
redis.call('SET', KEYS[2], ARGV[1] .. ARGV[2], 'PX', ARGV[3])
return {'owner'}
`

// KEYS: the reply, the claim. ARGV: the encoded reply, ttl ms, the claim's value.
// Stored only while the claim is ours or nobody's, and only if no reply is; the claim is ended only if it is ours.
const COMPLETE_SCRIPT = `
local held = redis.call('GET', KEYS[2])
if held and held ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
if held then redis.call('DEL', KEYS[2]) end
return 1
`

const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`

declare module 'ioredis' {
  // The type parameter's name must match ioredis' own declaration for the interfaces to merge.
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  interface RedisCommander<Context> {
    // The Buffer variants ioredis adds to every defined command: replies stay bytes.
    fusionIdempotencyClaimBuffer: (...args: Array<string | Buffer | number>) => Promise<Buffer[]>
    fusionIdempotencyComplete: (...args: Array<string | Buffer | number>) => Promise<number>
    fusionIdempotencyRelease: (...args: Array<string | Buffer | number>) => Promise<number>
  }
}

export function createRedisStore (redis: Redis, keyPrefix: string): IdempotencyStore {
  redis.defineCommand('fusionIdempotencyClaim', { lua: CLAIM_SCRIPT, numberOfKeys: 2 })
  redis.defineCommand('fusionIdempotencyComplete', { lua: COMPLETE_SCRIPT, numberOfKeys: 2 })
  redis.defineCommand('fusionIdempotencyRelease', { lua: RELEASE_SCRIPT, numberOfKeys: 1 })
  // A claim's value is `fingerprint + token`: the fingerprint for those who wait, the token for its owner.
  const keys = (key: string): [string, string] => [`${keyPrefix}${key}`, `${keyPrefix}${key}:claim`]

  return {
    async claim (key, fingerprint, claimMs) {
      const token = randomUUID()
      const answer = await redis.fusionIdempotencyClaimBuffer(...keys(key), fingerprint, token, Math.max(1, Math.ceil(claimMs)))
      const kind = answer[0]?.toString()
      if (kind === 'replay') return { kind, reply: decodeReply(answer[1]!) }
      if (kind === 'owner') return { kind, token }
      return kind === 'busy' ? { kind } : { kind: 'mismatch' }
    },
    async complete (key, token, reply, ttlMs) {
      await redis.fusionIdempotencyComplete(...keys(key), encodeReply(reply), Math.max(1, Math.ceil(ttlMs)), reply.fingerprint + token)
    },
    async release (key, token, fingerprint) {
      await redis.fusionIdempotencyRelease(keys(key)[1], fingerprint + token)
    },
    async discard (key) {
      await redis.del(keys(key)[0])
    }
  }
}

/**
 * Redis while it answers, memory while it does not: a replica cut off from
 * Redis de-duplicates the retries it sees itself instead of failing every
 * request that carries a key. What is held in Redis is out of its sight for
 * the outage, and what it stores meanwhile stays in its memory. A claim taken
 * in one store is completed in the same one.
 */
export function withFallback (shared: IdempotencyStore, local: IdempotencyStore, onFallback: (error: unknown) => void): IdempotencyStore {
  const localTokens = new Set<string>()
  return {
    async claim (key, fingerprint, claimMs) {
      try {
        return await shared.claim(key, fingerprint, claimMs)
      } catch (error) {
        onFallback(error)
        const outcome = await local.claim(key, fingerprint, claimMs)
        if (outcome.kind === 'owner') localTokens.add(outcome.token)
        return outcome
      }
    },
    async complete (key, token, reply, ttlMs) {
      if (localTokens.delete(token)) return await local.complete(key, token, reply, ttlMs)
      await shared.complete(key, token, reply, ttlMs).catch(async (error: unknown) => {
        onFallback(error)
        await local.complete(key, token, reply, ttlMs)
      })
    },
    async release (key, token, fingerprint) {
      if (localTokens.delete(token)) return await local.release(key, token, fingerprint)
      await shared.release(key, token, fingerprint).catch(onFallback)
    },
    async discard (key) {
      await Promise.all([shared.discard(key).catch(onFallback), local.discard(key)])
    }
  }
}
