import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server } from 'node:http'
import { freePort } from '../scripts/free-port.js'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import sharp from 'sharp'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/** PATHS="legacy,fuseface-2022" (each checked), or both. */
export function pathsFromEnv (): UpstreamPath[] {
  const paths = (process.env.PATHS?.split(',').map((path) => path.trim()).filter(Boolean) ?? [...PATHS]) as UpstreamPath[]
  for (const path of paths) if (!PATHS.includes(path)) throw new Error(`PATHS: unknown path ${path} (${PATHS.join(', ')})`)
  return paths
}

/** The allocator settings the container runs with, read from the Dockerfile so the benches cannot drift from it. */
export function containerMallocConf (): string {
  const match = /MALLOC_CONF=(\S+)/.exec(readFileSync(join(root, 'Dockerfile'), 'utf8'))
  if (match === null) throw new Error('Dockerfile: no MALLOC_CONF')
  return match[1]!
}

/** A 12 MP (4000×3000) phone-like JPEG of about 3 MB, made from the corpus photo. */
export async function phonePhoto (): Promise<Buffer> {
  const source = readFileSync(join(root, 'test', 'fixtures', 'images', 'phone-photo-3000x4000.jpg'))
  return await sharp(source).rotate(90).blur(0.7).jpeg({ quality: 85 }).toBuffer()
}

/** The two paths a photo can take upstream: the legacy API, and API 3.0's FuseFace 2022-09-27 (every new campaign's). */
export const PATHS = ['legacy', 'fuseface-2022'] as const
export type UpstreamPath = typeof PATHS[number]

/**
 * An upstream that answers every call at once with a fixed success, the
 * legacy API's or FuseFace's: the benches measure the gateway, not a fusion.
 * Counts the calls and the bytes of their bodies (the photo, in base64 in JSON).
 */
export async function instantUpstream (): Promise<{ env: (path: UpstreamPath) => Record<string, string>, server: Server, received: { calls: number, bytes: number } }> {
  const received = { calls: 0, bytes: 0 }
  const server = createHttpServer((request, response) => {
    request.on('data', (chunk: Buffer) => { received.bytes += chunk.length })
    request.on('end', () => {
      received.calls++
      response.writeHead(200, { 'content-type': 'application/json' })
      response.end(request.url === '/fuseapi/face'
        ? '{"ret":"0","img_url":"http://127.0.0.1/result.jpg"}'
        : '{"Response":{"FusedImage":"http://127.0.0.1/result.jpg","RequestId":"bench"}}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  // Without credentials the service signs with the emulator's key: the stub checks nothing.
  const env = (path: UpstreamPath): Record<string, string> => path === 'legacy'
    ? { FUSION_PROVIDER: 'legacy', TENCENT_LEGACY_URL: `http://127.0.0.1:${port}/fuseapi/face` }
    : { FUSION_PROVIDER: 'v3', FUSION_V3_ACTION: 'FuseFace', FUSION_V3_VERSION: '2022-09-27', TENCENT_V3_URL: `http://127.0.0.1:${port}/` }
  return { env, server, received }
}

const children = new Set<ChildProcess>()
process.once('exit', () => { for (const child of children) child.kill('SIGKILL') })

/**
 * Node's flags as `npm start` (and the image) passes them; NODE_FLAGS="…" replaces them, to compare (NODE_FLAGS= for
 * none).
 */
function startFlags (): string[] {
  if (process.env.NODE_FLAGS !== undefined) return process.env.NODE_FLAGS.split(' ').filter(Boolean)
  const { scripts } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }
  return scripts.start.split(' ').filter((word) => word.startsWith('--'))
}

/** Starts the built service (`npm run build` first) as `npm start` does, and resolves once it listens. */
export async function startBuiltService (env: Record<string, string>, nodeArgs: string[] = []): Promise<{ child: ChildProcess, url: string }> {
  return await startServer(join(root, 'dist', 'src', 'server.js'), env, nodeArgs)
}

/** Starts a server script with the service's flags, its port in PORT, and resolves once its /healthz answers. */
export async function startServer (script: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<{ child: ChildProcess, url: string }> {
  const port = await freePort()
  const child = spawn(process.execPath, [...startFlags(), ...nodeArgs, script], {
    cwd: root,
    // Client limits, the per-client share of image places and the upstream budget off: these benches measure the image
    // path, from one address.
    env: {
      PATH: process.env.PATH ?? '',
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      RATE_LIMIT_MAX: '1000000',
      IMAGE_PLACES_PER_CLIENT: '10000',
      UPSTREAM_QPS: '100000',
      ...env
    },
    stdio: ['ignore', process.env.BENCH_SERVICE_STDOUT === 'inherit' ? 'inherit' : 'ignore', 'inherit']
  })
  // A bench that stops early must not leave services behind.
  children.add(child)
  child.once('exit', () => children.delete(child))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('service did not start')), 20_000)
    const poll = setInterval(() => {
      fetch(`http://127.0.0.1:${port}/healthz`).then((response) => {
        if (response.ok) { clearInterval(poll); clearTimeout(timer); resolve() }
      }, () => {})
    }, 100)
  })
  return { child, url: `http://127.0.0.1:${port}` }
}

export function multipartPhoto (photo: Buffer, fields: Record<string, string> = {}): { body: Buffer, contentType: string } {
  const boundary = '----bench-boundary'
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="project_id"\r\n\r\n100307\r\n` +
    `--${boundary}\r\nContent-Disposition: form-data; name="model_id"\r\n\r\nqc_100307_152854_1\r\n` +
    Object.entries(fields).map(([name, value]) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`).join('') +
    `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="phone.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`)
  return { body: Buffer.concat([head, photo, Buffer.from(`\r\n--${boundary}--\r\n`)]), contentType: `multipart/form-data; boundary=${boundary}` }
}

/** The same photo as a server-side caller sends it: a JSON body with the photo as base64. */
export function jsonPhoto (photo: Buffer): { body: Buffer, contentType: string } {
  const body = JSON.stringify({ project_id: '100307', model_id: 'qc_100307_152854_1', image: photo.toString('base64') })
  return { body: Buffer.from(body), contentType: 'application/json' }
}

export const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

export const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}
