import { ExponentialBackoff, handleWhen, retry } from 'cockatiel'
import { isFusionError } from '../errors.js'
import type { GuardedProvider } from './circuit-breaker.js'
import type { FusionRequest, FusionResult, UpstreamLogger } from './provider.js'

/**
 * Retries only what is safe to send again. Every upstream call may be billed,
 * so the client marks an error `retryable` only when nothing can have been
 * fused: a connection that was never made, an expired legacy signature
 * (`ret -7`, re-signed on the next attempt, as every attempt signs afresh), and
 * the upstream's transient faults (legacy `-5`, `-1002`…`-1007`, `-20005`; the
 * API 3.0 codes its table marks retryable). Frequency
 * control, timeouts and resets after the request left are never retried.
 * Delays grow exponentially with decorrelated jitter, and no retry starts
 * that could not finish before the request's deadline.
 */
export interface RetryOptions {
  /** Attempts after the first. */
  retries: number
  initialDelayMs: number
  maxDelayMs: number
  /** A retry is not started with less time than this left before the deadline. */
  minRemainingMs: number
  onRetry?: (error: unknown, attempt: number) => void
}

export interface AttemptHooks {
  /** Runs before every attempt, the first included (the upstream budget's slot). */
  beforeAttempt?: (signal: AbortSignal) => Promise<unknown>
}

export type RetryingProvider = Omit<GuardedProvider, 'fuse'> & {
  fuse: (request: FusionRequest, log?: UpstreamLogger, hooks?: AttemptHooks) => Promise<FusionResult>
}

export function withRetries (inner: GuardedProvider, options: RetryOptions): RetryingProvider {
  return {
    ...inner,
    async fuse (request, log, hooks) {
      const timeLeft = (): number => request.deadline === undefined ? Infinity : request.deadline - Date.now()
      const policy = retry(
        handleWhen((error) => isFusionError(error) && error.retryable === true && timeLeft() > options.minRemainingMs),
        {
          maxAttempts: options.retries,
          backoff: new ExponentialBackoff({ initialDelay: options.initialDelayMs, maxDelay: options.maxDelayMs })
        }
      )
      let attempt = 0
      let lastError: unknown
      policy.onRetry((event) => {
        const error = 'error' in event ? event.error : undefined
        lastError = error
        log?.warn({ upstream: { retry: attempt, delayMs: Math.round(event.delay), code: isFusionError(error) ? error.code : undefined, upstreamCode: isFusionError(error) ? error.upstreamCode : undefined } }, 'retrying the upstream call')
        options.onRetry?.(error, attempt)
      })
      return await policy.execute(async ({ signal }) => {
        attempt++
        // The client may have left during the back-off delay, which does not watch the signal.
        request.signal?.throwIfAborted()
        if (attempt > 1 && timeLeft() <= options.minRemainingMs) throw lastError
        // An open circuit fails at once, before a slot of the upstream budget is spent.
        inner.checkAvailable()
        await hooks?.beforeAttempt?.(signal)
        return await inner.fuse(request, log)
      }, request.signal)
    }
  }
}
