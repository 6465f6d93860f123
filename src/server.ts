/**
 * Starts the service: reads the configuration once, starts the emulator beside
 * the service when no Tencent credentials are set, builds the app, listens,
 * and closes gracefully on SIGINT/SIGTERM. Everything else lives in app.ts.
 */
import { setFlagsFromString } from 'node:v8'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config, type LoadedConfig } from './config/load.js'

// V8 starts a full collection when its old generation, plus the external memory allocated since the last one, nears
// a limit of about twice the live heap. Every upload brings its bytes in as new external buffers (Node's socket
// reads), so with a live heap under 30 MB a full collection ran every three or four photos, each costing more CPU
// than a photo's HTTP and form parsing. Four times the live heap as headroom makes them rare (bench/throughput.ts;
// the README's performance section has the figures). A value on the command line wins (NODE_OPTIONS cannot carry it).
if (!process.execArgv.some((argument) => argument.replaceAll('_', '-').startsWith('--heap-growing-percent'))) {
  setFlagsFromString('--heap-growing-percent=300')
}

let loaded: LoadedConfig
try {
  loaded = loadConfig(process.env, { dotenv: true })
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`face-fusion-bff: ${error.message}\n`)
    process.exit(1)
  }
  throw error
}

// No credentials: the emulator answers, on a loopback listener of its own, so that closing the service's listener
// cannot cut off the calls of fusions still in flight. It is loaded only then, and closed after the app.
let config: Config
let closeStandIn = async (): Promise<void> => {}
if (loaded.upstream.credentials === undefined) {
  const { completeWithStandIn } = await import('../emulator/stand-in.js')
  // Its fault-injection ids (emulator/shared/forced.ts) would let any visitor fail fusions at will: off unless asked.
  ;({ config, close: closeStandIn } = await completeWithStandIn(loaded, { faults: process.env.EMULATOR_FAULTS === 'true' }))
} else {
  config = loaded as Config
}

const app = await buildApp(config)

// SIGTERM: stop accepting connections (a new request on a kept-alive one gets 503 while closing), let in-flight
// fusions finish within the grace period, then close the upstream pool and Redis (onClose hooks), then the emulator
// when it stands in, and exit 0. Past the grace period the process exits 1.
closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  if (err !== undefined) app.log.error({ err }, 'closing after an uncaught error')
  else app.log.info({ signal, graceMs: config.SHUTDOWN_GRACE_MS }, 'closing: finishing in-flight requests')
  await app.close()
  await closeStandIn()
  app.log.info('closed')
})

await app.listen({ port: config.PORT, host: config.HOST })

const upstream = app.upstream.client.describe()
if (upstream.mode === 'emulator') {
  app.log.warn({ upstream },
    '*** EMULATOR MODE *** No Tencent credentials are set (TENCENT_APPID, TENCENT_UIN, TENCENT_SECRET_ID, ' +
    'TENCENT_SECRET_KEY): fusions are answered by the built-in emulator, not by Tencent Cloud.')
} else if (config.upstream.provider === 'v3') {
  const { action, version } = config.upstream
  app.log.info({ upstream }, `upstream: Tencent Cloud face fusion API 3.0 (${action}, version ${version})`)
} else {
  app.log.info({ upstream }, 'upstream: Tencent Cloud legacy face fusion (fuseapi/face)')
}
