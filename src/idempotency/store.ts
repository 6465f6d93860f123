import { randomUUID } from 'node:crypto'
import type { ClientContext, Redis, Result } from 'ioredis'
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
  /** Headers a replay repeats: where an accepted job is and what was applied of the request's preferences. */
  headers?: Record<string, string>
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

/** What a replica held in its own memory, with what is left of its life, to be written back to the shared store. */
export type HeldEntry =
  | { kind: 'reply', key: string, value: Buffer, ttlMs: number }
  | { kind: 'claim', key: string, fingerprint: string, token: string, ttlMs: number }

/** The in-memory store, which can also be read without claiming and listed for a write-back. */
export interface LocalStore extends IdempotencyStore {
  /** What the key holds here (a reply, or another request's claim), without taking it; undefined when it is free. */
  peek: (key: string, fingerprint: string) => Exclude<ClaimOutcome, { kind: 'owner' }> | undefined
  /** Whether this claim is still held (neither completed, released nor expired). */
  holds: (key: string, token: string) => boolean
  /** Every live reply and claim. */
  held: () => HeldEntry[]
}

/** The Redis store, which can take back what a replica held while Redis was out of its reach. */
export interface SharedStore extends IdempotencyStore {
  /** Writes each reply where the key has none, each claim where the key has neither reply nor claim. */
  restore: (entries: HeldEntry[]) => Promise<void>
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

export function createMemoryStore (maxBytes: number): LocalStore {
  const replies = new LRUCache<string, Buffer>({
    maxSize: maxBytes,
    sizeCalculation: (value, key) => value.length + key.length,
    // A single reply larger than a quarter of the store is not kept: it would evict everything else.
    maxEntrySize: Math.max(1, Math.floor(maxBytes / 4)),
    ttlAutopurge: false
  })
  const claims = new Map<string, { fingerprint: string, token: string, expiresAt: number }>()

  function peek (key: string, fingerprint: string): Exclude<ClaimOutcome, { kind: 'owner' }> | undefined {
    const stored = replies.get(key)
    if (stored !== undefined) return { kind: 'replay', reply: decodeReply(stored) }
    const held = claims.get(key)
    if (held !== undefined && held.expiresAt > Date.now()) {
      return held.fingerprint === fingerprint ? { kind: 'busy' } : { kind: 'mismatch' }
    }
    return undefined
  }

  return {
    peek,
    async claim (key, fingerprint, claimMs) {
      const here = peek(key, fingerprint)
      if (here !== undefined) return here
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
    },
    holds (key, token) {
      const held = claims.get(key)
      return held?.token === token && held.expiresAt > Date.now()
    },
    held () {
      const now = Date.now()
      const entries: HeldEntry[] = []
      for (const [key, value] of replies.entries()) {
        const ttlMs = replies.getRemainingTTL(key)
        if (ttlMs > 0 && Number.isFinite(ttlMs)) entries.push({ kind: 'reply', key, value, ttlMs })
      }
      for (const [key, claim] of claims) {
        if (claim.expiresAt <= now) claims.delete(key)
        else entries.push({ kind: 'claim', key, fingerprint: claim.fingerprint, token: claim.token, ttlMs: claim.expiresAt - now })
      }
      return entries
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

// KEYS: the reply, the claim. ARGV: the claim's value, its ms left. A claim written back never hides a stored reply.
const RESTORE_CLAIM_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2], 'NX') then return 1 end
return 0
`

const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`

declare module 'ioredis' {
  // The type parameter's name must match ioredis' own declaration for the interfaces to merge.
  interface RedisCommander<Context extends ClientContext = { type: 'default' }> {
    // The Buffer variants ioredis adds to every defined command: replies stay bytes.
    fusionIdempotencyClaimBuffer: (...args: Array<string | Buffer | number>) => Promise<Buffer[]>
    fusionIdempotencyComplete: (...args: Array<string | Buffer | number>) => Promise<number>
    fusionIdempotencyRelease: (...args: Array<string | Buffer | number>) => Promise<number>
    // Also queued on a pipeline (restore, below), where it returns the pipeline.
    fusionIdempotencyRestoreClaim: (...args: Array<string | Buffer | number>) => Result<number, Context>
  }
}

/** Entries written back per round trip: a replica's memory store may hold thousands. */
const RESTORE_BATCH = 200

export function createRedisStore (redis: Redis, keyPrefix: string): SharedStore {
  redis.defineCommand('fusionIdempotencyClaim', { lua: CLAIM_SCRIPT, numberOfKeys: 2 })
  redis.defineCommand('fusionIdempotencyComplete', { lua: COMPLETE_SCRIPT, numberOfKeys: 2 })
  redis.defineCommand('fusionIdempotencyRelease', { lua: RELEASE_SCRIPT, numberOfKeys: 1 })
  redis.defineCommand('fusionIdempotencyRestoreClaim', { lua: RESTORE_CLAIM_SCRIPT, numberOfKeys: 2 })
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
    },
    async restore (entries) {
      for (let start = 0; start < entries.length; start += RESTORE_BATCH) {
        const pipeline = redis.pipeline()
        for (const entry of entries.slice(start, start + RESTORE_BATCH)) {
          const ttlMs = Math.max(1, Math.ceil(entry.ttlMs))
          if (entry.kind === 'reply') pipeline.set(keys(entry.key)[0], entry.value, 'PX', ttlMs, 'NX')
          else pipeline.fusionIdempotencyRestoreClaim(...keys(entry.key), entry.fingerprint + entry.token, ttlMs)
        }
        const results = await pipeline.exec()
        const failed = results?.find(([error]) => error !== null)
        if (results === null || failed !== undefined) throw failed?.[0] ?? new Error('redis pipeline not executed')
      }
    }
  }
}

/**
 * Redis while it answers, memory while it does not: a replica cut off from
 * Redis de-duplicates the retries it sees itself instead of failing every
 * request that carries a key. What is held in Redis is out of its sight for
 * the outage; what it holds meanwhile is kept in its memory, and outlives the
 * outage:
 *
 * - the memory is read first, so an answer (or a claim) this replica made while
 *   Redis was away still counts here once Redis is back;
 * - it is written back to Redis (replies where the key has none, claims where
 *   it has nothing) as soon as Redis answers again, so every other replica sees
 *   it too; an owner that finishes later also completes or releases its claim
 *   in Redis.
 *
 * A claim taken in memory is completed in memory first. Only a retry that
 * reaches another replica during the outage, or before the write-back, is
 * fused again.
 */
export interface FallbackStore extends IdempotencyStore {
  /** Writes back what memory holds, if anything was kept there since the last write-back. */
  writeBack: () => Promise<void>
}

export interface FallbackEvents {
  /** A Redis command failed: the memory store answered instead (or a write-back waits for the next chance). */
  onFallback: (error: unknown) => void
  /** What memory held was written back to Redis. */
  onWrittenBack?: (counts: { replies: number, claims: number }) => void
}

export function withFallback (shared: SharedStore, local: LocalStore, events: FallbackEvents): FallbackStore {
  const { onFallback } = events
  const localTokens = new Set<string>()
  // Memory holds something Redis has not seen.
  let unsynced = false
  let writing: Promise<void> | undefined

  async function writeBack (): Promise<void> {
    if (writing !== undefined) return await writing
    if (!unsynced) return
    writing = (async () => {
      // By token and by key: a later round writes the same entries again (a no-op in Redis), they count once.
      const claims = new Map<string, Extract<HeldEntry, { kind: 'claim' }>>()
      const replies = new Set<string>()
      try {
        // Again while memory changed during a round: an owner may have completed meanwhile.
        while (unsynced) {
          unsynced = false
          const entries = local.held()
          await shared.restore(entries)
          for (const entry of entries) {
            if (entry.kind === 'claim') claims.set(entry.token, entry)
            else replies.add(entry.key)
          }
        }
        // A claim that ended while it was written back must not linger there until it expires.
        for (const claim of claims.values()) {
          if (!local.holds(claim.key, claim.token)) await shared.release(claim.key, claim.token, claim.fingerprint)
        }
        if (replies.size + claims.size > 0) events.onWrittenBack?.({ replies: replies.size, claims: claims.size })
      } catch (error) {
        unsynced = true
        onFallback(error)
      }
    })()
    try {
      await writing
    } finally {
      writing = undefined
    }
  }

  return {
    writeBack,
    async claim (key, fingerprint, claimMs) {
      const here = local.peek(key, fingerprint)
      if (here !== undefined) return here
      try {
        const outcome = await shared.claim(key, fingerprint, claimMs)
        if (unsynced) void writeBack()
        return outcome
      } catch (error) {
        onFallback(error)
        const outcome = await local.claim(key, fingerprint, claimMs)
        if (outcome.kind === 'owner') {
          localTokens.add(outcome.token)
          unsynced = true
        }
        return outcome
      }
    },
    async complete (key, token, reply, ttlMs) {
      if (localTokens.delete(token)) {
        await local.complete(key, token, reply, ttlMs)
        unsynced = true
        // Redis may be back already, holding this claim (written back): complete it there too, or at the next write-back.
        await shared.complete(key, token, reply, ttlMs).catch(onFallback)
        return
      }
      await shared.complete(key, token, reply, ttlMs).catch(async (error: unknown) => {
        onFallback(error)
        await local.complete(key, token, reply, ttlMs)
        unsynced = true
      })
    },
    async release (key, token, fingerprint) {
      if (localTokens.delete(token)) {
        await local.release(key, token, fingerprint)
        await shared.release(key, token, fingerprint).catch(onFallback)
        return
      }
      await shared.release(key, token, fingerprint).catch(onFallback)
    },
    async discard (key) {
      await Promise.all([shared.discard(key).catch(onFallback), local.discard(key)])
    }
  }
}
