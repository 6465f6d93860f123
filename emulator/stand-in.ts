import Fastify, { type FastifyInstance } from 'fastify'
import { emulatorPlugin } from './plugin.js'
import { EMULATOR_ACCOUNT } from './shared/accounts.js'
import { findLegacyProject, TEMPLATES } from './shared/templates.js'

/**
 * The emulator standing in for Tencent when the service has no credentials.
 * It runs as a Fastify instance of its own on a loopback port of its own: the
 * service calls it over HTTP as it would call Tencent (the signed request
 * really crosses the wire), and the service's shutdown, which stops the
 * service's listener, cannot cut off the calls its in-flight fusions make.
 *
 * `src/server.ts` (dynamically, only without credentials) and the tests'
 * `startService` both go through `completeWithStandIn`.
 */

export type Provider = 'legacy' | 'v3'

/** A template as GET /templates lists it. */
export interface StandInTemplate {
  projectId: string
  modelId: string
  name: string
  previewUrl: string
  faces: Array<{ faceId: string, x: number, y: number, width: number, height: number }>
}

/** The emulator account's credentials, as the configured API signs with them. */
export type StandInCredentials<P extends Provider> = P extends 'legacy'
  ? { appId: string, uin: string, secretId: string, secretKey: string }
  : { secretId: string, secretKey: string }

export interface StandIn<P extends Provider = Provider> {
  /** The upstream URL for the provider: `<origin>/fuseapi/face` (legacy) or `<origin>/` (API 3.0). */
  url: string
  /** `http://127.0.0.1:<port>` */
  origin: string
  credentials: StandInCredentials<P>
  /** The legacy side's templates, with previews at this emulator's `/materials/<model>.jpg`. */
  templates: StandInTemplate[]
  close: () => Promise<void>
}

export interface StandInOptions<P extends Provider> {
  provider: P
  /** The emulator's own log level (its faults are logged at error). Default `warn`. */
  logLevel?: string
  /** Whether fault-injection material ids work (EmulatorOptions.faults). Default false. */
  faults?: boolean
}

/** Starts the emulator on `127.0.0.1`, on a free port. */
export async function startStandIn<P extends Provider> (options: StandInOptions<P>): Promise<StandIn<P>> {
  // At warn and above: its requests, logged at info, are not the service's.
  const app = Fastify({ logger: { level: options.logLevel ?? 'warn', name: 'emulator' } })
  await app.register(emulatorPlugin, { faults: options.faults === true })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { ...describe(options.provider, originOf(app)), close: async () => { await app.close() } }
}

/** The URL, credentials and templates of an emulator at `origin`. */
function describe<P extends Provider> (provider: P, origin: string): Omit<StandIn<P>, 'close'> {
  const { appId, uin, secretId, secretKey } = EMULATOR_ACCOUNT.credentials
  const credentials = (provider === 'legacy' ? { appId, uin, secretId, secretKey } : { secretId, secretKey }) as StandInCredentials<P>
  // The emulator answers API 3.0 at its root, as Tencent's endpoint does.
  const url = provider === 'legacy' ? `${origin}/fuseapi/face` : `${origin}/`
  return { url, origin, credentials, templates: legacyTemplates(origin) }
}

/** The emulator's materials that its legacy side serves, with their faces and previews. */
export function legacyTemplates (origin: string): StandInTemplate[] {
  return TEMPLATES
    .filter((template) => findLegacyProject(template.projectId)?.requiresApi3 === false && template.faces.length > 0)
    .map((template) => ({
      projectId: template.projectId,
      modelId: template.modelId,
      name: template.title,
      previewUrl: `${origin}/materials/${template.modelId}.jpg`,
      faces: template.faces.map((face) => ({ faceId: face.faceId, ...face.rect }))
    }))
}

function originOf (app: FastifyInstance): string {
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('the emulator listens on TCP')
  return `http://127.0.0.1:${address.port}`
}

/**
 * The part of the service's configuration the stand-in reads and completes:
 * upstream settings without credentials (`url` set when an emulator already
 * runs elsewhere), and the template list.
 */
export interface IncompleteConfig {
  LOG_LEVEL?: string
  upstream: { provider: Provider, mode: string, url: string | undefined, credentials: object | undefined }
  templates: { source: string, templates: readonly object[] } | undefined
}

/** The configuration once the emulator's URL and credentials fill its upstream settings. */
export type CompletedConfig<C extends IncompleteConfig> = Omit<C, 'upstream'> & {
  upstream: Exclude<C['upstream'], { credentials: undefined }>
}

/**
 * What the entry point does before building the app: a configuration whose
 * upstream has credentials is returned as it is. Without credentials, the
 * emulator is started beside the service (or, when the settings name a URL,
 * that emulator is used), its URL and account fill the upstream settings, and
 * for the legacy API without FUSION_TEMPLATES its templates become the list
 * GET /templates serves (source `emulator`). `close` stops the emulator; call
 * it after the app has closed.
 */
export async function completeWithStandIn<C extends IncompleteConfig> (
  config: C, options: { faults?: boolean } = {}
): Promise<{ config: CompletedConfig<C>, close: () => Promise<void> }> {
  const { upstream } = config
  if (upstream.credentials !== undefined) return { config: config as unknown as CompletedConfig<C>, close: async () => {} }
  const standIn = upstream.url === undefined
    ? await startStandIn({ provider: upstream.provider, logLevel: quieter(config.LOG_LEVEL), faults: options.faults })
    : { ...describe(upstream.provider, new URL(upstream.url).origin), url: upstream.url, close: async () => {} }
  const templates = config.templates ?? (upstream.provider === 'legacy' ? { source: 'emulator', templates: standIn.templates } : undefined)
  const completed = {
    ...config,
    upstream: { ...upstream, mode: 'emulator', url: standIn.url, credentials: standIn.credentials },
    templates
  }
  return { config: completed as unknown as CompletedConfig<C>, close: standIn.close }
}

/** The service's level, but no chattier than `warn`: the emulator's own requests are not the service's. */
function quieter (level: string | undefined): string {
  return level === undefined || ['trace', 'debug', 'info'].includes(level) ? 'warn' : level
}
