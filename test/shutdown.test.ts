import t from 'tap'
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '../scripts/redis-server.js'
import { fixture, fuseForm, sharedRedisUrl, redisPrefix } from './helper.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

t.test('SIGTERM with fusions in flight: every one completes, then the process exits 0', async (t) => {
  // An upstream of the test's own that takes its time, so requests are surely in flight at SIGTERM.
  let received = 0
  const upstream = createServer((request, response) => {
    request.resume()
    request.on('end', () => {
      received++
      setTimeout(() => {
        response.writeHead(200, { 'content-type': 'application/json' })
        response.end('{"ret":"0","img_url":"https://example.invalid/fused.jpg"}')
      }, 1_500)
    })
  })
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { upstream.closeAllConnections(); upstream.close() })
  const upstreamPort = (upstream.address() as { port: number }).port

  const port = await freePort()
  const server = spawn(process.execPath, ['--import', 'tsx', join(root, 'src', 'server.ts')], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      TENCENT_LEGACY_URL: `http://127.0.0.1:${upstreamPort}/fuseapi/face`,
      REDIS_URL: sharedRedisUrl(),
      REDIS_KEY_PREFIX: redisPrefix(),
      SHUTDOWN_GRACE_MS: '10000'
    },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  server.stdout.on('data', (chunk: Buffer) => { output += String(chunk) })
  server.stderr.on('data', (chunk: Buffer) => { output += String(chunk) })
  const exited = new Promise<number | null>((resolve) => server.on('exit', resolve))
  t.teardown(() => server.kill('SIGKILL'))
  const started = Date.now()
  while (!output.includes('Server listening')) {
    if (Date.now() - started > 20_000) throw new Error(`server did not start:\n${output}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }

  const url = `http://127.0.0.1:${port}`
  const photo = fixture('orientation-1.jpg')
  const inFlight = [0, 1, 2, 3].map(async () => await fuseForm(url, photo))
  while (received < 4) await new Promise((resolve) => setTimeout(resolve, 20))
  server.kill('SIGTERM')

  const replies = await Promise.all(inFlight)
  t.same(replies.map((reply) => reply.status), [200, 200, 200, 200], 'every in-flight fusion completed')
  for (const reply of replies) t.equal(reply.json().imageUrl, 'https://example.invalid/fused.jpg')
  t.equal(await exited, 0, 'exit code 0')
  t.match(output, /closing: finishing in-flight requests/)
  t.match(output, /"msg":"closed"/)
})
