/**
 * Runs a command with REDIS_URL set: the one in the environment, or a
 * throwaway redis-server started here on a free port and stopped afterwards.
 * Without either, it fails and says how to install Redis: the Redis tests are
 * never skipped silently.
 *
 *   tsx scripts/with-redis.ts tap
 */
import { spawn } from 'node:child_process'
import { REDIS_INSTALL_HINT, redisServerAvailable, startRedisServer, type RedisServer } from './redis-server.js'

const [command, ...args] = process.argv.slice(2)
if (command === undefined) {
  process.stderr.write('usage: with-redis <command> [args...]\n')
  process.exit(2)
}

let server: RedisServer | undefined
let redisUrl = process.env.REDIS_URL
if (redisUrl === undefined || redisUrl === '') {
  if (!redisServerAvailable()) {
    process.stderr.write(`\n${REDIS_INSTALL_HINT}\n\n`)
    process.exit(1)
  }
  server = await startRedisServer()
  redisUrl = server.url
  process.stdout.write(`# throwaway redis-server on ${redisUrl}\n`)
}

const child = spawn(command, args, { stdio: 'inherit', env: { ...process.env, REDIS_URL: redisUrl } })
const code = await new Promise<number>((resolve) => child.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal !== null ? 1 : 0))))
await server?.stop()
process.exit(code)
