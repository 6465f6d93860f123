import { Type, type Static } from '@sinclair/typebox'

/**
 * Every setting the service reads, as one schema: the single source of truth for
 * validation, defaults and the TypeScript type. `.env.example` and
 * `docs/configuration.md` describe the same variables for people.
 */
export const ConfigSchema = Type.Object({
  PORT: Type.Integer({ minimum: 1, maximum: 65535, default: 3000 }),
  HOST: Type.String({ minLength: 1, default: '0.0.0.0' }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { default: 'info' }
  ),

  // Which upstream API: `legacy` (fuseapi/face, activities created before December 2018) or `v3` (API 3.0).
  // Unset: legacy when TENCENT_APPID, TENCENT_UIN or TENCENT_LEGACY_URL is set, or nothing is; v3 when only API 3.0
  // settings are (the SecretId and SecretKey, TENCENT_V3_URL, TENCENT_SESSION_TOKEN).
  FUSION_PROVIDER: Type.Optional(Type.Union([Type.Literal('legacy'), Type.Literal('v3')])),

  // Tencent credentials. legacy: all four or none; v3: the SecretId and SecretKey (appid and uin are not part of
  // its protocol). None means the built-in emulator.
  TENCENT_APPID: Type.Optional(Type.String({ pattern: '^[0-9]{1,20}$' })),
  TENCENT_UIN: Type.Optional(Type.String({ pattern: '^[0-9]{1,20}$' })),
  TENCENT_SECRET_ID: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[!-~]+$' })),
  TENCENT_SECRET_KEY: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[!-~]+$' })),
  // No default in the schema: unset means "Tencent's endpoint" with credentials
  // and "the emulator started beside the service" without them (see upstream.ts).
  TENCENT_LEGACY_URL: Type.Optional(Type.String({ pattern: '^https?://[^\\s/?#]+(/[^\\s]*)?$' })),
  // API 3.0 (FUSION_PROVIDER=v3). Temporary credentials add the session token, sent as X-TC-Token.
  TENCENT_V3_URL: Type.Optional(Type.String({ pattern: '^https?://[^\\s/?#]+(/[^\\s?#]*)?$' })),
  TENCENT_SESSION_TOKEN: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, pattern: '^[!-~]+$' })),
  TENCENT_REGION: Type.String({ pattern: '^[a-z]{2,4}(-[a-z]+)+(-[0-9]{1,2})?$', default: 'ap-guangzhou' }),
  FUSION_V3_ACTION: Type.Union([Type.Literal('FuseFace'), Type.Literal('FaceFusion')], { default: 'FuseFace' }),
  // Unset: 2022-09-27 for FuseFace, 2018-12-01 for FaceFusion (the only version that has it).
  FUSION_V3_VERSION: Type.Optional(Type.Union([Type.Literal('2022-09-27'), Type.Literal('2018-12-01')])),

  // What GET /templates lists: "project_id:model_id=Name,..." (the name is optional). Unset: v3 asks the
  // upstream (DescribeMaterialList); legacy lists the emulator's templates, or nothing with real credentials.
  FUSION_TEMPLATES: Type.Optional(Type.String({
    pattern: '^[A-Za-z0-9_-]{1,64}:[A-Za-z0-9_-]{1,64}(=[^,:=]{1,80})?(,[A-Za-z0-9_-]{1,64}:[A-Za-z0-9_-]{1,64}(=[^,:=]{1,80})?)*$'
  })),
  // How long an activity's material list from the upstream is reused.
  TEMPLATES_CACHE_SECONDS: Type.Integer({ minimum: 0, maximum: 86_400, default: 60 }),

  // Idempotency-Key: how long a reply is kept (never past its result URL's lifetime), and the in-memory store's size
  // (used without Redis, and while Redis is unreachable).
  IDEMPOTENCY_TTL_SECONDS: Type.Integer({ minimum: 60, maximum: 604_800, default: 86_400 }),
  IDEMPOTENCY_MEMORY_BYTES: Type.Integer({ minimum: 1_048_576, maximum: 4_294_967_296, default: 67_108_864 }),
  // Larger answers (base64 or image bytes of big results) are not kept: Redis holds every replica's counters too.
  IDEMPOTENCY_MAX_REPLY_BYTES: Type.Integer({ minimum: 1_024, maximum: 67_108_864, default: 2_097_152 }),

  // The demo page at GET /. Unset: on with the emulator or outside NODE_ENV=production, off otherwise.
  DEMO_PAGE: Type.Optional(Type.Boolean()),
  NODE_ENV: Type.Optional(Type.String()),
  // With NODE_ENV=production and no credentials the service refuses to start, unless this says the stand-in
  // (fake fusions from the emulator) is wanted on purpose, as for a staging environment.
  EMULATOR_IN_PRODUCTION: Type.Boolean({ default: false }),

  // One deadline per request: intake, waiting for the budget and the upstream call together.
  REQUEST_DEADLINE_MS: Type.Integer({ minimum: 1_000, maximum: 300_000, default: 30_000 }),

  // Upstream client.
  UPSTREAM_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 15_000 }),
  UPSTREAM_CONNECT_TIMEOUT_MS: Type.Integer({ minimum: 50, maximum: 60_000, default: 3_000 }),
  UPSTREAM_CONNECTIONS: Type.Integer({ minimum: 1, maximum: 1024, default: 32 }),
  UPSTREAM_MAX_RESPONSE_BYTES: Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024, default: 16 * 1024 * 1024 }),
  // Retries of safe failures only (see src/upstream/retrying.ts).
  UPSTREAM_RETRIES: Type.Integer({ minimum: 0, maximum: 2, default: 1 }),
  UPSTREAM_RETRY_DELAY_MS: Type.Integer({ minimum: 0, maximum: 10_000, default: 100 }),
  // Circuit breaker around the upstream client.
  UPSTREAM_BREAKER_FAILURE_RATIO: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1, default: 0.5 }),
  UPSTREAM_BREAKER_MIN_CALLS: Type.Integer({ minimum: 1, maximum: 10_000, default: 10 }),
  UPSTREAM_BREAKER_WINDOW: Type.Integer({ minimum: 1, maximum: 10_000, default: 20 }),
  UPSTREAM_BREAKER_OPEN_MS: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
  UPSTREAM_BREAKER_HALF_OPEN_SUCCESSES: Type.Integer({ minimum: 1, maximum: 100, default: 3 }),
  LEGACY_SIGNATURE_TTL_SECONDS: Type.Integer({ minimum: 30, maximum: 7_776_000, default: 300 }),

  // Intake.
  MAX_UPLOAD_BYTES: Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024, default: 10 * 1024 * 1024 }),
  // Longest side sent upstream, at most the configured API's (legacy and FaceFusion 1080, FuseFace 2022 4095): the
  // materials are at most 1080 × 1080 and the fused picture takes the material's size (docs/performance.md).
  IMAGE_MAX_SIDE: Type.Integer({ minimum: 256, maximum: 4095, default: 1080 }),
  IMAGE_MAX_INPUT_PIXELS: Type.Integer({ minimum: 10_000, maximum: 268_402_689, default: 50_000_000 }),
  // 0: as many image jobs as CPUs the process may use, plus one (at most UV_THREADPOOL_SIZE - 1; src/images/pipeline.ts).
  IMAGE_CONCURRENCY: Type.Integer({ minimum: 0, maximum: 64, default: 0 }),
  IMAGE_QUEUE_LIMIT: Type.Integer({ minimum: 0, maximum: 10_000, default: 16 }),
  IMAGE_TIMEOUT_SECONDS: Type.Integer({ minimum: 1, maximum: 300, default: 10 }),
  // A client's fair share: image places one client (API key, else address) may hold at once; 0: a quarter of them.
  IMAGE_PLACES_PER_CLIENT: Type.Integer({ minimum: 0, maximum: 10_000, default: 0 }),
  // Slow senders: after the grace, an upload must have averaged this rate or it is cut off with 408 (0: no minimum).
  UPLOAD_MIN_BYTES_PER_SECOND: Type.Integer({ minimum: 0, maximum: 1_073_741_824, default: 8_192 }),
  UPLOAD_RATE_GRACE_MS: Type.Integer({ minimum: 1_000, maximum: 300_000, default: 5_000 }),
  // Estimated decode memory of all image jobs at once (src/images/decode-cost.ts); a photo over it alone is refused.
  IMAGE_DECODE_MEMORY_BYTES: Type.Integer({ minimum: 67_108_864, maximum: 68_719_476_736, default: 1_073_741_824 }),
  // Scans a JPEG may have, counted from its markers before decoding (encoders write 1 to 18).
  IMAGE_MAX_JPEG_SCANS: Type.Integer({ minimum: 1, maximum: 1_000, default: 100 }),

  // /readyz answers 503 while Redis is unreachable (default: ready, degraded; the replica still serves safely).
  READYZ_REQUIRES_REDIS: Type.Boolean({ default: false }),

  // Metrics: 0 serves /metrics on PORT; another port keeps it off the public listener.
  METRICS_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 0 }),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16, maxLength: 256, pattern: '^[!-~]+$' })),

  // Shutdown: how long in-flight requests may take to finish after SIGTERM.
  SHUTDOWN_GRACE_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 25_000 }),

  // Load shedding (@fastify/under-pressure); 0 turns a check off.
  PRESSURE_MAX_EVENT_LOOP_DELAY_MS: Type.Integer({ minimum: 0, maximum: 60_000, default: 1_000 }),
  PRESSURE_MAX_RSS_BYTES: Type.Integer({ minimum: 0, default: 0 }),
  PRESSURE_MAX_HEAP_USED_BYTES: Type.Integer({ minimum: 0, default: 0 }),
  PRESSURE_SAMPLE_INTERVAL_MS: Type.Integer({ minimum: 10, maximum: 60_000, default: 1_000 }),

  // Traffic control.
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  // Separates deployments (staging, production) that share one Redis.
  REDIS_KEY_PREFIX: Type.String({ pattern: '^[A-Za-z0-9:_.-]{1,64}$', default: 'face-fusion-bff:' }),

  // The wait line of asynchronous jobs (Prefer: respond-async). Its Redis must not evict keys (noeviction), unlike the
  // one for counters and stored answers: unset, REDIS_URL; neither set, a line in this process's memory.
  QUEUE_REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  QUEUE_MAX_JOBS: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000 }),
  QUEUE_MAX_WAIT_SECONDS: Type.Integer({ minimum: 1, maximum: 86_400, default: 600 }),
  QUEUE_MAX_JOBS_PER_CLIENT: Type.Integer({ minimum: 1, maximum: 100_000, default: 5 }),
  QUEUE_RESULT_TTL_SECONDS: Type.Integer({ minimum: 10, maximum: 86_400, default: 3_600 }),
  // A replica that dies holding a job gives it up after this; another replica then takes it.
  QUEUE_LOCK_SECONDS: Type.Integer({ minimum: 1, maximum: 600, default: 30 }),
  // Jobs each replica sends upstream at once (they wait for the shared budget, not the CPU).
  QUEUE_WORKERS: Type.Integer({ minimum: 1, maximum: 256, default: 16 }),
  // The longest Prefer: wait=N honoured, in seconds.
  QUEUE_PREFER_WAIT_MAX_SECONDS: Type.Integer({ minimum: 0, maximum: 300, default: 60 }),
  // Addresses or CIDRs of the proxies in front (comma-separated); empty trusts none.
  TRUST_PROXY: Type.Optional(Type.String({ pattern: '^[0-9A-Za-z.:/, ]+$' })),
  RATE_LIMIT_MAX: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 60 }),
  RATE_LIMIT_WINDOW_MS: Type.Integer({ minimum: 100, maximum: 86_400_000, default: 60_000 }),
  CLIENT_API_KEYS: Type.Optional(Type.String({ pattern: '^[!-~]+(,[!-~]+)*$' })),
  RATE_LIMIT_API_KEY_MAX: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 600 }),
  UPSTREAM_QPS: Type.Number({ exclusiveMinimum: 0, maximum: 100_000, default: 50 }),
  // Lower quotas of single activities, "project_id=qps,project_id=qps".
  UPSTREAM_PROJECT_QPS: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]+=[0-9.]+(,[A-Za-z0-9_-]+=[0-9.]+)*$' })),
  UPSTREAM_BUDGET_WAIT_MS: Type.Integer({ minimum: 0, maximum: 60_000, default: 1_000 }),
  // A call not sent within this long after its budget slot takes a new slot: arrivals stay spaced within this much.
  UPSTREAM_BUDGET_MAX_LATE_MS: Type.Integer({ minimum: 1, maximum: 10_000, default: 50 }),
  UPSTREAM_BACKOFF_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 2_000 }),
  // Per-replica share of the budget while Redis is unreachable; 0: a quarter of UPSTREAM_QPS.
  UPSTREAM_FALLBACK_QPS: Type.Number({ minimum: 0, maximum: 100_000, default: 0 })
})

export type RawConfig = Static<typeof ConfigSchema>
