/**
 * A viral spike on the wait line. REPLICAS built service processes, with two
 * throwaway Redis servers as docker-compose runs them (REDIS_URL for counters
 * and the budget, QUEUE_REDIS_URL for the line, so the line's memory is
 * measured alone), in front of the emulator run as a process of its own with
 * its frequency control at QUOTA calls a second. JOBS asynchronous fusions
 * (Prefer: respond-async, a small photo, each from an address of its own) are
 * submitted within SUBMIT_SECONDS, round robin over the replicas, and followed
 * to their end by polling at the Retry-After each answer gives; one replica is
 * killed with SIGKILL once half of them have finished.
 *
 * Prints the jobs by outcome; the upstream's frequency-control answers and
 * calls per job (counted from the emulator's log); the drain rate achieved
 * against the budget (over the whole run, and once every job was submitted);
 * the error of each job's first ETA against its real wait (from its 202 to its
 * `startedAt`); Redis' memory: used_memory_peak, per queued job (measured first,
 * by queuing MEMORY_JOBS small-photo and PHONE_JOBS 12 MP phone-photo jobs while
 * the line is paused with BullMQ's Queue.pause, then canceling them), and per
 * finished job (URL results from the spike; RESULT_JOBS base64 results after
 * it); and the CPU time each process used, since the machine's share matters.
 *
 *   npm run bench:queue
 *   (JOBS, SUBMIT_SECONDS, BUDGET, QUOTA, REPLICAS, WORKERS, LOCK_SECONDS, MEMORY_JOBS, PHONE_JOBS, RESULT_JOBS to
 *   change the run; BENCH_DUMP=file.json writes every arrival upstream and every job, for a closer look)
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import pLimit from 'p-limit'
import { request } from 'undici'
import { freePort } from '../scripts/free-port.js'
import { startRedisServer } from '../scripts/redis-server.js'
import { QUEUE_NAME, queuePrefix } from '../src/jobs/redis-line.js'
import { median, multipartPhoto, percentile, phonePhoto, root, startBuiltService } from './support.js'

const jobCount = Number(process.env.JOBS ?? 2000)
const submitSeconds = Number(process.env.SUBMIT_SECONDS ?? 10)
const budget = Number(process.env.BUDGET ?? 18)
const quota = Number(process.env.QUOTA ?? 20)
const replicaCount = Number(process.env.REPLICAS ?? 3)
const workers = Number(process.env.WORKERS ?? 16)
const lockSeconds = Number(process.env.LOCK_SECONDS ?? 5)
const memoryJobs = Number(process.env.MEMORY_JOBS ?? 500)
const phoneJobs = Number(process.env.PHONE_JOBS ?? 10)
const resultJobs = Number(process.env.RESULT_JOBS ?? 20)
const keyPrefix = 'bench:'
/** Polls are spaced as the answers' Retry-After says, but no closer than this. */
const POLL_FLOOR_MS = 2_000
/** Submissions in flight at once, over every replica. */
const SUBMIT_CONCURRENCY = 48

const redis = await startRedisServer()
const queueRedis = await startRedisServer()
const lineRedis = new Redis(queueRedis.url)

// The emulator as `npm run emulator` runs it, at debug: a log line per answer, with its code.
const emulatorPort = await freePort()
const emulator = spawn(process.execPath, ['--import', 'tsx', join(root, 'emulator', 'server.ts')], {
  cwd: root,
  env: { PATH: process.env.PATH ?? '', EMULATOR_PORT: String(emulatorPort), EMULATOR_HOST: '127.0.0.1', EMULATOR_QPS: String(quota), LOG_LEVEL: 'debug' },
  stdio: ['ignore', 'pipe', 'inherit']
})
process.once('exit', () => { emulator.kill('SIGKILL') })
const arrivals: number[] = []
const upstreamMs: number[] = []
const answers = new Map<string, number>()
const frequencyControlAt: number[] = []
let emulatorListening = (): void => {}
const emulatorUp = new Promise<void>((resolve) => { emulatorListening = resolve })
createInterface({ input: emulator.stdout }).on('line', (text) => {
  let line: { msg?: string, time?: number, ret?: number, req?: { method?: string, url?: string }, responseTime?: number }
  try {
    line = JSON.parse(text)
  } catch {
    return
  }
  if (line.msg?.startsWith('Server listening') === true) emulatorListening()
  if (line.msg === 'incoming request' && line.req?.method === 'POST' && line.req.url === '/fuseapi/face') arrivals.push(line.time!)
  if (line.msg === 'request completed' && line.responseTime !== undefined) upstreamMs.push(line.responseTime)
  if (line.msg === 'answered' && line.ret !== undefined) {
    answers.set(String(line.ret), (answers.get(String(line.ret)) ?? 0) + 1)
    if (line.ret === -20004) frequencyControlAt.push(line.time!)
  }
})
await Promise.race([emulatorUp, sleep(20_000).then(() => { throw new Error('the emulator did not start') })])

const replicas = await Promise.all(Array.from({ length: replicaCount }, async () => await startBuiltService({
  TENCENT_LEGACY_URL: `http://127.0.0.1:${emulatorPort}/fuseapi/face`,
  REDIS_URL: redis.url,
  QUEUE_REDIS_URL: queueRedis.url,
  REDIS_KEY_PREFIX: keyPrefix,
  UPSTREAM_QPS: String(budget),
  QUEUE_WORKERS: String(workers),
  QUEUE_LOCK_SECONDS: String(lockSeconds),
  // Generous, so that every job of the spike is admitted: the bench measures the drain, not admission.
  QUEUE_MAX_JOBS: String(Math.max(10_000, jobCount * 2)),
  QUEUE_MAX_WAIT_SECONDS: '3600',
  // Each job comes from an address of its own (X-Forwarded-For), as a crowd of phones would: per-client limits as they are.
  TRUST_PROXY: 'loopback'
})))
const alive = new Set(replicas.map((_, index) => index))
console.log(`${replicaCount} replicas × ${workers} workers; budget ${budget}/s, upstream quota ${quota}/s (emulator process); ` +
  `${jobCount} jobs within ${submitSeconds} s, SIGKILL of one replica half-way, QUEUE_LOCK_SECONDS=${lockSeconds}`)

/** CPU seconds a process has used (Linux /proc; 0 elsewhere). */
let killedCpu = 0
function cpuSeconds (child: ChildProcess | undefined): number {
  if (child === replicas.at(-1)!.child && killedCpu > 0) return killedCpu
  if (child === undefined) {
    const usage = process.cpuUsage()
    return (usage.user + usage.system) / 1e6
  }
  try {
    const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
}
const processes: Array<[string, Array<ChildProcess | undefined>]> = [
  ['replicas', replicas.map((replica) => replica.child)], ['emulator', [emulator]], ['redis', [redis.process, queueRedis.process]], ['bench', [undefined]]
]
const cpu = (): number[] => processes.map(([, list]) => list.reduce((sum, child) => sum + cpuSeconds(child), 0))

/** The line's Redis memory: used_memory less the clients' buffers (which come and go with the load). */
async function lineMemory (): Promise<number> {
  const stats = await lineRedis.call('MEMORY', 'STATS') as Array<string | number>
  const field = (name: string): number => Number(stats[stats.indexOf(name) + 1])
  return field('total.allocated') - field('clients.normal')
}
async function memoryInfo (): Promise<{ used: number, peak: number }> {
  const info = await lineRedis.info('memory')
  const field = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)![1])
  return { used: field('used_memory'), peak: field('used_memory_peak') }
}

const small = multipartPhoto(readFileSync(join(root, 'test', 'fixtures', 'images', 'orientation-1.jpg')))
const address = (n: number): string => `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`
let nextAddress = 1

interface Accepted { jobId: string, position: number, etaSeconds: number }
interface Refused { status: number, code: string, retryAfterMs: number }

/** One POST /fuse with Prefer: respond-async: the 202's body, or the refusal. */
async function submit (replica: number, photo: { body: Buffer, contentType: string }, from: string): Promise<Accepted | Refused> {
  const response = await request(`${replicas[replica]!.url}/fuse`, {
    method: 'POST',
    body: photo.body,
    headers: { 'content-type': photo.contentType, prefer: 'respond-async', 'x-forwarded-for': from }
  })
  const body = await response.body.json() as Accepted & { code?: string }
  if (response.statusCode === 202) return body
  return { status: response.statusCode, code: body.code ?? String(response.statusCode), retryAfterMs: Number(response.headers['retry-after'] ?? 1) * 1000 }
}

/** Submits until accepted, waiting out each refusal's Retry-After as a client would; the job and its client's address. */
async function submitAccepted (replica: number, photo: { body: Buffer, contentType: string }): Promise<{ jobId: string, from: string }> {
  const from = address(nextAddress++)
  for (;;) {
    const answer = await submit(replica, photo, from)
    if ('jobId' in answer) return { jobId: answer.jobId, from }
    await sleep(answer.retryAfterMs)
  }
}

/** A request about a job, from the address of the client that submitted it (each client's reads are limited). */
async function askAboutJob (replica: number, job: { jobId: string, from: string }, method: 'GET' | 'DELETE' = 'GET'): ReturnType<typeof request> {
  return await request(`${replicas[replica]!.url}/fuse/jobs/${job.jobId}`, { method, headers: { 'x-forwarded-for': job.from } })
}

const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`
const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`
const settle = async (): Promise<void> => { await sleep(1_000) }

// Redis' memory per queued job: jobs queued while the line is paused (no worker takes them), then canceled.
const queue = new Queue(QUEUE_NAME, { connection: { host: '127.0.0.1', port: queueRedis.port }, prefix: queuePrefix(keyPrefix) })
await queue.pause()
async function queuedMemory (count: number, photo: { body: Buffer, contentType: string }, concurrency: number): Promise<{ perJob: number, photo: number, leftPerJob: number }> {
  await settle()
  const before = await lineMemory()
  const limit = pLimit(concurrency)
  const queued = await Promise.all(Array.from({ length: count }, async (_, i) => await limit(async () => await submitAccepted(i % replicaCount, photo))))
  await settle()
  const after = await lineMemory()
  // The photo as stored beside the job (src/jobs/redis-line.ts), key included.
  const photoBytes = median(await Promise.all(queued.slice(0, 50).map(async ({ jobId }) => Number(await lineRedis.memory('USAGE', `${keyPrefix}jobs:photo:${jobId}`)))))
  await Promise.all(queued.map(async (job, i) => await limit(async () => {
    const response = await askAboutJob(i % replicaCount, job, 'DELETE')
    await response.body.dump()
    if (response.statusCode !== 200) throw new Error(`cancel: ${response.statusCode}`)
  })))
  await settle()
  return { perJob: (after - before) / count, photo: photoBytes, leftPerJob: (await lineMemory() - before) / count }
}
const smallMemory = await queuedMemory(memoryJobs, small, 16)
const phoneMemory = await queuedMemory(phoneJobs, multipartPhoto(await phonePhoto()), 2)
await queue.resume()
await queue.close()

// The spike.
interface Job { replica: number, submittedAt: number, position: number, eta: number, jobId: string, from: string, status?: string, code?: string, startedAt?: number, finishedAt?: number }
const jobs: Job[] = []
const refusals = new Map<string, number>()
let memoryPeak = 0
let lineLengthPeak = 0
// When the replicas sent each call (the line's record of its drain, src/jobs/redis-line.ts, kept 10 s), against when
// the emulator saw it arrive: which side bunched the calls that its frequency control counted.
// A job sent again after frequency control replaces its entry there (after a pause of 2 s or more): both are kept here.
const sends = new Set<string>()
const sendSampler = setInterval(() => {
  lineRedis.zrange(`${keyPrefix}jobs:sends`, '0', '-1', 'WITHSCORES').then((flat) => {
    for (let i = 0; i < flat.length; i += 2) sends.add(`${flat[i]!} ${flat[i + 1]!}`)
  }, () => {})
}, 1_000)
const sampler = setInterval(() => {
  void Promise.all([memoryInfo(), lineRedis.llen(`${queuePrefix(keyPrefix)}:${QUEUE_NAME}:wait`)]).then(([memory, length]) => {
    memoryPeak = Math.max(memoryPeak, memory.used)
    lineLengthPeak = Math.max(lineLengthPeak, length)
  }, () => {})
}, 500)
await settle()
const beforeSpike = await lineMemory()
const cpuBefore = cpu()

let finished = 0
let submitted = false
let spikeStart = 0
let killedAt: number | undefined
let allDone = (): void => {}
const done = new Promise<void>((resolve) => { allDone = resolve })
const polls = pLimit(32)
let pollCount = 0
let nextPollReplica = 0

function follow (job: Job, afterMs: number): void {
  setTimeout(() => {
    void polls(async () => {
      pollCount++
      const living = [...alive]
      const replica = alive.has(job.replica) ? job.replica : living[nextPollReplica++ % living.length]!
      try {
        const response = await askAboutJob(replica, job)
        const body = await response.body.json() as { status: string, startedAt?: string, finishedAt?: string, error?: { code: string } }
        if (response.statusCode !== 200) throw new Error(`GET job: ${response.statusCode}`)
        if (body.finishedAt === undefined) {
          follow(job, Math.max(POLL_FLOOR_MS, Number(response.headers['retry-after'] ?? 1) * 1000))
          return
        }
        Object.assign(job, {
          status: body.status,
          code: body.error?.code,
          startedAt: body.startedAt === undefined ? undefined : Date.parse(body.startedAt),
          finishedAt: Date.parse(body.finishedAt)
        })
        finished++
        if (killedAt === undefined && finished >= jobCount / 2 && replicaCount > 1) {
          const victim = replicaCount - 1
          alive.delete(victim)
          killedCpu = cpuSeconds(replicas[victim]!.child)
          replicas[victim]!.child.kill('SIGKILL')
          killedAt = Date.now()
          console.log(`SIGKILL of replica ${victim + 1} at ${((killedAt - spikeStart) / 1000).toFixed(1)} s, ${finished} jobs finished`)
        }
        if (finished === jobs.length && submitted) allDone()
      } catch {
        // The replica asked was just killed: ask another.
        follow(job, 500)
      }
    })
  }, afterMs)
}

spikeStart = Date.now()
const spacing = submitSeconds * 1000 / jobCount
const submissions = pLimit(SUBMIT_CONCURRENCY)
let notAccepted = 0
await Promise.all(Array.from({ length: jobCount }, async (_, i) => {
  await sleep(Math.max(0, spikeStart + i * spacing - Date.now()))
  const replica = i % replicaCount
  const from = address(nextAddress++)
  await submissions(async () => {
    for (let attempt = 0; attempt < 20; attempt++) {
      const answer = await submit(replica, small, from)
      if ('jobId' in answer) {
        const job: Job = { replica, submittedAt: Date.now(), position: answer.position, eta: answer.etaSeconds, jobId: answer.jobId, from }
        jobs.push(job)
        follow(job, Math.max(POLL_FLOOR_MS, Math.min(15, answer.etaSeconds) * 1000))
        return
      }
      refusals.set(answer.code, (refusals.get(answer.code) ?? 0) + 1)
      await sleep(answer.retryAfterMs)
    }
    notAccepted++
  })
}))
submitted = true
const submitEnd = Date.now()
const cpuIntake = cpu()
console.log(`submitted: ${jobs.length} jobs accepted (202) in ${((submitEnd - spikeStart) / 1000).toFixed(1)} s` +
  (refusals.size > 0 ? `; refusals, retried after their Retry-After: ${JSON.stringify(Object.fromEntries(refusals))}` : '') +
  (notAccepted > 0 ? `; ${notAccepted} given up after 20 refusals` : ''))
if (finished === jobs.length) allDone()
const timeout = sleep(Math.max(300_000, jobCount / budget * 3_000)).then(() => 'timeout' as const)
if (await Promise.race([done.then(() => 'done' as const), timeout]) === 'timeout') console.log(`timed out with ${jobs.length - finished} jobs unfinished`)
const cpuEnd = cpu()
await settle()
const afterSpike = await lineMemory()
const spikeArrivals = [...arrivals].sort((a, b) => a - b)
const spikeAnswers = new Map(answers)

// Base64 results, kept QUEUE_RESULT_TTL_SECONDS like any result: what a finished job then holds.
const base64 = multipartPhoto(readFileSync(join(root, 'test', 'fixtures', 'images', 'orientation-1.jpg')), { rsp_img_type: 'base64' })
const base64Jobs = await Promise.all(Array.from({ length: resultJobs }, async (_, i) => await submitAccepted([...alive][i % alive.size]!, base64)))
for (const job of base64Jobs) {
  for (;;) {
    const body = await (await askAboutJob([...alive][0]!, job)).body.json() as { finishedAt?: string }
    if (body.finishedAt !== undefined) break
    await sleep(500)
  }
}
await settle()
const base64PerJob = (await lineMemory() - afterSpike) / resultJobs
clearInterval(sampler)
clearInterval(sendSampler)
const end = await memoryInfo()

const figure = (values: number[], digits = 1): string => `median ${median(values).toFixed(digits)}, p90 ${percentile(values, 90).toFixed(digits)}`

// Outcomes.
const outcomes = new Map<string, number>()
for (const job of jobs) {
  const key = job.status === undefined ? 'unfinished' : job.status === 'succeeded' ? 'succeeded' : `${job.status} ${job.code ?? ''}`.trim()
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
}
console.log(`jobs: ${[...outcomes].map(([key, count]) => `${key} ${count}`).join(', ')} (of ${jobs.length}; ${pollCount} polls)`)

// The upstream, as the emulator saw it.
const calls = [...spikeAnswers.values()].reduce((sum, count) => sum + count, 0)
const at = (time: number): string => `${((time - spikeStart) / 1000).toFixed(1)} s`
console.log(`upstream: ${calls} calls, answers ${JSON.stringify(Object.fromEntries(spikeAnswers))}; ` +
  `frequency control: ${spikeAnswers.get('-20004') ?? 0}${frequencyControlAt.length > 0 ? ` (at ${frequencyControlAt.map(at).join(', ')})` : ''}; ` +
  `calls per job ${(calls / jobs.length).toFixed(3)}; the emulator's time per call ${figure(upstreamMs, 0)} ms`)
const tightest = (times: number[]): number => {
  let least = Infinity
  for (let i = 0; i + quota < times.length; i++) least = Math.min(least, times[i + quota]! - times[i]!)
  return least
}
const sendTimes = [...sends].map((entry) => Number(entry.split(' ')[1])).filter((time) => time >= spikeStart && time <= spikeArrivals.at(-1)!).sort((a, b) => a - b)
const pace = (times: number[]): number => (times.length - 1) / ((times.at(-1)! - times[0]!) / 1000)
const afterIntake = spikeArrivals.filter((time) => time > submitEnd)
console.log(`drain: ${pace(spikeArrivals).toFixed(2)} calls/s upstream over ${((spikeArrivals.at(-1)! - spikeArrivals[0]!) / 1000).toFixed(1)} s ` +
  `(${(100 * pace(spikeArrivals) / budget).toFixed(1)} % of the budget ${budget}/s); once every job was submitted ` +
  `${pace(afterIntake).toFixed(2)}/s (${(100 * pace(afterIntake) / budget).toFixed(1)} %); ` +
  `tightest ${quota + 1} consecutive calls: ${tightest(sendTimes).toFixed(0)} ms as sent, ${tightest(spikeArrivals).toFixed(0)} ms as the ` +
  `emulator saw them arrive (refused under 1000; spaced at the budget, ${(quota * 1000 / budget).toFixed(0)})`)

// The first ETA against the real wait: from the 202 to the job's start.
const errors = jobs.flatMap((job) => {
  if (job.startedAt === undefined) return []
  const waited = (job.startedAt - job.submittedAt) / 1000
  return [{ waited, absolute: Math.abs(job.eta - waited), signed: job.eta - waited, relative: Math.abs(job.eta - waited) / Math.max(waited, 0.001) }]
})
console.log(`ETA (first given) against the real wait, ${errors.length} jobs: wait ${figure(errors.map((e) => e.waited))} s; ` +
  `absolute error ${figure(errors.map((e) => e.absolute))} s; relative error ${figure(errors.map((e) => 100 * e.relative), 0)} %; ` +
  `ETA − wait ${figure(errors.map((e) => e.signed))} s`)

// Redis.
console.log(`line's redis: used_memory_peak ${mib(end.peak)} (sampled ${mib(memoryPeak)}; line ${lineLengthPeak} jobs long at most)`)
console.log(`per queued job: ${kib(smallMemory.perJob)} with a small photo (its photo key ${kib(smallMemory.photo)}), ` +
  `${kib(phoneMemory.perJob)} with a 12 MP phone photo (${kib(phoneMemory.photo)}); ` +
  `per canceled job, until QUEUE_RESULT_TTL_SECONDS: ${kib(smallMemory.leftPerJob)}`)
console.log(`per finished job, until QUEUE_RESULT_TTL_SECONDS: ${kib((afterSpike - beforeSpike) / Math.max(1, jobs.length))} with a URL result, ` +
  `${kib(base64PerJob)} with a base64 result`)

// The machine's share.
const [intakeCpu, totalCpu] = [cpuIntake, cpuEnd].map((sample) => sample.map((value, i) => value - cpuBefore[i]!))
console.log(`CPU seconds (intake / whole spike): ${processes.map(([name], i) => `${name} ${intakeCpu![i]!.toFixed(1)} / ${totalCpu![i]!.toFixed(1)}`).join(', ')}; ` +
  `load average ${loadavg()[0]!.toFixed(1)} on ${availableParallelism()} CPUs`)

// What the replicas still alive counted.
const counters = ['fusion_budget_refusals_total', 'fusion_budget_stale_slots_total', 'fusion_budget_backoffs_total', 'fusion_jobs_interrupted_total']
const totals = new Map<string, number>()
for (const index of alive) {
  const text = await (await request(`${replicas[index]!.url}/metrics`)).body.text()
  for (const name of counters) totals.set(name, (totals.get(name) ?? 0) + Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0))
}
console.log(`counted by the replicas alive: ${[...totals].map(([name, value]) => `${name} ${value}`).join(', ')}`)

if (process.env.BENCH_DUMP !== undefined) {
  writeFileSync(process.env.BENCH_DUMP, JSON.stringify({ spikeStart, submitEnd, killedAt, arrivals: spikeArrivals, frequencyControlAt, jobs }))
}

for (const index of alive) replicas[index]!.child.kill('SIGTERM')
emulator.kill('SIGTERM')
lineRedis.disconnect()
await Promise.all([redis.stop(), queueRedis.stop()])
process.exit(0)
