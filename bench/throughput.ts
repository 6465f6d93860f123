/**
 * Throughput and CPU of the image path against its floor, on both paths a
 * photo takes upstream: the legacy API and FuseFace 2022-09-27. For each, sharp
 * alone turns a 12 MP phone JPEG into exactly the JPEG that path sends (the
 * same longest side, IMAGE_MAX_SIDE within the API's limit, and quality),
 * one job per CPU at once; the whole service does the same for 10 concurrent
 * clients (multipart parse, sniff, normalise, sign, JSON body, the call to an
 * instant stub of that API). The service runs one job more than the CPUs, so
 * sharp alone is also measured with that many. Beside them runs the bare stack
 * (bench/bare-stack-server.ts: Fastify, @fastify/multipart, sharp and undici
 * doing the same work plainly, with nothing of the service's own), which splits
 * the service's cost over sharp alone into the stack's part and the service's.
 * Prints photos a second, CPU milliseconds per photo by thread (main, libvips,
 * other), the bytes sent upstream per photo, and the ratios. Rounds alternate,
 * in one run; the figures quoted are medians.
 *
 *   npm run bench:throughput        (ROUNDS, REQUESTS, CLIENTS, WARMUP_ROUNDS, PATHS=legacy,fuseface-2022 and
 *                                    IMAGE_MAX_SIDE to change the run; BODY=json sends the photo as base64 in a
 *                                    JSON body instead of a form; CPU_PROF=dir profiles each service's main thread
 *                                    with node --cpu-prof, summed up by `tsx bench/profile-summary.ts dir/*.cpuprofile`)
 */
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { availableParallelism } from 'node:os'
import { request } from 'undici'
import sharp from 'sharp'
import { loadConfig } from '../src/config/load.js'
import { HIGHEST_QUALITY } from '../src/images/normalize.js'
import { imageConcurrency } from '../src/images/pipeline.js'
import { sentImageLimits } from '../src/upstream/image-limits.js'
import {
  instantUpstream, jsonPhoto, median, multipartPhoto, pathsFromEnv, percentile, phonePhoto, root, startBuiltService, startServer,
  type UpstreamPath
} from './support.js'

const rounds = Number(process.env.ROUNDS ?? 5)
const requests = Number(process.env.REQUESTS ?? 80)
const clients = Number(process.env.CLIENTS ?? 10)
const paths = pathsFromEnv()
const jobs = availableParallelism()
const serviceJobs = imageConcurrency(Number(process.env.IMAGE_CONCURRENCY ?? 0))
/** As src/images/normalize.ts encodes. */
const QUALITY = HIGHEST_QUALITY

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
const GROUPS = ['main', 'libvips', 'other'] as const
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
type PerPhoto = Record<ThreadGroup, number>
const perPhotoMs = (before: PerPhoto, after: PerPhoto): PerPhoto =>
  Object.fromEntries(GROUPS.map((group) => [group, 1000 * (after[group] - before[group]) / requests])) as PerPhoto
const threadsText = (ms: PerPhoto): string => GROUPS.map((group) => `${group} ${ms[group].toFixed(1)}`).join(', ')

interface Measured { rate: number, cpuMs: number, threads: PerPhoto, bytes: number }

/** Sharp alone doing what the path sends: the same longest side, never enlarged, the same quality. */
async function sharpAlone (jobCount: number, side: number): Promise<Measured> {
  let next = 0
  let bytes = 0
  const threadsBefore = threadCpuSeconds(process.pid)
  const cpuBefore = ownCpuSeconds()
  const started = performance.now()
  await Promise.all(Array.from({ length: jobCount }, async () => {
    while (next++ < requests) {
      const jpeg = await sharp(photo)
        .rotate()
        .resize({ width: side, height: side, fit: 'inside', withoutEnlargement: true })
        .jpeg({ quality: QUALITY, chromaSubsampling: '4:2:0' })
        .toBuffer()
      bytes += jpeg.length
    }
  }))
  return {
    rate: requests / ((performance.now() - started) / 1000),
    cpuMs: 1000 * (ownCpuSeconds() - cpuBefore) / requests,
    threads: perPhotoMs(threadsBefore, threadCpuSeconds(process.pid)),
    bytes: bytes / requests
  }
}

const upstream = await instantUpstream()
// Image settings, the thread pool's size and the allocator's pass through, to compare settings.
const passthrough = Object.fromEntries(['IMAGE_CONCURRENCY', 'IMAGE_MAX_SIDE', 'UV_THREADPOOL_SIZE', 'LD_PRELOAD', 'MALLOC_CONF', 'MALLOC_ARENA_MAX', 'NODE_OPTIONS']
  .flatMap((name) => process.env[name] === undefined ? [] : [[name, process.env[name]!]]))
const bodyKind = process.env.BODY === 'json' ? 'json' : 'multipart'
const { body, contentType } = bodyKind === 'json' ? jsonPhoto(photo) : multipartPhoto(photo)
console.log(`the service receives the photo as a ${bodyKind === 'json' ? 'JSON' : 'multipart'} body of ${(body.length / 1e6).toFixed(2)} MB`)

type Server = Awaited<ReturnType<typeof startServer>>
interface PathUnderTest { path: UpstreamPath, side: number, maxBytes: number, service: Server, bareStack: Server }
const underTest: PathUnderTest[] = []
for (const path of paths) {
  const env = { ...upstream.env(path), ...passthrough }
  const config = loadConfig(env)
  const { maxSide, maxBytes } = sentImageLimits(config.upstream, config.IMAGE_MAX_SIDE)
  const profile = process.env.CPU_PROF === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${process.env.CPU_PROF}`, `--cpu-prof-name=${path}.cpuprofile`]
  const service = await startBuiltService(env, profile)
  // The service sets this flag itself at start (src/server.ts); its image jobs at once are the bare stack's thread pool.
  const bareStack = await startServer(join(root, 'bench', 'bare-stack-server.ts'), {
    ...passthrough,
    UPSTREAM_URL: config.upstream.url ?? '',
    IMAGE_MAX_SIDE: String(maxSide),
    JPEG_QUALITY: String(QUALITY),
    UV_THREADPOOL_SIZE: String(serviceJobs)
  }, ['--heap-growing-percent=300'])
  underTest.push({ path, side: maxSide, maxBytes, service, bareStack })
  console.log(`${path}: photos sent within ${maxSide} px and ${maxBytes} bytes, JPEG quality ${QUALITY} (lower only past the bytes)`)
}

interface Served extends Measured { latencies: number[], statuses: Record<number, number>, clientCpuMs: number }

/** Sends the round's photos from the clients through a server: the service, or the bare stack. */
async function through (service: Server): Promise<Served> {
  const pid = service.child.pid!
  let next = 0
  const latencies: number[] = []
  const statuses: Record<number, number> = {}
  const bytesBefore = upstream.received.bytes
  const serviceCpuBefore = processCpuSeconds(pid)
  const threadsBefore = threadCpuSeconds(pid)
  const clientCpuBefore = ownCpuSeconds()
  const started = performance.now()
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
    cpuMs: 1000 * (processCpuSeconds(pid) - serviceCpuBefore) / requests,
    clientCpuMs: 1000 * (ownCpuSeconds() - clientCpuBefore) / requests,
    threads: perPhotoMs(threadsBefore, threadCpuSeconds(pid)),
    bytes: (upstream.received.bytes - bytesBefore) / requests
  }
}

// Warm every path (keep-alive sockets, the service's upload buffers, and the JIT: a service runs for hours, and after
// one round of photos V8 is still optimising the functions each request calls once).
const warmRounds = Number(process.env.WARMUP_ROUNDS ?? 3)
for (const path of underTest) {
  await sharpAlone(jobs, path.side)
  for (let round = 0; round < warmRounds; round++) {
    await through(path.service)
    await through(path.bareStack)
  }
}

interface Figures { alone: Measured[], aloneAsService: Measured[], served: Served[], bare: Served[] }
const figures = new Map<UpstreamPath, Figures>(underTest.map(({ path }) => [path, { alone: [], aloneAsService: [], served: [], bare: [] }]))
const sameJobs = serviceJobs === jobs
const pct = (ratio: number): string => `${(100 * ratio).toFixed(0)} %`
for (let round = 1; round <= rounds; round++) {
  for (const path of underTest) {
    const a = await sharpAlone(jobs, path.side)
    const b = sameJobs ? a : await sharpAlone(serviceJobs, path.side)
    const s = await through(path.service)
    const bare = await through(path.bareStack)
    const figure = figures.get(path.path)!
    figure.alone.push(a)
    figure.aloneAsService.push(b)
    figure.served.push(s)
    figure.bare.push(bare)
    console.log(`round ${round} ${path.path}: sharp alone ${a.rate.toFixed(1)} photos/s` + (sameJobs ? '' : ` (with ${serviceJobs} jobs: ${b.rate.toFixed(1)})`) +
      `; service ${s.rate.toFixed(1)} photos/s (${pct(s.rate / a.rate)}` + (sameJobs ? '' : `; ${pct(s.rate / b.rate)} of ${serviceJobs} jobs`) + '); ' +
      `p50 ${percentile(s.latencies, 50).toFixed(0)} ms, p99 ${percentile(s.latencies, 99).toFixed(0)} ms, statuses ${JSON.stringify(s.statuses)}\n` +
      `  CPU ms per photo: sharp alone ${a.cpuMs.toFixed(1)} (${threadsText(a.threads)}); service ${s.cpuMs.toFixed(1)} (${threadsText(s.threads)}), ` +
      `${(s.cpuMs / a.cpuMs).toFixed(3)}×; load client and stub upstream ${s.clientCpuMs.toFixed(1)}\n` +
      `  bare stack: ${bare.rate.toFixed(1)} photos/s (${pct(bare.rate / a.rate)}), CPU ms per photo ${bare.cpuMs.toFixed(1)} ` +
      `(${threadsText(bare.threads)}), ${(bare.cpuMs / a.cpuMs).toFixed(3)}× sharp alone's; the service ${(s.cpuMs / bare.cpuMs).toFixed(3)}× the bare stack's\n` +
      `  bytes per photo: sharp alone's JPEG ${(a.bytes / 1000).toFixed(0)} KB; sent upstream ${(s.bytes / 1000).toFixed(0)} KB (the JSON body, base64)`)
  }
}

const medianOf = (values: Measured[], pick: (value: Measured) => number): number => median(values.map(pick))
const threadMedians = (values: Measured[]): PerPhoto =>
  Object.fromEntries(GROUPS.map((group) => [group, medianOf(values, (value) => value.threads[group])])) as PerPhoto
for (const { path } of underTest) {
  const { alone, aloneAsService, served, bare } = figures.get(path)!
  const ratios = served.map((s, index) => s.rate / alone[index]!.rate)
  const ratiosAsService = served.map((s, index) => s.rate / aloneAsService[index]!.rate)
  const cpuRatios = served.map((s, index) => s.cpuMs / alone[index]!.cpuMs)
  const bareRatios = bare.map((b, index) => b.cpuMs / alone[index]!.cpuMs)
  const overBare = served.map((s, index) => s.cpuMs / bare[index]!.cpuMs)
  const bareRates = bare.map((b, index) => b.rate / alone[index]!.rate)
  console.log(`median ${path}: sharp alone ${medianOf(alone, (a) => a.rate).toFixed(1)} photos/s, service ${medianOf(served, (s) => s.rate).toFixed(1)} ` +
    `photos/s, throughput ratio ${pct(median(ratios))}` +
    (sameJobs ? '' : ` (sharp alone with the service's ${serviceJobs} jobs: ${medianOf(aloneAsService, (b) => b.rate).toFixed(1)} photos/s, ratio ${pct(median(ratiosAsService))})`) +
    `, p99 ${median(served.map((s) => percentile(s.latencies, 99))).toFixed(0)} ms\n` +
    `  CPU ms per photo: sharp alone ${medianOf(alone, (a) => a.cpuMs).toFixed(1)} (${threadsText(threadMedians(alone))}); ` +
    `service ${medianOf(served, (s) => s.cpuMs).toFixed(1)} (${threadsText(threadMedians(served))}); ratio ${median(cpuRatios).toFixed(3)}×\n` +
    `  bare stack: ${medianOf(bare, (b) => b.rate).toFixed(1)} photos/s (${pct(median(bareRates))} of sharp alone), CPU ms per photo ` +
    `${medianOf(bare, (b) => b.cpuMs).toFixed(1)} (${threadsText(threadMedians(bare))}), ${median(bareRatios).toFixed(3)}× sharp alone's; ` +
    `the service ${median(overBare).toFixed(3)}× the bare stack's\n` +
    `  bytes per photo: sharp alone's JPEG ${(medianOf(alone, (a) => a.bytes) / 1000).toFixed(0)} KB, sent upstream ${(medianOf(served, (s) => s.bytes) / 1000).toFixed(0)} KB (the JSON body, base64)`)
}

// A profile is written as the process exits: wait for it.
await Promise.all(underTest.flatMap(({ service, bareStack }) => [service, bareStack])
  .map(async ({ child }) => await new Promise((resolve) => { child.once('exit', resolve).kill('SIGTERM') })))
upstream.server.close()
process.exit(0)
