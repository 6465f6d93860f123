import { BrokenCircuitError, CircuitState, CountBreaker, circuitBreaker, handleWhen, type IDisposable } from 'cockatiel'
import { fusionError, isFusionError, type ErrorCode } from '../errors.js'

/**
 * A circuit breaker around every upstream call (cockatiel): once enough calls
 * were made (`minimumCalls`) and too many of the last `windowSize` failed
 * (timeouts, unreachable, 5xx-like answers), it opens and calls fail at once
 * with 503 for `openMs`, instead of piling up behind a sick upstream.
 *
 * cockatiel closes a half-open circuit after a single success; one lucky call
 * says little about an upstream that was failing, so this layer keeps the
 * circuit on probation until `halfOpenSuccesses` calls in a row succeeded, one
 * call at a time. A failure on probation opens it again.
 */
export interface BreakerOptions {
  failureRatio: number
  minimumCalls: number
  windowSize: number
  openMs: number
  halfOpenSuccesses: number
  onStateChange?: (state: BreakerState) => void
}

export type BreakerState = 'closed' | 'open' | 'half-open'

/** Failures that say the upstream is unwell, as opposed to answers about this request. */
const SICK_UPSTREAM: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'FUSION_UPSTREAM_TIMEOUT', 'FUSION_UPSTREAM_UNREACHABLE', 'FUSION_UPSTREAM_FAILED',
  'FUSION_UPSTREAM_BAD_RESPONSE', 'FUSION_UPSTREAM_UNKNOWN_CODE'
])

export const isUpstreamFailure = (error: unknown): boolean =>
  isFusionError(error) && SICK_UPSTREAM.has(error.code) && error.byDeadline !== true

export interface Breaker {
  /** Throws 503 FUSION_UPSTREAM_UNAVAILABLE at once when no call may be made now. */
  check: () => void
  /** Runs one upstream call under the breaker: counted, and refused while the circuit is open. */
  run: <T>(send: () => Promise<T>) => Promise<T>
  state: () => BreakerState
  close: () => void
}

export function createBreaker (options: BreakerOptions): Breaker {
  // A client leaving during the half-open test says nothing good about the upstream: cockatiel
  // would count any unhandled error there as a success and close the circuit.
  const counts = (error: unknown): boolean => isUpstreamFailure(error) ||
    (policy.state === CircuitState.HalfOpen && isFusionError(error) && error.code === 'FUSION_CLIENT_CLOSED_REQUEST')
  const policy = circuitBreaker(handleWhen(counts), {
    halfOpenAfter: options.openMs,
    breaker: new CountBreaker({ threshold: options.failureRatio, size: options.windowSize, minimumNumberOfCalls: options.minimumCalls })
  })
  let openedAt = 0
  let probationLeft = 0
  let probeInFlight = false
  let reopened: IDisposable | undefined
  let reopenTimer: NodeJS.Timeout | undefined
  let halfOpenTimer: NodeJS.Timeout | undefined
  let reported: BreakerState = 'closed'

  const state = (): BreakerState => {
    if (policy.state === CircuitState.Isolated) return 'open'
    // cockatiel moves to half-open lazily, on the first call after the open period.
    if (policy.state === CircuitState.Open) return Date.now() >= openedAt + options.openMs ? 'half-open' : 'open'
    if (policy.state === CircuitState.HalfOpen || probationLeft > 0) return 'half-open'
    return 'closed'
  }
  const report = (): void => {
    const now = state()
    if (now !== reported) {
      reported = now
      options.onStateChange?.(now)
    }
  }
  policy.onBreak(() => {
    openedAt = Date.now()
    report()
    // The state turns half-open with time alone; say so without waiting for the next call.
    clearTimeout(halfOpenTimer)
    halfOpenTimer = setTimeout(report, options.openMs).unref()
  })
  policy.onHalfOpen(() => report())
  // cockatiel closed the circuit after its test call succeeded (counted as a probe in run): the rest of the probation is ours.
  policy.onReset(() => { probationLeft = options.halfOpenSuccesses; report() })

  const unavailable = (): Error => fusionError('FUSION_UPSTREAM_UNAVAILABLE', {
    retryAfterSeconds: Math.max(1, Math.ceil((openedAt + options.openMs - Date.now()) / 1000))
  })

  function reopen (): void {
    probationLeft = 0
    openedAt = Date.now()
    reopened = policy.isolate()
    report()
    reopenTimer = setTimeout(() => {
      reopened?.dispose()
      reopened = undefined
      // Back from the second opening: the whole probation again.
      probationLeft = options.halfOpenSuccesses
      report()
    }, options.openMs).unref()
  }

  /** Half-open, and a probe is already out: everyone else waits (fails fast). */
  function checkAvailable (): void {
    const now = state()
    if (now === 'open' || (now === 'half-open' && probeInFlight)) throw unavailable()
  }

  return {
    check: checkAvailable,
    state,
    close: () => {
      clearTimeout(reopenTimer)
      clearTimeout(halfOpenTimer)
      reopened = undefined
    },
    async run (send) {
      checkAvailable()
      // One call at a time while half-open: cockatiel's own test call and the probation that follows.
      const probing = state() === 'half-open'
      if (probing) probeInFlight = true
      try {
        const result = await policy.execute(send)
        if (probing) {
          probationLeft = Math.max(0, probationLeft - 1)
          report()
        }
        return result
      } catch (error) {
        if (error instanceof BrokenCircuitError) throw unavailable()
        if (probing && isUpstreamFailure(error)) reopen()
        throw error
      } finally {
        if (probing) probeInFlight = false
      }
    }
  }
}
