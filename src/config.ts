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

  // Tencent credentials: all four or none. None means the built-in emulator.
  TENCENT_APPID: Type.Optional(Type.String({ pattern: '^[0-9]{1,20}$' })),
  TENCENT_UIN: Type.Optional(Type.String({ pattern: '^[0-9]{1,20}$' })),
  TENCENT_SECRET_ID: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[!-~]+$' })),
  TENCENT_SECRET_KEY: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[!-~]+$' })),
  // No default in the schema: unset means "Tencent's endpoint" with credentials
  // and "the in-process emulator" without them (see resolveUpstream).
  TENCENT_LEGACY_URL: Type.Optional(Type.String({ pattern: '^https?://[^\\s/?#]+(/[^\\s]*)?$' })),

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

export type UpstreamSettings =
  | { mode: 'tencent', legacyUrl: string, credentials: LegacyCredentials }
  // `legacyUrl` undefined: the app mounts the emulator itself and calls it over loopback.
  | { mode: 'emulator', legacyUrl: string | undefined, credentials: LegacyCredentials }

export type Config = Omit<RawConfig, 'TENCENT_SECRET_KEY' | 'CLIENT_API_KEYS'> & {
  upstream: UpstreamSettings
  clientApiKeys: ReadonlySet<string>
  projectQps: ReadonlyMap<string, number>
  trustProxy: string[]
}

export const DEFAULT_TENCENT_LEGACY_URL = 'https://aiconsole.cloud.tencent.com/fuseapi/face'

const CREDENTIAL_VARIABLES = ['TENCENT_APPID', 'TENCENT_UIN', 'TENCENT_SECRET_ID', 'TENCENT_SECRET_KEY'] as const

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
      ? 'must be one of fatal, error, warn, info, debug, trace, silent'
      : issue.message ?? 'is invalid'
    return `${variable}: ${rule}`
  }).filter((line, index, all) => all.indexOf(line) === index && !line.includes('must be equal to constant'))
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
  if (raw.UPSTREAM_BREAKER_MIN_CALLS > raw.UPSTREAM_BREAKER_WINDOW) {
    throw new ConfigError(['UPSTREAM_BREAKER_MIN_CALLS: must be at most UPSTREAM_BREAKER_WINDOW'])
  }
  const { TENCENT_SECRET_KEY, CLIENT_API_KEYS, ...rest } = raw
  return {
    ...rest,
    upstream: resolveUpstream(raw),
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

function resolveUpstream (raw: RawConfig): UpstreamSettings {
  const present = CREDENTIAL_VARIABLES.filter((name) => raw[name] !== undefined)
  if (present.length === 0) {
    return { mode: 'emulator', legacyUrl: raw.TENCENT_LEGACY_URL, credentials: { ...EMULATOR_ACCOUNT.credentials } }
  }
  if (present.length < CREDENTIAL_VARIABLES.length) {
    const missing = CREDENTIAL_VARIABLES.filter((name) => raw[name] === undefined)
    throw new ConfigError([
      `${missing.join(', ')}: must be set, because ${present.join(', ')} ${present.length === 1 ? 'is' : 'are'} set ` +
      '(set all four Tencent credentials, or none to use the built-in emulator)'
    ])
  }
  return {
    mode: 'tencent',
    legacyUrl: raw.TENCENT_LEGACY_URL ?? DEFAULT_TENCENT_LEGACY_URL,
    credentials: {
      appId: raw.TENCENT_APPID!,
      uin: raw.TENCENT_UIN!,
      secretId: raw.TENCENT_SECRET_ID!,
      secretKey: raw.TENCENT_SECRET_KEY!
    }
  }
}
