import { fusionError, isFusionError } from '../errors.js'
import type { UpstreamBudget } from '../traffic/upstream-budget.js'
import type { Breaker } from './circuit-breaker.js'
import type { UpstreamLogger } from './provider.js'
import type { Retrying } from './retrying.js'

/**
 * Every upstream call, fusions and template listings alike, passes through one
 * chain, composed here and nowhere else:
 *
 *   retries → breaker check → budget slot → breaker → frequency-control back-off → the HTTP exchange
 *
 * Each attempt, a retry or a re-signed call included, takes its own slot of the
 * shared budget (an open circuit fails before spending one), is counted by the
 * breaker, and, when the upstream answers "too frequent", pauses every replica.
 *
 * The budget spaces slots; the upstream counts arrivals. A call that starts
 * late (a starved event loop fires its timer late) would arrive close to the
 * next slot's call, so a slot older than `maxLateMs` is given up for a new one:
 * the spacing the upstream sees is then off by at most that, by construction.
 */
export interface UpstreamCall {
  /** The activity the call is for: the budget counts per account and per limited activity. */
  projectId: string
  /** Aborts the waits and any attempt not yet sent, with its reason; an attempt already sent is `send`'s to cut short. */
  signal?: AbortSignal | undefined
  /** Epoch ms by which the call must be answered. */
  deadline?: number | undefined
  log?: UpstreamLogger | undefined
  /** Runs before each attempt is sent, after its slot (again if the slot is given up): from here it may reach the upstream. */
  beforeSend?: (() => Promise<void>) | undefined
}

/** Runs `send` (one HTTP exchange, signed afresh each time) under the chain. */
export type CallPolicy = <T>(call: UpstreamCall, send: () => Promise<T>) => Promise<T>

export interface ChainParts {
  retrying: Retrying
  breaker: Breaker
  budget: UpstreamBudget
  /** The least pause after frequency control (0: none); the upstream's Retry-After may ask for more. */
  backOffMs: number
  /** Time kept back from the budget wait for the call itself to connect. */
  connectTimeoutMs: number
  /** How late after its slot a call may still be sent (UPSTREAM_BUDGET_MAX_LATE_MS). */
  maxLateMs: number
  onStaleSlot?: (lateMs: number) => void
  onBudgetWait?: (waitedMs: number) => void
  onBudgetRefused?: () => void
  onBackOff?: (pauseMs: number) => void
}

/** A machine this starved refuses rather than keep drawing slots it cannot use in time. */
const MAX_STALE_SLOTS = 3

export function createCallPolicy (parts: ChainParts): CallPolicy {
  /**
   * Waits for a slot, then runs `beforeSend`; gives the slot up for another when
   * the two together ended too late. The lateness is measured after `beforeSend`
   * because its own wait (a Redis write) delays the arrival too.
   */
  async function slotThenPrepare (call: UpstreamCall): Promise<void> {
    for (let stale = 0; ; stale++) {
      const maxWaitMs = call.deadline === undefined ? Infinity : call.deadline - Date.now() - parts.connectTimeoutMs
      let startsAt: number
      try {
        if (stale === MAX_STALE_SLOTS) throw fusionError('FUSION_UPSTREAM_BUSY', { retryAfterSeconds: 1 })
        const granted = await parts.budget.acquire(call.projectId, call.signal, maxWaitMs)
        startsAt = granted.startsAt
        parts.onBudgetWait?.(granted.waitedMs)
        if (granted.waitedMs > 0) call.log?.debug?.({ budget: { waitedMs: granted.waitedMs } }, 'waited for the upstream budget')
      } catch (error) {
        if (isFusionError(error) && error.code === 'FUSION_UPSTREAM_BUSY') parts.onBudgetRefused?.()
        // A wait cut short says why (its signal's reason), not only that it was aborted.
        call.signal?.throwIfAborted()
        throw error
      }
      // The last moment a call can be given up without being sent (the client left, or the service stops in a hurry).
      call.signal?.throwIfAborted()
      await call.beforeSend?.()
      const lateMs = performance.now() - startsAt
      if (lateMs <= parts.maxLateMs) return
      parts.onStaleSlot?.(lateMs)
      call.log?.debug?.({ budget: { lateMs: Math.round(lateMs) } }, 'upstream budget slot came too late; taking another')
    }
  }

  async function backOffOn (error: unknown): Promise<void> {
    if (!isFusionError(error) || error.code !== 'FUSION_RATE_LIMITED' || parts.backOffMs <= 0) return
    const pauseMs = Math.max(parts.backOffMs, (error.retryAfterSeconds ?? 0) * 1000)
    await parts.budget.backOff(pauseMs)
    parts.onBackOff?.(pauseMs)
    // Honest: no call will go out before the pause ends.
    error.retryAfterSeconds = Math.max(error.retryAfterSeconds ?? 1, Math.ceil(pauseMs / 1000))
  }

  return async (call, send) => await parts.retrying(call, async () => {
    // An open circuit fails at once, before a slot of the budget is spent.
    parts.breaker.check()
    await slotThenPrepare(call)
    return await parts.breaker.run(async () => {
      try {
        return await send()
      } catch (error) {
        await backOffOn(error)
        throw error
      }
    })
  })
}

/** No chain: each call is sent once, as it is (for clients tested on their own). */
export const sendDirectly: CallPolicy = async (_call, send) => await send()
