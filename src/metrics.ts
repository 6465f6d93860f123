import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/**
 * Every metric the service exports, on a registry of the app's own (tests
 * build several apps in one process). Names are documented in docs/operations.md.
 */
export function createMetrics () {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'fusion_' })
  const seconds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
  // Read at each scrape, so the gauge is the connection's state then, as /readyz reports it.
  const redisProbes = new Map<string, () => boolean>()
  return {
    registry,
    /** Adds a Redis connection to fusion_redis_up: `up` says whether it is ready now. */
    watchRedis: (store: 'shared' | 'queue', up: () => boolean): void => { redisProbes.set(store, up) },
    redisUp: new Gauge({
      name: 'fusion_redis_up',
      help: 'Whether a configured Redis answers: 1 ready, 0 unreachable, by store (shared: client limits, upstream ' +
        'budget and idempotency keys; queue: the wait line). Absent when that Redis is not configured.',
      labelNames: ['store'] as const,
      registers: [registry],
      collect () {
        for (const [store, up] of redisProbes) this.set({ store }, up() ? 1 : 0)
      }
    }),
    httpRequests: new Counter({
      name: 'fusion_http_requests_total',
      help: 'HTTP requests answered, by route, method and status.',
      labelNames: ['route', 'method', 'status'],
      registers: [registry]
    }),
    httpDuration: new Histogram({
      name: 'fusion_http_request_duration_seconds',
      help: 'Time to answer an HTTP request.',
      labelNames: ['route', 'method', 'status'],
      buckets: seconds,
      registers: [registry]
    }),
    httpInFlight: new Gauge({
      name: 'fusion_http_requests_in_flight',
      help: 'HTTP requests being handled now.',
      registers: [registry]
    }),
    upstreamCalls: new Counter({
      name: 'fusion_upstream_calls_total',
      help: 'Upstream calls (every attempt), by provider, action, outcome and code ' +
        '(the upstream\'s ret or Error.Code, or our code when there was none).',
      labelNames: ['provider', 'action', 'outcome', 'code'],
      registers: [registry]
    }),
    upstreamDuration: new Histogram({
      name: 'fusion_upstream_call_duration_seconds',
      help: 'Duration of one upstream attempt.',
      labelNames: ['provider', 'action', 'outcome'],
      buckets: seconds,
      registers: [registry]
    }),
    upstreamRetries: new Counter({
      name: 'fusion_upstream_retries_total',
      help: 'Upstream attempts that were retries, by provider and the code that caused them.',
      labelNames: ['provider', 'code'],
      registers: [registry]
    }),
    breakerState: new Gauge({
      name: 'fusion_upstream_breaker_state',
      help: 'Upstream circuit breaker: 0 closed, 1 half-open, 2 open.',
      labelNames: ['provider'],
      registers: [registry]
    }),
    budgetWait: new Histogram({
      name: 'fusion_budget_wait_seconds',
      help: 'Time a call waited for a slot of the upstream budget.',
      buckets: [0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry]
    }),
    budgetRefusals: new Counter({
      name: 'fusion_budget_refusals_total',
      help: 'Calls refused by the upstream budget (no slot in time, or a back-off pause).',
      registers: [registry]
    }),
    budgetStaleSlots: new Counter({
      name: 'fusion_budget_stale_slots_total',
      help: 'Budget slots given up because the call could not start within UPSTREAM_BUDGET_MAX_LATE_MS of them.',
      registers: [registry]
    }),
    budgetBackOffs: new Counter({
      name: 'fusion_budget_backoffs_total',
      help: 'Pauses ordered after the upstream\'s frequency control.',
      registers: [registry]
    }),
    jobs: new Counter({
      name: 'fusion_jobs_total',
      help: 'Asynchronous jobs ended, by outcome: succeeded, canceled, or the error code.',
      labelNames: ['outcome'] as const,
      registers: [registry]
    }),
    jobWait: new Histogram({
      name: 'fusion_job_seconds',
      help: 'Time from a job\'s submission to its end.',
      buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers: [registry]
    }),
    jobEtaError: new Histogram({
      name: 'fusion_job_eta_error_seconds',
      help: 'A job\'s real wait for its turn minus the ETA it was given at submission.',
      buckets: [-60, -30, -10, -5, -2, -1, 0, 1, 2, 5, 10, 30, 60],
      registers: [registry]
    }),
    jobsInterrupted: new Counter({
      name: 'fusion_jobs_interrupted_total',
      help: 'Jobs failed with FUSION_JOB_INTERRUPTED: their replica stopped after the upstream call may have been sent.',
      registers: [registry]
    }),
    jobsRequeued: new Counter({
      name: 'fusion_jobs_requeued_total',
      help: 'Jobs put back at the head of the line before their call went out, by cause: frequency_control, breaker_open ' +
        '(this replica\'s), budget_full, line_store (the line\'s Redis failed).',
      labelNames: ['cause'] as const,
      registers: [registry]
    }),
    jobLineLength: new Gauge({
      name: 'fusion_job_line_length',
      help: 'Jobs waiting in the line (every replica\'s, with Redis).',
      registers: [registry]
    }),
    idempotency: new Counter({
      name: 'fusion_idempotency_total',
      help: 'Requests with an Idempotency-Key, by outcome: replayed, stored, not_stored, reused, in_progress.',
      labelNames: ['outcome'],
      registers: [registry]
    }),
    imageDuration: new Histogram({
      name: 'fusion_image_duration_seconds',
      help: 'Image pipeline time per photo (decode, resize, encode; for a photo refused before its job, until refused), by outcome.',
      labelNames: ['outcome'],
      buckets: seconds,
      registers: [registry]
    }),
    imageWait: new Histogram({
      name: 'fusion_image_wait_seconds',
      help: 'Time a photo waited for an image job slot and its decode memory, by outcome.',
      labelNames: ['outcome'],
      buckets: seconds,
      registers: [registry]
    }),
    imageBytesIn: new Counter({
      name: 'fusion_image_bytes_in_total',
      help: 'Bytes of photos received by the image pipeline.',
      registers: [registry]
    }),
    imageBytesOut: new Counter({
      name: 'fusion_image_bytes_out_total',
      help: 'Bytes of JPEG the image pipeline produced for the upstream.',
      registers: [registry]
    }),
    imageJobs: new Gauge({
      name: 'fusion_image_jobs',
      help: 'Image jobs running (until libvips has finished, even after a timeout answer) and photos waiting for one.',
      labelNames: ['state'],
      registers: [registry]
    }),
    imageDecodeMemory: new Gauge({
      name: 'fusion_image_decode_memory_bytes',
      help: 'Estimated decode memory held by the running image jobs (at most IMAGE_DECODE_MEMORY_BYTES).',
      registers: [registry]
    })
  }
}

export type Metrics = ReturnType<typeof createMetrics>

export const BREAKER_STATE_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const
