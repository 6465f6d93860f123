import t from 'tap'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

async function freePort (): Promise<number> {
  return await new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** Runs src/server.ts as a real process, the way `npm start` runs its build. */
function run (env: Record<string, string>): { exited: Promise<number | null>, output: () => string, kill: (signal: NodeJS.Signals) => void, waitFor: (pattern: RegExp) => Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src', 'server.ts')], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  const listeners: Array<() => void> = []
  const collect = (chunk: Buffer): void => { output += String(chunk); listeners.forEach((listener) => listener()) }
  child.stdout.on('data', collect)
  child.stderr.on('data', collect)
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
  return {
    exited,
    output: () => output,
    kill: (signal) => child.kill(signal),
    waitFor: async (pattern) => await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${String(pattern)}; output:\n${output}`)), 20_000)
      const check = (): void => { if (pattern.test(output)) { clearTimeout(timer); resolve() } }
      listeners.push(check)
      check()
    })
  }
}

t.test('a bad configuration stops the process with a message naming the variable', async (t) => {
  const secret = 'the secret with spaces'
  const stopped = run({ TENCENT_APPID: '1', TENCENT_UIN: '2', TENCENT_SECRET_ID: 'id', TENCENT_SECRET_KEY: secret, PORT: '99999' })
  t.equal(await stopped.exited, 1)
  t.match(stopped.output(), /Invalid configuration/)
  t.match(stopped.output(), /PORT: must be <= 65535/)
  t.match(stopped.output(), /TENCENT_SECRET_KEY: must match pattern/)
  t.notOk(stopped.output().includes(secret), 'the secret is not echoed')
})

t.test('without credentials it starts on the emulator, says so loudly, and stops cleanly on SIGTERM', async (t) => {
  const port = await freePort()
  const server = run({ PORT: String(port), HOST: '127.0.0.1' })
  t.teardown(() => server.kill('SIGKILL'))
  await server.waitFor(/EMULATOR MODE/)
  t.match(server.output(), /"level":40/, 'a warning, not an info line')

  const health = await request(`http://127.0.0.1:${port}/healthz`)
  t.equal(health.statusCode, 200)
  t.match(await health.body.json(), { status: 'ok', upstream: { provider: 'legacy', mode: 'emulator', origin: `http://127.0.0.1:${port}` }, warning: /emulator/ })

  server.kill('SIGTERM')
  t.equal(await server.exited, 0)
})
