import { ExponentialBackoff, handleWhen, retry } from 'cockatiel'
import { isFusionError } from '../errors.js'
import type { UpstreamLogger } from './provider.js'

/**
 * Retries only what is safe to send again. Every upstream call may be billed,
 * so the client marks an error `retryable` only when nothing can have been
 * fused: a connection that was never made, an expired signature (legacy
 * `ret -7`, API 3.0 `AuthFailure.SignatureExpire`: every attempt signs afresh),
 * and the upstream's transient faults (legacy `-5`, `-1002`…`-1007`, `-20005`;
 * the API 3.0 codes its table marks retryable). Frequency control, timeouts and
 * resets after the request left are never retried. Delays grow exponentially
 * with decorrelated jitter, and no retry starts that could not finish before
 * the call's deadline.
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

export interface RetryContext {
  signal?: AbortSignal | undefined
  /** Epoch ms. */
  deadline?: number | undefined
  log?: UpstreamLogger | undefined
}

export type Retrying = <T>(context: RetryContext, attempt: () => Promise<T>) => Promise<T>

export function createRetrying (options: RetryOptions): Retrying {
  return async (context, attemptOnce) => {
    const timeLeft = (): number => context.deadline === undefined ? Infinity : context.deadline - Date.now()
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
      const code = isFusionError(error) ? error.code : undefined
      const upstreamCode = isFusionError(error) ? error.upstreamCode : undefined
      context.log?.warn(
        { upstream: { retry: attempt, delayMs: Math.round(event.delay), code, upstreamCode } }, 'retrying the upstream call'
      )
      options.onRetry?.(error, attempt)
    })
    return await policy.execute(async () => {
      attempt++
      // The client may have left during the back-off delay, which does not watch the signal.
      context.signal?.throwIfAborted()
      if (attempt > 1 && timeLeft() <= options.minRemainingMs) throw lastError
      return await attemptOnce()
    }, context.signal)
  }
}
