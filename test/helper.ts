import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { request } from 'undici'
import type { DestinationStream } from 'pino'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config/load.js'
import { emulatorPlugin, type EmulatorOptions } from '../emulator/plugin.js'
import { completeWithStandIn } from '../emulator/stand-in.js'
import { freePort } from '../scripts/free-port.js'
import { REDIS_INSTALL_HINT, startRedisServer } from '../scripts/redis-server.js'

interface Teardown { teardown: (fn: () => unknown) => void }

const fixturesDir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'images')

/** The committed image corpus, by file name. */
export function fixture (name: string): Buffer {
  return readFileSync(fixturePath(name))
}

export function fixturePath (name: string): string {
  return join(fixturesDir, name)
}

/**
 * Starts the service on a free port of `options.host` (127.0.0.1). `env` is the whole environment it sees. Without
 * credentials, the emulator stands in as the entry point starts it (src/server.ts), and is closed after the app.
 */
export async function startService (
  t: Teardown,
  env: Record<string, string> = {},
  options: { logStream?: DestinationStream, host?: string } = {}
): Promise<{ app: FastifyInstance, url: string }> {
  // Client limits off unless a test is about them: tests send many requests, many at once, from one address. Load
  // shedding on event-loop lag too (test/plugins/under-pressure.test.ts turns it on): the service shares this process
  // with the test, its clients and often an emulator, and on a busy machine their lag alone would answer 503.
  const loaded = loadConfig({
    LOG_LEVEL: 'silent', RATE_LIMIT_MAX: '1000000', IMAGE_PLACES_PER_CLIENT: '10000', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0', ...env
  })
  const { config, close } = await completeWithStandIn(loaded, { faults: true })
  const app = await buildApp(config, options).catch(async (error: unknown) => {
    await close()
    throw error
  })
  t.teardown(async () => {
    await app.close()
    await close()
  })
  const host = options.host ?? '127.0.0.1'
  await app.listen({ port: 0, host })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return { app, url: `http://${host}:${address.port}` }
}

/** Starts a standalone emulator, for tests that need its knobs. */
export async function startEmulator (t: Teardown, options: EmulatorOptions = {}): Promise<{ app: FastifyInstance, url: string, legacyUrl: string }> {
  const app = Fastify({ logger: false })
  await app.register(emulatorPlugin, { faults: true, ...options })
  t.teardown(async () => await app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  const url = `http://127.0.0.1:${address.port}`
  return { app, url, legacyUrl: `${url}/fuseapi/face` }
}

/** Transport settings for upstream clients built directly in tests: short timeouts, a small pool. */
export const TEST_TRANSPORT = { timeoutMs: 2_000, connectTimeoutMs: 1_000, connections: 4, maxResponseBytes: 64 * 1024 }

/** Both upstream APIs: end-to-end tests run once for each. */
export const UPSTREAM_PROVIDERS = ['legacy', 'v3'] as const
export type UpstreamProvider = typeof UPSTREAM_PROVIDERS[number]

/** The environment that points the service at a standalone emulator, for the given API. */
export function upstreamEnv (provider: UpstreamProvider, emulator: { url: string, legacyUrl: string }): Record<string, string> {
  return provider === 'v3'
    ? { FUSION_PROVIDER: 'v3', TENCENT_V3_URL: `${emulator.url}/` }
    : { FUSION_PROVIDER: 'legacy', TENCENT_LEGACY_URL: emulator.legacyUrl }
}

/** The same for a stub upstream (its `url` is the legacy endpoint; API 3.0 is called at its root). */
export function stubEnv (provider: UpstreamProvider, stubUrl: string): Record<string, string> {
  return upstreamEnv(provider, { url: new URL(stubUrl).origin, legacyUrl: stubUrl })
}

/** Polls until `condition` holds (fails after 10 s): no fixed sleeps deciding who is first. */
export async function until (condition: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not reached in 10 s')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/**
 * A queued job's view once it has finished: `GET location` until it has `finishedAt`, with `headers` (the owner's
 * x-api-key, another Host). Fails after 30 s, naming the job's last state.
 */
export async function finishedJob (serviceUrl: string, location: string, headers: Record<string, string> = {}): Promise<any> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const job = await (await request(`${serviceUrl}${location}`, { headers })).body.json() as { finishedAt?: string }
    if (job.finishedAt !== undefined) return job
    if (Date.now() > deadline) throw new Error(`the job at ${location} did not finish in 30 s: ${JSON.stringify(job)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Markdown without its code blocks, and its code spans without the brackets that would read as links. */
export function markdownWithoutCode (markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, (span) => span.replace(/[[\]()]/g, ''))
}

/**
 * The `#anchors` a Markdown page's headings get on GitHub: lower case, punctuation dropped, spaces as hyphens, a
 * repeated heading numbered (`-1`, `-2`); headings inside code are not headings.
 */
export function markdownAnchors (markdown: string): Set<string> {
  const text = markdownWithoutCode(markdown)
  const seen = new Map<string, number>()
  const anchors = new Set<string>()
  for (const [, heading] of text.matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = heading!.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
    const count = seen.get(slug) ?? 0
    seen.set(slug, count + 1)
    anchors.add(count === 0 ? slug : `${slug}-${count}`)
  }
  return anchors
}

/** Collects every log line a service writes (pass `stream` as startService's `logStream`). */
export function captureLogs (): { stream: Writable, text: () => string, lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = []
  const stream = new Writable({
    write (chunk, _encoding, done) { chunks.push(String(chunk)); done() }
  })
  const text = (): string => chunks.join('')
  return { stream, text, lines: () => text().split('\n').filter(Boolean).map((line) => JSON.parse(line)) }
}

export interface Part { name: string, value: string | Buffer, filename?: string, contentType?: string }

/** A multipart body built by hand, so tests control order, names and framing exactly. */
export function multipart (parts: Part[], boundary = '----fusion-test-boundary'): { body: Buffer, contentType: string } {
  const chunks: Buffer[] = []
  for (const part of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"`
    if (part.filename !== undefined) head += `; filename="${part.filename}"`
    head += '\r\n'
    if (part.contentType !== undefined) head += `Content-Type: ${part.contentType}\r\n`
    chunks.push(Buffer.from(`${head}\r\n`), Buffer.isBuffer(part.value) ? part.value : Buffer.from(part.value), Buffer.from('\r\n'))
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`))
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` }
}

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  json: () => any
}

/** POST over real HTTP and read the whole answer. */
export async function post (url: string, body: Buffer | string, headers: Record<string, string>): Promise<Reply> {
  // A hang must fail the test, not stall the run.
  const response = await request(url, { method: 'POST', body, headers, headersTimeout: 15_000, bodyTimeout: 15_000 })
  const bytes = Buffer.from(await response.body.arrayBuffer())
  return {
    status: response.statusCode,
    headers: response.headers,
    body: bytes,
    json: () => JSON.parse(bytes.toString('utf8'))
  }
}

/** POST /fuse as a form: the photo plus template fields. */
export async function fuseForm (
  serviceUrl: string,
  image: Buffer,
  fields: Record<string, string> = {},
  headers: Record<string, string> = {}
): Promise<Reply> {
  const { body, contentType } = multipart([
    ...Object.entries({ project_id: '100307', model_id: 'qc_100307_152854_1', ...fields }).map(([name, value]) => ({ name, value })),
    { name: 'image', value: image, filename: 'photo.jpg', contentType: 'image/jpeg' }
  ])
  return await post(`${serviceUrl}/fuse`, body, { 'content-type': contentType, ...headers })
}

/**
 * Starts a form upload of `image` on a raw socket, as a client the test can cut
 * off at any moment (`destroy()`), which no HTTP client library allows mid-request.
 */
export function rawFuseUpload (serviceUrl: string, image: Buffer, headers: Record<string, string> = {}): Socket {
  const { body, contentType } = multipart([
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'qc_100307_152854_1' },
    { name: 'image', value: image, filename: 'me.jpg', contentType: 'image/jpeg' }
  ])
  const socket = connect(Number(new URL(serviceUrl).port), '127.0.0.1')
  socket.on('error', () => {})
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  socket.write(`POST /fuse HTTP/1.1\r\nHost: x\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n${extra}\r\n`)
  socket.write(body)
  return socket
}

/** The Redis the test command provides (scripts/with-redis.ts). A missing one fails the test, never skips it. */
export function sharedRedisUrl (): string {
  const url = process.env.REDIS_URL
  if (url === undefined || url === '') throw new Error(`REDIS_URL is not set: run the tests with \`npm test\`.\n${REDIS_INSTALL_HINT}`)
  return url
}

/** A key prefix of the test's own, so tests sharing one Redis never see each other's counters. */
export function redisPrefix (): string {
  return `test:${randomUUID()}:`
}

export interface StubCall {
  /** 1 for the first call. */
  number: number
  request: IncomingMessage
  body: Buffer
}

/**
 * An upstream of the test's own on a free loopback port: `respond` sees each
 * call once its body has arrived, and answers (or misbehaves) as the test
 * needs. `onConnection` sees each raw connection first.
 */
export async function stubUpstream (
  t: Teardown,
  respond: (call: StubCall, response: ServerResponse) => void,
  options: { onConnection?: (socket: Socket) => void } = {}
): Promise<{ url: string, calls: StubCall[] }> {
  const calls: StubCall[] = []
  const server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      const call = { number: calls.length + 1, request, body: Buffer.concat(chunks) }
      calls.push(call)
      respond(call, response)
    })
  })
  if (options.onConnection !== undefined) server.on('connection', options.onConnection)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  const { port } = server.address() as { port: number }
  return { url: `http://127.0.0.1:${port}/fuseapi/face`, calls }
}

/**
 * A redis-server of the test's own, for a test that pauses, limits or counts it (the shared one serves other tests
 * at once), with a client to do so; both end with the test.
 */
export async function ownRedis (t: Teardown): Promise<{ url: string, admin: Redis }> {
  const server = await startRedisServer()
  t.teardown(async () => await server.stop())
  const admin = new Redis(server.url)
  t.teardown(() => admin.disconnect())
  return { url: server.url, admin }
}

/** A legacy upstream's success with a URL result. */
export const LEGACY_OK = { ret: '0', msg: 'ok', img_url: 'https://example.invalid/fused.jpg' }

/** The lines a job can wait in: in this process's memory (no Redis), and BullMQ on the shared Redis. */
export const JOB_LINES = {
  memory: (): Record<string, string> => ({}),
  redis: (): Record<string, string> => ({ REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() })
}

/** An upstream whose answers (`body`, a legacy success by default) wait until released, so jobs can be held queued or running. */
export async function heldUpstream (
  t: Teardown, body: unknown = LEGACY_OK
): Promise<{ url: string, calls: StubCall[], release: () => void, hold: () => void }> {
  const held: Array<() => void> = []
  let open = false
  const upstream = await stubUpstream(t, (_call, response) => {
    const answer = (): void => { answerJson(response, body) }
    if (open) answer()
    else held.push(answer)
  })
  return {
    ...upstream,
    release: () => { open = true; held.splice(0).forEach((answer) => { answer() }) },
    hold: () => { open = false }
  }
}

/** A JSON answer from a stub upstream. */
export function answerJson (response: ServerResponse, body: unknown, status = 200, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(typeof body === 'string' ? body : JSON.stringify(body))
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

export interface RunningProcess {
  /** The process id, to read its /proc entries. */
  pid: number
  exited: Promise<number | null>
  /** Its exit code once it has exited (null while it runs, or when a signal ended it). */
  exitCode: () => number | null
  /** Everything it wrote to stdout and stderr so far. */
  output: () => string
  kill: (signal: NodeJS.Signals) => void
  /** Resolves once the output matches; fails after `timeoutMs` (20 s), or if the process exits first. */
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<void>
}

/**
 * Runs an entry point on a free port (`PORT`, or `portVariable`) until `ready` shows in its output. A port found free
 * can be taken before the process binds it (an outgoing connection of another test gets it as its local port): a
 * process that exits saying its port is in use is started again on another, up to four times.
 */
export async function runOnFreePort (
  t: Teardown, script: string, env: Record<string, string>, ready: RegExp,
  options: { portVariable?: string, timeoutMs?: number } = {}
): Promise<{ process: RunningProcess, port: number, url: string }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const started = runProcess(t, script, { ...env, [options.portVariable ?? 'PORT']: String(port) })
    try {
      await started.waitFor(ready, options.timeoutMs)
      return { process: started, port, url: `http://127.0.0.1:${port}` }
    } catch (error) {
      if (attempt === 4 || started.exitCode() === null || !/EADDRINUSE|already in use/.test(started.output())) throw error
    }
  }
}

/**
 * Runs one of the project's entry points (src/server.ts, emulator/server.ts)
 * as a real process with exactly `env` (and PATH), killed at the end of the test.
 */
export function runProcess (t: Teardown, script: string, env: Record<string, string>): RunningProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, script)], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { child.kill('SIGKILL') })
  let output = ''
  const listeners = new Set<() => void>()
  const collect = (chunk: Buffer): void => { output += String(chunk); listeners.forEach((listener) => listener()) }
  child.stdout.on('data', collect)
  child.stderr.on('data', collect)
  // 'close', not 'exit': only then has all the process wrote been read (a refusal's last line among it).
  let closed = false
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => {
    closed = true
    resolve(code)
    listeners.forEach((listener) => listener())
  }))
  return {
    pid: child.pid!,
    exited,
    exitCode: () => child.exitCode,
    output: () => output,
    kill: (signal) => child.kill(signal),
    waitFor: async (pattern, timeoutMs = 20_000) => await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`timed out waiting for ${String(pattern)}; output:\n${output}`)), timeoutMs)
      const finish = (error?: Error): void => {
        clearTimeout(timer)
        listeners.delete(check)
        if (error !== undefined) reject(error)
        else resolve()
      }
      const check = (): void => {
        if (pattern.test(output)) finish()
        else if (closed) finish(new Error(`exited (${child.exitCode}) before ${String(pattern)}; output:\n${output}`))
      }
      listeners.add(check)
      check()
    })
  }
}
