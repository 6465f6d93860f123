import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyInstance } from 'fastify'
import { request } from 'undici'
import type { DestinationStream } from 'pino'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { emulatorPlugin, type EmulatorOptions } from '../src/emulator/plugin.js'
import { REDIS_INSTALL_HINT } from '../scripts/redis-server.js'

interface Teardown { teardown: (fn: () => unknown) => void }

const fixturesDir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'images')

/** The committed image corpus, by file name. */
export function fixture (name: string): Buffer {
  return readFileSync(join(fixturesDir, name))
}

/** Starts the service on a free loopback port. `env` is the whole environment it sees. */
export async function startService (
  t: Teardown,
  env: Record<string, string> = {},
  options: { logStream?: DestinationStream } = {}
): Promise<{ app: FastifyInstance, url: string }> {
  // Client limits off unless a test is about them: tests send many requests from one address.
  const config = loadConfig({ LOG_LEVEL: 'silent', RATE_LIMIT_MAX: '1000000', ...env })
  const app = await buildApp(config, options)
  t.teardown(async () => await app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return { app, url: `http://127.0.0.1:${address.port}` }
}

/** Starts a standalone emulator, for tests that need its knobs. */
export async function startEmulator (t: Teardown, options: EmulatorOptions = {}): Promise<{ app: FastifyInstance, url: string, legacyUrl: string }> {
  const app = Fastify({ logger: false })
  await app.register(emulatorPlugin, options)
  t.teardown(async () => await app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  const url = `http://127.0.0.1:${address.port}`
  return { app, url, legacyUrl: `${url}/fuseapi/face` }
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
