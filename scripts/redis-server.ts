/**
 * Starts a throwaway redis-server on a free loopback port: no persistence,
 * gone with the process. Used by the test command and by tests that stop and
 * restart Redis on purpose.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import { freePort } from './free-port.js'

export const REDIS_INSTALL_HINT =
  'redis-server was not found on PATH, and REDIS_URL is not set. The Redis tests need a real Redis server.\n' +
  'Install one (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis),\n' +
  'or point REDIS_URL at a Redis you can use for tests (it is written to under face-fusion-bff:* keys).'

export function redisServerAvailable (): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

async function answersPing (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.setTimeout(300)
    socket.once('data', (data) => { socket.destroy(); resolve(String(data).startsWith('+PONG')) })
    socket.once('error', () => resolve(false))
    socket.once('timeout', () => { socket.destroy(); resolve(false) })
    socket.once('connect', () => socket.write('PING\r\n'))
  })
}

export interface RedisServer {
  port: number
  url: string
  process: ChildProcess
  stop: () => Promise<void>
}

/** Starts redis-server on `port` (a free one by default) and waits until it answers PING. */
export async function startRedisServer (port?: number): Promise<RedisServer> {
  if (!redisServerAvailable()) throw new Error(REDIS_INSTALL_HINT)
  const chosen = port ?? await freePort()
  const child = spawn('redis-server', [
    '--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning'
  ], { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const deadline = Date.now() + 10_000
  while (!(await answersPing(chosen))) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`redis-server did not start on port ${chosen}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return {
    port: chosen,
    url: `redis://127.0.0.1:${chosen}`,
    process: child,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGKILL')
      await exited
    }
  }
}
