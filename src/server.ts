/**
 * Starts the service: reads the configuration once, starts the emulator beside
 * the service when no Tencent credentials are set, builds the app, listens,
 * and closes gracefully on SIGINT/SIGTERM. Everything else lives in app.ts.
 */
import { setFlagsFromString } from 'node:v8'
import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config, type LoadedConfig } from './config/load.js'
import { CREDENTIAL_VARIABLES, V3_CREDENTIAL_VARIABLES } from './config/upstream.js'

// V8 starts a full collection when its old generation, plus the external memory allocated since the last one, nears
// a limit of about twice the live heap. Every upload brings its bytes in as new external buffers (Node's socket
// reads), so with a live heap under 30 MB a full collection ran every three or four photos, each costing more CPU
// than a photo's HTTP and form parsing. Four times the live heap as headroom makes them rare (bench/throughput.ts;
// docs/performance.md has the figures). A value on the command line wins (NODE_OPTIONS cannot carry it).
if (!process.execArgv.some((argument) => argument.replaceAll('_', '-').startsWith('--heap-growing-percent'))) {
  setFlagsFromString('--heap-growing-percent=300')
}

// Every line the process writes is JSON (docs/operations.md#logs): until the app's logger exists, this one speaks.
const bootLog = pino(pino.destination({ fd: 2, sync: true }))
let log: Pick<typeof bootLog, 'warn'> = bootLog
// Node's own warnings (a listener leak, a deprecation) would be plain text on stderr: they go through the log instead.
process.removeAllListeners('warning')
process.on('warning', (warning) => { log.warn({ err: warning }, `node: ${warning.name}`) })

let config: Config
let closeStandIn = async (): Promise<void> => {}
let app: Awaited<ReturnType<typeof buildApp>>
try {
  const loaded: LoadedConfig = loadConfig(process.env, { dotenv: true })
  // No credentials: the emulator answers, on a loopback listener of its own, so that closing the service's listener
  // cannot cut off the calls of fusions still in flight. It is loaded only then, and closed after the app.
  if (loaded.upstream.credentials === undefined) {
    const { completeWithStandIn } = await import('../emulator/stand-in.js')
    // Its fault-injection ids (emulator/shared/forced.ts) would let any visitor fail fusions at will: off unless asked.
    ;({ config, close: closeStandIn } = await completeWithStandIn(loaded, { faults: process.env.EMULATOR_FAULTS === 'true' }))
  } else {
    config = loaded as Config
  }
  app = await buildApp(config)
} catch (error) {
  if (error instanceof ConfigError) {
    bootLog.fatal({ problems: error.problems }, `Invalid configuration: ${error.problems.join('; ')}`)
  } else {
    bootLog.fatal({ err: error }, 'could not start')
  }
  await closeStandIn().catch(() => {})
  process.exit(1)
}
log = app.log

// SIGTERM or SIGINT: stop accepting connections (a request arriving on an open one gets 503 FUSION_SHUTTING_DOWN), let
// in-flight requests finish within the grace period, then close the upstream pool and Redis (onClose hooks), then the
// emulator when it stands in, and exit 0. A second SIGTERM or SIGINT hurries (src/plugins/shutdown.ts): what has not
// reached the upstream is refused at once with 503 FUSION_SHUTTING_DOWN, while upstream calls already sent run to their
// end and their answers are delivered (they may be billed); then exit 0, as nothing was dropped. Past the grace period
// the process exits 1. close-with-grace keeps the grace timer and closes on an uncaught error; the two stop signals are
// handled here, because its own answer to a second signal is to exit at once, dropping the answers already paid for.
let closing = false
let stopSignal: NodeJS.Signals | undefined
const graceful = closeWithGrace({
  delay: config.SHUTDOWN_GRACE_MS,
  skip: ['SIGTERM', 'SIGINT'],
  // Whatever close-with-grace itself reports is a JSON line too.
  logger: app.log,
  onTimeout: (delay) => { app.log.error({ graceMs: delay }, 'grace period over: exiting with requests still in flight') },
  onSecondSignal: (signal) => { app.log.fatal({ signal }, `${signal} while closing: exiting now`) },
  onSecondError: (err) => { app.log.fatal({ err }, 'another uncaught error while closing: exiting now') }
}, async ({ signal, err }) => {
  closing = true
  if (err !== undefined) app.log.error({ err }, 'closing after an uncaught error')
  else app.log.info({ signal: signal ?? stopSignal, graceMs: config.SHUTDOWN_GRACE_MS }, 'closing: finishing in-flight requests')
  await app.close()
  await closeStandIn()
  app.log.info({ hurried: app.shutdown.hurried }, 'closed')
})

function onStopSignal (signal: NodeJS.Signals): void {
  if (!closing) {
    closing = true
    stopSignal = signal
    void graceful.close()
    return
  }
  const inFlight = app.shutdown.hurry()
  app.log.warn({ signal, inFlight },
    'asked again to stop: refusing what has not reached the upstream; answers already on their way are delivered')
}
process.on('SIGTERM', onStopSignal)
process.on('SIGINT', onStopSignal)

try {
  await app.listen({ port: config.PORT, host: config.HOST })
} catch (error) {
  // The usual mistakes (a port taken, a privileged port, an address not on this machine) in one line naming the
  // settings to change, rather than a stack through close-with-grace.
  const code = (error as { code?: unknown }).code
  const address = `${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${config.PORT}`
  const reason = code === 'EADDRINUSE'
    ? `${address} is already in use: stop what listens there, or set another PORT`
    : code === 'EACCES'
      ? `${address} may not be bound by this user (ports under 1024 need privileges): set PORT to 1024 or above`
      : code === 'EADDRNOTAVAIL'
        ? `${address} is not an address of this machine: set HOST to one of its addresses, or 0.0.0.0`
        : `${address} could not be listened on (${String(code ?? (error as Error).message)})`
  bootLog.fatal({ code, host: config.HOST, port: config.PORT }, `Cannot listen on PORT=${config.PORT} HOST=${config.HOST}: ${reason}`)
  graceful.uninstall()
  await app.close().catch(() => {})
  await closeStandIn().catch(() => {})
  process.exit(1)
}

const upstream = app.upstream.client.describe()
if (upstream.mode === 'emulator') {
  // Only the variables the configured API reads: API 3.0 has no appid or uin.
  const wanted = config.upstream.provider === 'v3'
    ? `${V3_CREDENTIAL_VARIABLES.join(', ')} for API 3.0`
    : `${CREDENTIAL_VARIABLES.join(', ')} for the legacy API`
  app.log.warn({ upstream },
    `*** EMULATOR MODE *** No Tencent credentials are set (${wanted}): fusions are answered by the built-in emulator, ` +
    'not by Tencent Cloud.')
} else if (config.upstream.provider === 'v3') {
  const { action, version } = config.upstream
  app.log.info({ upstream }, `upstream: Tencent Cloud face fusion API 3.0 (${action}, version ${version})`)
} else {
  app.log.info({ upstream }, 'upstream: Tencent Cloud legacy face fusion (fuseapi/face)')
}
