import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { parseEnv } from 'node:util'
import { envSchema } from 'env-schema'
import { Type, type Static } from '@sinclair/typebox'
import { EMULATOR_ACCOUNT } from './emulator/accounts.js'

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
  // and "the in-process emulator" without them (see resolveUpstream).
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
  FUSION_TEMPLATES: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}:[A-Za-z0-9_-]{1,64}(=[^,:=]{1,80})?(,[A-Za-z0-9_-]{1,64}:[A-Za-z0-9_-]{1,64}(=[^,:=]{1,80})?)*$' })),
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
  IMAGE_MAX_INPUT_PIXELS: Type.Integer({ minimum: 10_000, maximum: 268_402_689, default: 50_000_000 }),
  // 0: one image job per CPU the process may use.
  IMAGE_CONCURRENCY: Type.Integer({ minimum: 0, maximum: 64, default: 0 }),
  IMAGE_QUEUE_LIMIT: Type.Integer({ minimum: 0, maximum: 10_000, default: 16 }),
  IMAGE_TIMEOUT_SECONDS: Type.Integer({ minimum: 1, maximum: 300, default: 10 }),

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
  UPSTREAM_BACKOFF_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 2_000 }),
  // Per-replica share of the budget while Redis is unreachable; 0: a quarter of UPSTREAM_QPS.
  UPSTREAM_FALLBACK_QPS: Type.Number({ minimum: 0, maximum: 100_000, default: 0 })
})

export type RawConfig = Static<typeof ConfigSchema>

export interface LegacyCredentials {
  appId: string
  uin: string
  secretId: string
  secretKey: string
}

export interface V3Credentials {
  secretId: string
  secretKey: string
  /** Temporary credentials only. */
  sessionToken?: string
}

export type V3Action = 'FuseFace' | 'FaceFusion'
export type V3Version = '2022-09-27' | '2018-12-01'

/**
 * Where and how the upstream is called. `mode` says whether it is Tencent or the
 * emulator; `url` undefined means the app mounts the emulator itself and calls it
 * over loopback.
 */
export type UpstreamSettings =
  | { provider: 'legacy', mode: 'tencent' | 'emulator', url: string | undefined, credentials: LegacyCredentials }
  | {
    provider: 'v3'
    mode: 'tencent' | 'emulator'
    url: string | undefined
    credentials: V3Credentials
    region: string
    action: V3Action
    version: V3Version
  }

export interface DeclaredTemplate { projectId: string, modelId: string, name?: string }

export type Config = Omit<RawConfig, 'TENCENT_SECRET_KEY' | 'TENCENT_SESSION_TOKEN' | 'CLIENT_API_KEYS' | 'FUSION_TEMPLATES'> & {
  upstream: UpstreamSettings
  /** Whether GET / serves the demo page (DEMO_PAGE, or its default). */
  demoPage: boolean
  /** FUSION_TEMPLATES, parsed; undefined when unset. */
  declaredTemplates: readonly DeclaredTemplate[] | undefined
  clientApiKeys: ReadonlySet<string>
  projectQps: ReadonlyMap<string, number>
  trustProxy: string[]
}

export const DEFAULT_TENCENT_LEGACY_URL = 'https://aiconsole.cloud.tencent.com/fuseapi/face'
export const DEFAULT_TENCENT_V3_URL = 'https://facefusion.tencentcloudapi.com'

const CREDENTIAL_VARIABLES = ['TENCENT_APPID', 'TENCENT_UIN', 'TENCENT_SECRET_ID', 'TENCENT_SECRET_KEY'] as const
const V3_CREDENTIAL_VARIABLES = ['TENCENT_SECRET_ID', 'TENCENT_SECRET_KEY'] as const

export class ConfigError extends Error {
  constructor (readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

interface AjvIssue { instancePath: string, keyword?: string, message?: string, params?: Record<string, unknown> }

/**
 * Turns Ajv's findings into "VARIABLE: rule" lines. Ajv never prints the
 * offending value unless asked, so a bad secret cannot leak through here.
 */
function describeIssues (issues: AjvIssue[]): string[] {
  return issues.map((issue) => {
    const variable = issue.instancePath.replace(/^\//, '') ||
      String(issue.params?.missingProperty ?? issue.params?.additionalProperty ?? 'environment')
    const rule = issue.keyword === 'anyOf' || issue.message === 'must match a schema in anyOf'
      ? `must be one of ${allowedValues(variable).join(', ')}`
      : issue.message ?? 'is invalid'
    return `${variable}: ${rule}`
  }).filter((line, index, all) => all.indexOf(line) === index && !line.includes('must be equal to constant'))
}

/** The literals a union-typed variable accepts, for the error message. */
function allowedValues (variable: string): string[] {
  const property = (ConfigSchema.properties as Record<string, { anyOf?: Array<{ const?: unknown }> }>)[variable]
  return (property?.anyOf ?? []).map((option) => String(option.const))
}

/**
 * Reads and validates the environment once. `env` defaults to `process.env`
 * merged over a `.env` file in the working directory, when one exists.
 */
export function loadConfig (env: Record<string, string | undefined> = process.env, options: { dotenv?: boolean } = {}): Config {
  let raw: RawConfig
  // Empty strings mean "unset": compose files and shells often export VAR= .
  const present = (entries: Record<string, string | undefined>): Record<string, string> =>
    Object.fromEntries(Object.entries(entries).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ''))
  // The environment wins over the .env file.
  const data = { ...present(options.dotenv === true ? readDotenv() : {}), ...present(env) }
  try {
    // `env: false`: validate exactly `data`; env-schema would otherwise merge the raw process.env back in.
    raw = envSchema<RawConfig>({ schema: ConfigSchema, data, env: false, dotenv: false })
  } catch (error) {
    const issues = (error as { errors?: AjvIssue[] }).errors
    throw new ConfigError(issues ? describeIssues(issues) : ['the environment could not be read'])
  }
  for (const variable of ['TENCENT_LEGACY_URL', 'TENCENT_V3_URL'] as const) {
    const value = raw[variable]
    // The pattern lets through what URL cannot parse (a port over 65535, a broken IPv6 literal).
    if (value !== undefined && !URL.canParse(value)) throw new ConfigError([`${variable}: must be a valid http:// or https:// URL`])
  }
  if (raw.UPSTREAM_BREAKER_MIN_CALLS > raw.UPSTREAM_BREAKER_WINDOW) {
    throw new ConfigError(['UPSTREAM_BREAKER_MIN_CALLS: must be at most UPSTREAM_BREAKER_WINDOW'])
  }
  const { TENCENT_SECRET_KEY, TENCENT_SESSION_TOKEN, CLIENT_API_KEYS, FUSION_TEMPLATES, ...rest } = raw
  const upstream = resolveUpstream(raw)
  return {
    ...rest,
    upstream,
    declaredTemplates: parseTemplates(FUSION_TEMPLATES),
    demoPage: raw.DEMO_PAGE ?? (raw.NODE_ENV !== 'production' || upstream.mode === 'emulator'),
    clientApiKeys: new Set(CLIENT_API_KEYS?.split(',') ?? []),
    projectQps: parseProjectQps(raw.UPSTREAM_PROJECT_QPS),
    trustProxy: parseTrustProxy(raw.TRUST_PROXY)
  }
}

/** Addresses and CIDRs only: Fastify 5.12 disabled hop counts, which let direct clients spoof X-Forwarded-For. */
function parseTrustProxy (value: string | undefined): string[] {
  const entries = (value ?? '').split(',').map((entry) => entry.trim()).filter(Boolean)
  for (const entry of entries) {
    if (['loopback', 'linklocal', 'uniquelocal'].includes(entry)) continue
    const [address = '', prefix] = entry.split('/')
    const family = isIP(address)
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 6 ? 128 : 32))
    if (family === 0 || !prefixOk) {
      throw new ConfigError([`TRUST_PROXY: "${entry.slice(0, 60)}" is not an IP address, a CIDR, or loopback/linklocal/uniquelocal`])
    }
  }
  return entries
}

function parseProjectQps (value: string | undefined): Map<string, number> {
  const quotas = new Map<string, number>()
  for (const pair of value?.split(',') ?? []) {
    const [projectId, qps] = pair.split('=') as [string, string]
    const parsed = Number(qps)
    if (!(parsed > 0)) throw new ConfigError([`UPSTREAM_PROJECT_QPS: the quota of ${projectId} must be a number above 0`])
    quotas.set(projectId, parsed)
  }
  return quotas
}

function readDotenv (): Record<string, string> {
  try {
    return parseEnv(readFileSync('.env', 'utf8')) as Record<string, string>
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return {}
    throw new ConfigError(['.env: could not be read'])
  }
}

function parseTemplates (value: string | undefined): DeclaredTemplate[] | undefined {
  if (value === undefined) return undefined
  return value.split(',').map((entry) => {
    const [ids = '', name] = entry.split('=')
    const [projectId = '', modelId = ''] = ids.split(':')
    return name === undefined ? { projectId, modelId } : { projectId, modelId, name: name.trim() }
  })
}

function resolveUpstream (raw: RawConfig): UpstreamSettings {
  // Unset: whatever the other settings name. Legacy-only settings (appid, uin, its URL) keep legacy; API 3.0-only
  // ones (its URL, a session token), or a SecretId without appid and uin, mean API 3.0.
  const legacyOnly = raw.TENCENT_APPID !== undefined || raw.TENCENT_UIN !== undefined || raw.TENCENT_LEGACY_URL !== undefined
  const v3Only = raw.TENCENT_V3_URL !== undefined || raw.TENCENT_SESSION_TOKEN !== undefined || raw.TENCENT_SECRET_ID !== undefined
  const provider = raw.FUSION_PROVIDER ?? (!legacyOnly && v3Only ? 'v3' : 'legacy')
  return provider === 'v3' ? resolveV3(raw) : resolveLegacy(raw)
}

function resolveLegacy (raw: RawConfig): UpstreamSettings {
  if (raw.TENCENT_SESSION_TOKEN !== undefined) {
    throw new ConfigError(['TENCENT_SESSION_TOKEN: temporary credentials work with API 3.0 only (FUSION_PROVIDER=v3)'])
  }
  const present = CREDENTIAL_VARIABLES.filter((name) => raw[name] !== undefined)
  if (present.length === 0) {
    return { provider: 'legacy', mode: 'emulator', url: raw.TENCENT_LEGACY_URL, credentials: { ...EMULATOR_ACCOUNT.credentials } }
  }
  if (present.length < CREDENTIAL_VARIABLES.length) {
    const missing = CREDENTIAL_VARIABLES.filter((name) => raw[name] === undefined)
    throw new ConfigError([
      `${missing.join(', ')}: must be set, because ${present.join(', ')} ${present.length === 1 ? 'is' : 'are'} set ` +
      '(set all four Tencent credentials for the legacy API, only TENCENT_SECRET_ID and TENCENT_SECRET_KEY with ' +
      'FUSION_PROVIDER=v3, or none to use the built-in emulator)'
    ])
  }
  return {
    provider: 'legacy',
    mode: 'tencent',
    url: raw.TENCENT_LEGACY_URL ?? DEFAULT_TENCENT_LEGACY_URL,
    credentials: {
      appId: raw.TENCENT_APPID!,
      uin: raw.TENCENT_UIN!,
      secretId: raw.TENCENT_SECRET_ID!,
      secretKey: raw.TENCENT_SECRET_KEY!
    }
  }
}

function resolveV3 (raw: RawConfig): UpstreamSettings {
  const action = raw.FUSION_V3_ACTION
  const version = raw.FUSION_V3_VERSION ?? (action === 'FaceFusion' ? '2018-12-01' : '2022-09-27')
  if (action === 'FaceFusion' && version !== '2018-12-01') {
    throw new ConfigError(['FUSION_V3_VERSION: FaceFusion exists only in version 2018-12-01'])
  }
  const common = { provider: 'v3' as const, region: raw.TENCENT_REGION, action, version }
  const present = V3_CREDENTIAL_VARIABLES.filter((name) => raw[name] !== undefined)
  if (present.length === 0) {
    if (raw.TENCENT_SESSION_TOKEN !== undefined) {
      throw new ConfigError(['TENCENT_SECRET_ID, TENCENT_SECRET_KEY: must be set, because TENCENT_SESSION_TOKEN is set'])
    }
    const { secretId, secretKey } = EMULATOR_ACCOUNT.credentials
    return { ...common, mode: 'emulator', url: raw.TENCENT_V3_URL, credentials: { secretId, secretKey } }
  }
  if (present.length < V3_CREDENTIAL_VARIABLES.length) {
    const missing = V3_CREDENTIAL_VARIABLES.filter((name) => raw[name] === undefined)
    throw new ConfigError([`${missing.join(', ')}: must be set, because ${present.join(', ')} is set (API 3.0 signs with both)`])
  }
  return {
    ...common,
    mode: 'tencent',
    url: raw.TENCENT_V3_URL ?? DEFAULT_TENCENT_V3_URL,
    credentials: {
      secretId: raw.TENCENT_SECRET_ID!,
      secretKey: raw.TENCENT_SECRET_KEY!,
      ...(raw.TENCENT_SESSION_TOKEN !== undefined ? { sessionToken: raw.TENCENT_SESSION_TOKEN } : {})
    }
  }
}
