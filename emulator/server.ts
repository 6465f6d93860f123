/**
 * Runs the emulator on its own (`npm run emulator`), for pointing a service
 * elsewhere at it: the legacy endpoint with
 * TENCENT_LEGACY_URL=http://127.0.0.1:8090/fuseapi/face, API 3.0 (POST /,
 * TC3-signed) with FUSION_PROVIDER=v3 and TENCENT_V3_URL=http://127.0.0.1:8090.
 * (Without credentials and without those URLs, the service starts an emulator
 * of its own: stand-in.ts.)
 */
import Fastify from 'fastify'
import { emulatorPlugin } from './plugin.js'

const port = Number(process.env.EMULATOR_PORT ?? 8090)
const host = process.env.EMULATOR_HOST ?? '127.0.0.1'
const qps = Number(process.env.EMULATOR_QPS ?? 0)
const retType = process.env.EMULATOR_RET_TYPE === 'number' ? 'number' : 'string'

// The fault-injection material ids (shared/forced.ts) work only when asked for.
const faults = process.env.EMULATOR_FAULTS === 'true'

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
// At LOG_LEVEL=debug, a line per answer with its code: what a bench counts frequency control by (bench/queue-spike.ts).
await app.register(emulatorPlugin, {
  qps,
  retType,
  faults,
  onAnswer: (ret) => { app.log.debug({ ret }, 'answered') },
  onV3Answer: (code) => { app.log.debug({ code }, 'answered') }
})
await app.listen({ port, host })
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void app.close().then(() => process.exit(0)) })
}
