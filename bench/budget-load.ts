/**
 * Drives the service over its upstream budget: REPLICAS service processes
 * sharing one (throwaway) Redis, in front of the emulator with its QPS limit
 * set to the account's quota, offered OVERLOAD × the budget for SECONDS.
 * Prints the accepted and rejected rates, how often the upstream's frequency
 * control fired, p50/p99 latency of accepted and rejected requests, and the
 * jitter between the budget's spacing and the calls' arrival upstream: the
 * upstream refuses when QUOTA + 1 calls arrive within one second, so the
 * tightest QUOTA + 1 consecutive arrivals show how much margin the budget needs
 * (UPSTREAM_QPS ≤ quota × 1000 / (1000 + jitter ms); docs/operations.md).
 *
 *   npm run bench:budget        (BUDGET, QUOTA, OVERLOAD, SECONDS, REPLICAS to change the run)
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import Fastify from 'fastify'
import { request } from 'undici'
import { emulatorPlugin } from '../emulator/plugin.js'
import { startRedisServer } from '../scripts/redis-server.js'
import { multipartPhoto, percentile, root, startBuiltService } from './support.js'

const budget = Number(process.env.BUDGET ?? 9)
const quota = Number(process.env.QUOTA ?? 10)
const overload = Number(process.env.OVERLOAD ?? 5)
const seconds = Number(process.env.SECONDS ?? 10)
const replicaCount = Number(process.env.REPLICAS ?? 3)

const redis = await startRedisServer()
let frequencyControl = 0
const emulator = Fastify({ logger: false })
const arrivals: number[] = []
emulator.addHook('onRequest', async (request) => { if (request.method === 'POST') arrivals.push(performance.now()) })
await emulator.register(emulatorPlugin, { qps: quota, onAnswer: (ret) => { if (ret === -20004) frequencyControl++ } })
await emulator.listen({ port: 0, host: '127.0.0.1' })
const { port } = emulator.server.address() as { port: number }

const replicas = await Promise.all(Array.from({ length: replicaCount }, async () => await startBuiltService({
  TENCENT_LEGACY_URL: `http://127.0.0.1:${port}/fuseapi/face`,
  REDIS_URL: redis.url,
  UPSTREAM_QPS: String(budget)
})))

const photo = readFileSync(join(root, 'test', 'fixtures', 'images', 'orientation-1.jpg'))
const { body, contentType } = multipartPhoto(photo)
const offered = Math.round(budget * overload * seconds)
const interval = 1000 / (budget * overload)
console.log(`${replicaCount} replicas, one Redis; budget ${budget}/s, upstream quota ${quota}/s; offering ${(budget * overload).toFixed(1)}/s for ${seconds} s (${offered} requests)`)

const accepted: number[] = []
const rejected: number[] = []
const other: Record<number, number> = {}
const started = performance.now()
const sends: Array<Promise<void>> = []
for (let i = 0; i < offered; i++) {
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + i * interval - performance.now())))
  sends.push((async () => {
    const sent = performance.now()
    const response = await request(`${replicas[i % replicaCount]!.url}/fuse`, { method: 'POST', body, headers: { 'content-type': contentType } })
    await response.body.dump()
    const latency = performance.now() - sent
    if (response.statusCode === 200) accepted.push(latency)
    else if (response.statusCode === 503) rejected.push(latency)
    else other[response.statusCode] = (other[response.statusCode] ?? 0) + 1
  })())
}
await Promise.all(sends)
const elapsed = (performance.now() - started) / 1000

const summary = (latencies: number[]): string => latencies.length === 0 ? '-' : `p50 ${percentile(latencies, 50).toFixed(0)} ms, p99 ${percentile(latencies, 99).toFixed(0)} ms`
console.log(`accepted: ${accepted.length} (${(accepted.length / elapsed).toFixed(2)}/s; budget ${budget}/s), ${summary(accepted)}`)
console.log(`rejected (503 FUSION_UPSTREAM_BUSY): ${rejected.length} (${(rejected.length / elapsed).toFixed(2)}/s), ${summary(rejected)}`)
console.log(`upstream frequency-control answers: ${frequencyControl}`)
if (Object.keys(other).length > 0) console.log(`other statuses: ${JSON.stringify(other)}`)
// Spaced exactly 1000/budget ms apart, quota + 1 calls span quota × 1000/budget ms; what arrives closer is jitter.
let tightest = Infinity
for (let i = 0; i + quota < arrivals.length; i++) tightest = Math.min(tightest, arrivals[i + quota]! - arrivals[i]!)
if (Number.isFinite(tightest)) {
  const jitter = Math.max(0, quota * 1000 / budget - tightest)
  console.log(`tightest ${quota + 1} consecutive arrivals upstream: ${tightest.toFixed(0)} ms (refused under 1000); ` +
    `jitter ${jitter.toFixed(0)} ms; a budget safe for it: ≤ ${(quota * 1000 / (1000 + jitter)).toFixed(2)}/s`)
}

for (const replica of replicas) replica.child.kill('SIGTERM')
await redis.stop()
// The emulator's keep-alive sockets from the replicas need not be waited for.
process.exit(0)
