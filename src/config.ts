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

  // Upstream client.
  UPSTREAM_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 15_000 }),
  UPSTREAM_CONNECT_TIMEOUT_MS: Type.Integer({ minimum: 50, maximum: 60_000, default: 3_000 }),
  UPSTREAM_CONNECTIONS: Type.Integer({ minimum: 1, maximum: 1024, default: 32 }),
  UPSTREAM_MAX_RESPONSE_BYTES: Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024, default: 16 * 1024 * 1024 }),
  LEGACY_SIGNATURE_TTL_SECONDS: Type.Integer({ minimum: 30, maximum: 7_776_000, default: 300 }),

  // Intake.
  MAX_UPLOAD_BYTES: Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024, default: 10 * 1024 * 1024 }),
  IMAGE_MAX_INPUT_PIXELS: Type.Integer({ minimum: 10_000, maximum: 268_402_689, default: 50_000_000 }),
  // 0: one image job per CPU the process may use.
  IMAGE_CONCURRENCY: Type.Integer({ minimum: 0, maximum: 64, default: 0 }),
  IMAGE_QUEUE_LIMIT: Type.Integer({ minimum: 0, maximum: 10_000, default: 16 }),
  IMAGE_TIMEOUT_SECONDS: Type.Integer({ minimum: 1, maximum: 300, default: 10 })
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

export type Config = Omit<RawConfig, 'TENCENT_SECRET_KEY'> & { upstream: UpstreamSettings }

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
  const data = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''))
  try {
    raw = envSchema<RawConfig>({ schema: ConfigSchema, data, dotenv: options.dotenv ?? false })
  } catch (error) {
    const issues = (error as { errors?: AjvIssue[] }).errors
    throw new ConfigError(issues ? describeIssues(issues) : ['the environment could not be read'])
  }
  const { TENCENT_SECRET_KEY, ...rest } = raw
  return { ...rest, upstream: resolveUpstream(raw) }
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
