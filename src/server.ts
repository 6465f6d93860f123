/**
 * Starts the service: reads the configuration once, builds the app, listens,
 * and closes gracefully on SIGINT/SIGTERM. Everything else lives in app.ts.
 */
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'

let config: Config
try {
  config = loadConfig(process.env, { dotenv: true })
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`face-fusion-bff: ${error.message}\n`)
    process.exit(1)
  }
  throw error
}

const app = await buildApp(config)

// SIGTERM: stop accepting (new requests get 503 while closing), let in-flight
// fusions finish within the grace period, then close the upstream pool and
// Redis (onClose hooks) and exit 0. Past the grace period the process exits 1.
closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
  if (err !== undefined) app.log.error({ err }, 'closing after an uncaught error')
  else app.log.info({ signal, graceMs: config.SHUTDOWN_GRACE_MS }, 'closing: finishing in-flight requests')
  await app.close()
  app.log.info('closed')
})

await app.listen({ port: config.PORT, host: config.HOST })

const upstream = app.fusionProvider.describe()
if (upstream.mode === 'emulator') {
  app.log.warn({ upstream },
    '*** EMULATOR MODE *** No Tencent credentials are set (TENCENT_APPID, TENCENT_UIN, TENCENT_SECRET_ID, ' +
    'TENCENT_SECRET_KEY): fusions are answered by the built-in emulator, not by Tencent Cloud.')
} else {
  app.log.info({ upstream }, 'upstream: Tencent Cloud legacy face fusion')
}
