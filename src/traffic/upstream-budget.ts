import type { Redis } from 'ioredis'
import { setTimeout as sleep } from 'node:timers/promises'
import { fusionError } from '../errors.js'

/**
 * The upstream's quota, shared by every replica: calls are spaced at least
 * 1/QPS apart (a GCRA, "generic cell rate algorithm": each key remembers the
 * earliest time the next call may start). Spacing rather than counting per
 * window matters here: a fixed one-second window lets twice the quota through
 * around a window edge, and that is exactly what trips the upstream's own
 * frequency control. A call may wait for its slot up to `maxWaitMs`, so a
 * small burst is smoothed instead of refused; beyond that it is refused with
 * an honest Retry-After.
 *
 * With Redis, the state lives in one key per account and per limited
 * activity, updated by one atomic script on Redis' clock (replicas' clocks do
 * not matter). Without Redis, or while it is unreachable, the same algorithm
 * runs in memory at a conservative per-replica share.
 */
export interface BudgetOptions {
  qps: number
  projectQps: ReadonlyMap<string, number>
  maxWaitMs: number
  /** Per-replica QPS used while Redis is unreachable. */
  fallbackQps: number
  /** The Redis key of this account's budget; activity keys extend it. */
  keyPrefix: string
  redis?: Redis
  onFallback?: (error: unknown) => void
}

export interface UpstreamBudget {
  /**
   * Resolves when the call may start; rejects with 503 FUSION_UPSTREAM_BUSY when no slot frees up in time.
   * `startsAt` (performance.now() time) is when the slot began: a call sent much later breaks the spacing.
   */
  acquire: (projectId: string, signal?: AbortSignal, maxWaitMs?: number) => Promise<{ waitedMs: number, startsAt: number }>
  /** The upstream said "too frequent": no call starts for `ms`, on any replica. */
  backOff: (ms: number) => Promise<void>
  /** 'shared' (Redis), 'fallback' (Redis configured but unreachable) or 'local' (no Redis). */
  mode: () => 'shared' | 'fallback' | 'local'
}

interface Slot { granted: boolean, waitMs: number }

// KEYS: the account key, then the activity key when it has its own quota.
// ARGV: max wait (ms), then each key's interval (ms).
const RESERVE_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local start = now
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat > start then start = tat end
end
local wait = start - now
if wait > tonumber(ARGV[1]) then return {0, wait} end
for i = 1, #KEYS do
  local nextStart = start + tonumber(ARGV[i + 1])
  redis.call('SET', KEYS[i], nextStart, 'PX', math.ceil(nextStart - now) + 1000)
end
return {1, wait}
`

// KEYS: the account key, the pause marker. ARGV: pause (ms).
const BACK_OFF_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local resume = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if resume > tat then redis.call('SET', KEYS[1], resume, 'PX', tonumber(ARGV[1]) + 1000) end
redis.call('SET', KEYS[2], resume, 'PX', tonumber(ARGV[1]))
return 1
`

declare module 'ioredis' {
  // The type parameter's name must match ioredis' own declaration for the interfaces to merge.
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  interface RedisCommander<Context> {
    fusionBudgetReserve: (...args: Array<string | number>) => Promise<[number, number]>
    fusionBudgetBackOff: (...args: Array<string | number>) => Promise<number>
  }
}

/** The same algorithm in memory, for one replica. */
class LocalSlots {
  private readonly tats = new Map<string, number>()

  reserve (keys: Array<[string, number]>, maxWaitMs: number): Slot {
    const now = performance.now()
    let start = now
    for (const [key] of keys) start = Math.max(start, this.tats.get(key) ?? 0)
    const waitMs = start - now
    if (waitMs > maxWaitMs) return { granted: false, waitMs }
    for (const [key, interval] of keys) this.tats.set(key, start + interval)
    return { granted: true, waitMs }
  }

  backOff (key: string, ms: number): void {
    this.tats.set(key, Math.max(this.tats.get(key) ?? 0, performance.now() + ms))
  }
}

export function createUpstreamBudget (options: BudgetOptions): UpstreamBudget {
  const accountKey = options.keyPrefix
  const projectKey = (projectId: string): string => `${accountKey}:project:${projectId}`
  const pauseKey = `${accountKey}:paused`
  let pausedUntil = 0

  /** Milliseconds left of a pause ordered after the slot was granted (0: none). */
  async function pauseLeft (): Promise<number> {
    const local = pausedUntil - Date.now()
    if (local > 0 || redis === undefined || lastMode !== 'shared') return Math.max(0, local)
    try {
      return Math.max(0, await redis.pttl(pauseKey))
    } catch {
      return 0
    }
  }
  const fallbackShare = (options.fallbackQps > 0 ? options.fallbackQps : Math.max(options.qps / 4, 0.1)) / options.qps
  const local = new LocalSlots()
  let lastMode: 'shared' | 'fallback' | 'local' = options.redis ? 'shared' : 'local'

  const redis = options.redis
  if (redis !== undefined) {
    redis.defineCommand('fusionBudgetReserve', { lua: RESERVE_SCRIPT })
    redis.defineCommand('fusionBudgetBackOff', { lua: BACK_OFF_SCRIPT, numberOfKeys: 2 })
  }

  function keysFor (projectId: string, share: number): Array<[string, number]> {
    const keys: Array<[string, number]> = [[accountKey, 1000 / (options.qps * share)]]
    const projectQps = options.projectQps.get(projectId)
    if (projectQps !== undefined && projectQps < options.qps) keys.push([projectKey(projectId), 1000 / (projectQps * share)])
    return keys
  }

  async function reserve (projectId: string, maxWaitMs: number): Promise<Slot> {
    if (redis !== undefined) {
      try {
        const keys = keysFor(projectId, 1)
        const [granted, waitMs] = await redis.fusionBudgetReserve(
          keys.length, ...keys.map(([key]) => key), maxWaitMs, ...keys.map(([, interval]) => interval)
        )
        lastMode = 'shared'
        return { granted: granted === 1, waitMs }
      } catch (error) {
        if (lastMode !== 'fallback') options.onFallback?.(error)
        lastMode = 'fallback'
      }
      return local.reserve(keysFor(projectId, fallbackShare), maxWaitMs)
    }
    return local.reserve(keysFor(projectId, 1), maxWaitMs)
  }

  return {
    async acquire (projectId, signal, maxWaitMs) {
      signal?.throwIfAborted()
      const slot = await reserve(projectId, Math.max(0, Math.min(options.maxWaitMs, maxWaitMs ?? Infinity)))
      const startsAt = performance.now() + Math.max(0, slot.waitMs)
      if (!slot.granted) {
        throw fusionError('FUSION_UPSTREAM_BUSY', { retryAfterSeconds: Math.max(1, Math.ceil(slot.waitMs / 1000)) })
      }
      if (slot.waitMs > 0) {
        await sleep(slot.waitMs, undefined, signal === undefined ? {} : { signal })
        // Slots granted before a back-off must not fire into it.
        const left = await pauseLeft()
        if (left > 0) throw fusionError('FUSION_UPSTREAM_BUSY', { retryAfterSeconds: Math.max(1, Math.ceil(left / 1000)) })
      }
      return { waitedMs: Math.max(0, slot.waitMs), startsAt }
    },
    async backOff (ms) {
      if (ms <= 0) return
      local.backOff(accountKey, ms)
      pausedUntil = Math.max(pausedUntil, Date.now() + ms)
      if (redis !== undefined) {
        try {
          await redis.fusionBudgetBackOff(accountKey, pauseKey, ms)
        } catch {
          // Redis is down: the local pause above still protects the upstream from this replica.
        }
      }
    },
    // Redis' connection state decides before a call finds it out the hard way.
    mode: () => redis === undefined ? 'local' : redis.status === 'ready' ? 'shared' : 'fallback'
  }
}
