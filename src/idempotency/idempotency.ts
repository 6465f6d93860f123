import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { fusionError } from '../errors.js'
import type { IdempotencyStore, StoredReply } from './store.js'

/**
 * Idempotency-Key (draft-ietf-httpapi-idempotency-key-header) for fusions,
 * which Tencent bills and does not de-duplicate: the first request with a key
 * does the work; a later one with the same key and payload gets the stored
 * reply; one that arrives while the first is at work waits for it, within its
 * own deadline; the same key with another payload is refused.
 */
export interface IdempotencyOptions {
  store: IdempotencyStore
  /** How long a reply is kept. */
  ttlMs: number
  /** How often a waiting request looks again. */
  pollMs?: number
}

export interface Ownership {
  /** Stores the reply (unless it expires first) and frees the key. Safe to call more than once. */
  complete: (reply: Omit<StoredReply, 'fingerprint'>) => Promise<void>
  /** Frees the key without storing: the next request with it does the work. */
  release: () => Promise<void>
}

export type Begun = { replay: StoredReply } | { owner: Ownership }

export interface Idempotency {
  /** `waiting` runs once, before this request first waits for another that holds the key. */
  begin: (key: string, fingerprint: string, deadline: number, signal?: AbortSignal, waiting?: () => void) => Promise<Begun>
}

/** Seconds a request refused while the first is still at work should wait. */
const IN_PROGRESS_RETRY_AFTER_SECONDS = 1
const MAX_KEY_LENGTH = 255
const URL_EXPIRY_MARGIN_MS = 60_000

/**
 * The header's value: a Structured Field string (`"…"`, as the draft writes it)
 * or, as most clients send it, the bare value. 1–255 visible ASCII characters.
 */
export function parseIdempotencyKey (header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined
  if (Array.isArray(header)) throw invalidKey('send one Idempotency-Key header')
  const trimmed = header.trim()
  const quoted = /^"((?:[^"\\]|\\["\\])*)"$/.exec(trimmed)
  const value = quoted !== null ? quoted[1]!.replace(/\\(["\\])/g, '$1') : trimmed
  if (value.length === 0 || value.length > MAX_KEY_LENGTH || !/^[\x21-\x7e]+$/.test(value)) {
    throw invalidKey(`it must be 1–${MAX_KEY_LENGTH} visible ASCII characters`)
  }
  return value
}

function invalidKey (rule: string): Error {
  return fusionError('FUSION_INVALID_IDEMPOTENCY_KEY', { message: `The Idempotency-Key header is invalid: ${rule}.` })
}

/** What makes two requests "the same payload": every input that shapes the fusion and the answer. */
export function payloadFingerprint (parts: { projectId: string, modelId: string, answer: string, options: object, image: Buffer }): string {
  const options = Object.fromEntries(Object.entries(parts.options).sort(([a], [b]) => a.localeCompare(b)))
  const imageHash = createHash('sha256').update(parts.image).digest('hex')
  return createHash('sha256')
    .update(JSON.stringify([parts.projectId, parts.modelId, parts.answer, options, imageHash]))
    .digest('hex')
}

export function createIdempotency (options: IdempotencyOptions): Idempotency {
  const pollMs = options.pollMs ?? 100
  const { store } = options

  return {
    async begin (key, fingerprint, deadline, signal, waiting) {
      let discarded = 0
      let waited = false
      for (;;) {
        signal?.throwIfAborted()
        // The claim outlives the deadline a little, so a slow finish is still recorded before another may start.
        const claimMs = Math.max(1_000, deadline - Date.now() + 1_000)
        const outcome = await store.claim(key, fingerprint, claimMs)
        if (outcome.kind === 'replay') {
          if (outcome.reply.fingerprint !== fingerprint) throw reused()
          if (outcome.reply.expiresAt === undefined || outcome.reply.expiresAt > Date.now()) return { replay: outcome.reply }
          // Past its result's lifetime (kept a little longer than its TTL allows, or stored by a replica whose clock is
          // behind): never replayed. Dropped, so the next claim makes this request the owner.
          await store.discard(key)
          if (++discarded > 1) throw fusionError('FUSION_IDEMPOTENCY_IN_PROGRESS', { retryAfterSeconds: IN_PROGRESS_RETRY_AFTER_SECONDS })
          continue
        }
        if (outcome.kind === 'mismatch') throw reused()
        if (outcome.kind === 'owner') return { owner: ownership(key, outcome.token, fingerprint) }
        if (Date.now() + pollMs >= deadline) {
          throw fusionError('FUSION_IDEMPOTENCY_IN_PROGRESS', { retryAfterSeconds: IN_PROGRESS_RETRY_AFTER_SECONDS })
        }
        if (!waited) {
          waited = true
          waiting?.()
        }
        await sleep(pollMs, undefined, signal !== undefined ? { signal } : {})
      }
    }
  }

  function ownership (key: string, token: string, fingerprint: string): Ownership {
    let settled = false
    return {
      async complete (reply) {
        if (settled) return
        settled = true
        // Dropped a minute before the result URL dies, so a replay is never handed a URL about to expire.
        const lifetime = reply.expiresAt !== undefined ? reply.expiresAt - Date.now() - URL_EXPIRY_MARGIN_MS : Infinity
        const ttlMs = Math.min(options.ttlMs, lifetime)
        if (ttlMs <= 0) return await store.release(key, token, fingerprint)
        await store.complete(key, token, { ...reply, fingerprint }, ttlMs)
      },
      async release () {
        if (settled) return
        settled = true
        await store.release(key, token, fingerprint)
      }
    }
  }
}

function reused (): Error {
  return fusionError('FUSION_IDEMPOTENCY_KEY_REUSED')
}
