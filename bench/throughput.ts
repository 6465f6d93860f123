/**
 * Throughput of the image path against its floor: sharp alone turning a 12 MP
 * phone JPEG into an upstream-ready 1080 px JPEG (one job per CPU at once),
 * versus the whole service doing the same for 10 concurrent clients (multipart
 * parse, sniff, normalise, sign, JSON body, upstream call to an instant stub).
 * The service runs one job more than the CPUs, so sharp alone is also measured
 * with that many, and both ratios are printed. Rounds alternate, in one run;
 * the figures quoted are medians.
 *
 *   npm run bench:throughput        (ROUNDS, REQUESTS, CLIENTS to change the run;
 *                                    BODY=json sends the photo as base64 in a JSON body instead of a form)
 */
import { readFileSync, readdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { request } from 'undici'
import sharp from 'sharp'
import { imageConcurrency } from '../src/images/pipeline.js'
import { instantUpstream, jsonPhoto, median, multipartPhoto, percentile, phonePhoto, startBuiltService } from './support.js'

const rounds = Number(process.env.ROUNDS ?? 5)
const requests = Number(process.env.REQUESTS ?? 80)
const clients = Number(process.env.CLIENTS ?? 10)
const jobs = availableParallelism()
const serviceJobs = imageConcurrency(Number(process.env.IMAGE_CONCURRENCY ?? 0))

// As the service runs it (src/images/pipeline.ts): no libvips operation cache.
sharp.cache(false)
const photo = await phonePhoto()
const { width, height } = await sharp(photo).metadata()
console.log(`photo: ${width}×${height}, ${(photo.length / 1e6).toFixed(2)} MB; ${jobs} CPUs; ${clients} clients; ${requests} photos per round; ` +
  `the service runs ${serviceJobs} image jobs at once`)

/** CPU seconds a process has used (user + system), from /proc. */
function processCpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}
const ownCpuSeconds = (): number => { const usage = process.cpuUsage(); return (usage.user + usage.system) / 1e6 }

type ThreadGroup = 'main' | 'libvips' | 'other'
/**
 * CPU seconds by thread: the main (JavaScript) thread, libvips' workers, and
 * the rest: V8's garbage-collection helpers and libuv's pool, where sharp's
 * jobs start. This split is what shows where the service spends more than sharp alone.
 */
function threadCpuSeconds (pid: number): Record<ThreadGroup, number> {
  const groups: Record<ThreadGroup, number> = { main: 0, libvips: 0, other: 0 }
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    } catch {
      continue // the thread ended meanwhile
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const group: ThreadGroup = tid === String(pid) ? 'main' : name.startsWith('libvips') ? 'libvips' : 'other'
    groups[group] += (Number(fields[11]) + Number(fields[12])) / 100
  }
  return groups
}
const perPhotoMs = (before: Record<ThreadGroup, number>, after: Record<ThreadGroup, number>): string =>
  (['main', 'libvips', 'other'] as const).map((group) => `${group} ${(1000 * (after[group] - before[group]) / requests).toFixed(1)}`).join(', ')

async function sharpAlone (jobCount: number): Promise<{ rate: number, cpu: number, threads: string }> {
  let next = 0
  const threadsBefore = threadCpuSeconds(process.pid)
  const cpuBefore = ownCpuSeconds()
  const started = performance.now()
  await Promise.all(Array.from({ length: jobCount }, async () => {
    while (next++ < requests) {
      await sharp(photo).rotate().resize({ width: 1080, height: 1080, fit: 'inside' }).jpeg({ quality: 90 }).toBuffer()
    }
  }))
  return {
    rate: requests / ((performance.now() - started) / 1000),
    cpu: (ownCpuSeconds() - cpuBefore) / requests,
    threads: perPhotoMs(threadsBefore, threadCpuSeconds(process.pid))
  }
}

const upstream = await instantUpstream()
// IMAGE_CONCURRENCY and UV_THREADPOOL_SIZE pass through, to compare settings.
const passthrough = Object.fromEntries(['IMAGE_CONCURRENCY', 'UV_THREADPOOL_SIZE', 'LD_PRELOAD', 'MALLOC_ARENA_MAX', 'NODE_OPTIONS'].flatMap((name) => process.env[name] === undefined ? [] : [[name, process.env[name]!]]))
const service = await startBuiltService({ TENCENT_LEGACY_URL: upstream.url, ...passthrough })
const bodyKind = process.env.BODY === 'json' ? 'json' : 'multipart'
const { body, contentType } = bodyKind === 'json' ? jsonPhoto(photo) : multipartPhoto(photo)
console.log(`the service receives the photo as a ${bodyKind === 'json' ? 'JSON' : 'multipart'} body of ${(body.length / 1e6).toFixed(2)} MB`)

async function throughService (): Promise<{ rate: number, latencies: number[], statuses: Record<number, number>, serviceCpu: number, clientCpu: number, threads: string }> {
  let next = 0
  const latencies: number[] = []
  const statuses: Record<number, number> = {}
  const started = performance.now()
  const serviceCpuBefore = processCpuSeconds(service.child.pid!)
  const threadsBefore = threadCpuSeconds(service.child.pid!)
  const clientCpuBefore = ownCpuSeconds()
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next++ < requests) {
      const sent = performance.now()
      const response = await request(`${service.url}/fuse`, { method: 'POST', body, headers: { 'content-type': contentType } })
      await response.body.dump()
      statuses[response.statusCode] = (statuses[response.statusCode] ?? 0) + 1
      latencies.push(performance.now() - sent)
    }
  }))
  return {
    rate: requests / ((performance.now() - started) / 1000),
    latencies,
    statuses,
    serviceCpu: (processCpuSeconds(service.child.pid!) - serviceCpuBefore) / requests,
    clientCpu: (ownCpuSeconds() - clientCpuBefore) / requests,
    threads: perPhotoMs(threadsBefore, threadCpuSeconds(service.child.pid!))
  }
}

// Warm both paths (JIT, keep-alive sockets, the service's upload buffers).
await sharpAlone(jobs)
await throughService()

const alone: number[] = []
const aloneAsService: number[] = []
const served: number[] = []
const ratios: number[] = []
const ratiosAsService: number[] = []
const p99s: number[] = []
const sameJobs = serviceJobs === jobs
for (let round = 1; round <= rounds; round++) {
  const a = await sharpAlone(jobs)
  const b = sameJobs ? a : await sharpAlone(serviceJobs)
  const s = await throughService()
  alone.push(a.rate)
  aloneAsService.push(b.rate)
  served.push(s.rate)
  ratios.push(s.rate / a.rate)
  ratiosAsService.push(s.rate / b.rate)
  p99s.push(percentile(s.latencies, 99))
  console.log(`round ${round}: sharp alone ${a.rate.toFixed(1)} photos/s` + (sameJobs ? '' : ` (with ${serviceJobs} jobs: ${b.rate.toFixed(1)})`) +
    `; service ${s.rate.toFixed(1)} photos/s (${(100 * s.rate / a.rate).toFixed(0)} %` + (sameJobs ? '' : `; ${(100 * s.rate / b.rate).toFixed(0)} % of ${serviceJobs} jobs`) + '); ' +
    `p50 ${percentile(s.latencies, 50).toFixed(0)} ms, p99 ${percentile(s.latencies, 99).toFixed(0)} ms, statuses ${JSON.stringify(s.statuses)}\n` +
    `  CPU ms per photo: sharp alone ${(1000 * a.cpu).toFixed(0)} (${a.threads}); service ${(1000 * s.serviceCpu).toFixed(0)} (${s.threads}); ` +
    `load client ${(1000 * s.clientCpu).toFixed(0)}`)
}
console.log(`median: sharp alone ${median(alone).toFixed(1)} photos/s, service ${median(served).toFixed(1)} photos/s, ` +
  `ratio ${(100 * median(ratios)).toFixed(0)} %` +
  (sameJobs ? '' : ` (sharp alone with the service's ${serviceJobs} jobs: ${median(aloneAsService).toFixed(1)} photos/s, ratio ${(100 * median(ratiosAsService)).toFixed(0)} %)`) +
  `, p99 ${median(p99s).toFixed(0)} ms`)

service.child.kill('SIGTERM')
upstream.server.close()
process.exit(0)
