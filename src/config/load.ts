import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { parseEnv } from 'node:util'
import { envSchema } from 'env-schema'
import { apiImageLimits } from '../upstream/image-limits.js'
import { apiName, type TemplateInfo } from '../upstream/provider.js'
import type { ResolvedUpstream, UpstreamSettings } from '../upstream/settings.js'
import { ConfigError } from './error.js'
import { ConfigSchema, type RawConfig } from './schema.js'
import { resolveUpstream } from './upstream.js'

export { ConfigError }

/**
 * Reading the configuration: the environment over a `.env` file, validated
 * against the schema (schema.ts), with messages that name the variable, and
 * the values derived from it. The upstream's settings are resolved in
 * upstream.ts.
 */

/** What GET /templates lists when the upstream is not asked: FUSION_TEMPLATES, or the emulator's. */
export interface TemplateList { source: 'config' | 'emulator', templates: readonly TemplateInfo[] }

/**
 * The service's settings, validated and derived. `upstream` is complete
 * (see ResolvedUpstream): buildApp refuses settings without credentials.
 */
export type Config<Upstream extends ResolvedUpstream = UpstreamSettings> =
  Omit<RawConfig, 'TENCENT_SECRET_KEY' | 'TENCENT_SESSION_TOKEN' | 'CLIENT_API_KEYS' | 'FUSION_TEMPLATES'> & {
    upstream: Upstream
    /** Whether GET / serves the demo page (DEMO_PAGE, or its default). */
    demoPage: boolean
    /** FUSION_TEMPLATES, parsed (source `config`); undefined when unset. */
    templates: TemplateList | undefined
    clientApiKeys: ReadonlySet<string>
    projectQps: ReadonlyMap<string, number>
    trustProxy: string[]
  }

/** The settings one plugin reads: all buildApp hands it, so what a plugin depends on is plain to see. */
export type ConfigSlice<Keys extends keyof Config> = Pick<Config, Keys>

export function sliceOf<Keys extends keyof Config> (config: Config, keys: readonly Keys[]): ConfigSlice<Keys> {
  return Object.fromEntries(keys.map((key) => [key, config[key]])) as ConfigSlice<Keys>
}

/** What loadConfig returns: without credentials, the upstream settings are still to be completed. */
export type LoadedConfig = Config<ResolvedUpstream>

interface AjvIssue { instancePath: string, keyword?: string, message?: string, params?: Record<string, unknown> }

/**
 * Turns Ajv's findings into "VARIABLE: rule" lines. Ajv never prints the
 * offending value unless asked, so a bad secret cannot leak through here.
 */
function describeIssues (issues: AjvIssue[]): string[] {
  return issues.map((issue) => {
    const variable = issue.instancePath.replace(/^\//, '') ||
      String(issue.params?.missingProperty ?? issue.params?.additionalProperty ?? 'environment')
    // Every switch and choice lists what it accepts: Ajv's "must be boolean" does not say how to spell one.
    const rule = issue.keyword === 'anyOf' || issue.message === 'must match a schema in anyOf'
      ? `must be one of ${allowedValues(variable).join(', ')}`
      : issue.keyword === 'type' && issue.params?.type === 'boolean'
        ? 'must be true or false'
        : issue.keyword === 'enum' && Array.isArray(issue.params?.allowedValues)
          ? `must be one of ${issue.params.allowedValues.map(String).join(', ')}`
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
export function loadConfig (env: Record<string, string | undefined> = process.env, options: { dotenv?: boolean } = {}): LoadedConfig {
  let raw: RawConfig
  // Empty strings mean "unset": compose files and shells often export VAR= .
  const present = (entries: Record<string, string | undefined>): Record<string, string> =>
    Object.fromEntries(Object.entries(entries).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ''))
  // The environment wins over the .env file.
  const data = { ...present(options.dotenv === true ? readDotenv() : {}), ...present(env) }
  // Judged beside the schema, so that one refusal lists every problem.
  const hostProblems = data.HOST !== undefined ? hostProblemsOf(data.HOST) : []
  try {
    // `env: false`: validate exactly `data`; env-schema would otherwise merge the raw process.env back in.
    raw = envSchema<RawConfig>({ schema: ConfigSchema, data, env: false, dotenv: false })
  } catch (error) {
    const issues = (error as { errors?: AjvIssue[] }).errors
    throw new ConfigError([...(issues ? describeIssues(issues) : ['the environment could not be read']), ...hostProblems])
  }
  if (hostProblems.length > 0) throw new ConfigError(hostProblems)
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
  const apiMaxSide = apiImageLimits(upstream).maxSide
  if (raw.IMAGE_MAX_SIDE > apiMaxSide) {
    throw new ConfigError([`IMAGE_MAX_SIDE: ${raw.IMAGE_MAX_SIDE} px is more than ${apiName(upstream)} accepts; set at most ${apiMaxSide}`])
  }
  if (upstream.credentials === undefined && raw.NODE_ENV === 'production' && !raw.EMULATOR_IN_PRODUCTION) {
    throw new ConfigError(['NODE_ENV=production without Tencent credentials: the service would answer with the emulator\'s fake ' +
      'fusions. Set TENCENT_SECRET_ID and TENCENT_SECRET_KEY (with FUSION_PROVIDER=v3 for API 3.0; the legacy API also needs ' +
      'TENCENT_APPID and TENCENT_UIN), or set EMULATOR_IN_PRODUCTION=true to serve the emulator on purpose (a staging stand-in).'])
  }
  return {
    ...rest,
    upstream,
    templates: parseTemplates(FUSION_TEMPLATES),
    demoPage: raw.DEMO_PAGE ?? (raw.NODE_ENV !== 'production' || upstream.mode === 'emulator'),
    clientApiKeys: new Set(CLIENT_API_KEYS?.split(',') ?? []),
    projectQps: parseProjectQps(raw.UPSTREAM_PROJECT_QPS),
    trustProxy: parseTrustProxy(raw.TRUST_PROXY)
  }
}

/**
 * HOST is what the listener binds: a name or an address, nothing more. `localhost:3000` or a URL would only fail later,
 * at listen, as a DNS error (ENOTFOUND) that names neither HOST nor PORT.
 */
function hostProblemsOf (host: string): string[] {
  // An IPv6 address is all colons; anything else with one carries a port or a scheme.
  if (isIP(host) !== 0 || !/[:/[\]@\s]/.test(host)) return []
  const port = /:(\d{1,5})\/?$/.exec(host)?.[1]
  return [`HOST: "${host.slice(0, 80)}" is not a host name or address: HOST takes one without a scheme or a port ` +
    `(0.0.0.0, 127.0.0.1, ::, localhost); the port goes in PORT${port !== undefined ? ` (PORT=${port})` : ''}`]
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

function parseTemplates (value: string | undefined): TemplateList | undefined {
  if (value === undefined) return undefined
  return { source: 'config', templates: value.split(',').map((entry) => {
    const [ids = '', name] = entry.split('=')
    const [projectId = '', modelId = ''] = ids.split(':')
    return name === undefined ? { projectId, modelId } : { projectId, modelId, name: name.trim() }
  }) }
}

