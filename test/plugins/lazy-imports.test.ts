import { spawnSync } from 'node:child_process'
import t from 'tap'
import { redisPrefix, sharedRedisUrl } from '../helper.js'

// Credentials, so no emulator is started; the URL is never called.
const BASE = {
  PATH: process.env.PATH ?? '',
  LOG_LEVEL: 'silent',
  TENCENT_APPID: '1250000000',
  TENCENT_UIN: '100000000001',
  TENCENT_SECRET_ID: 'AKIDexample',
  TENCENT_SECRET_KEY: 'example-key',
  TENCENT_LEGACY_URL: 'http://127.0.0.1:9/fuseapi/face'
}

function loadedPackages (env: Record<string, string>): string[] {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'test/plugins/support/loaded-packages.ts'], {
    env: { ...BASE, ...env }, encoding: 'utf8', timeout: 60_000
  })
  if (run.status !== 0) throw new Error(`loaded-packages.ts failed: ${run.stderr}`)
  return JSON.parse(run.stdout) as string[]
}

t.test('without Redis or the demo page, BullMQ, ioredis and @fastify/static are never loaded', async (t) => {
  t.same(loadedPackages({ DEMO_PAGE: 'false' }), [])
})

t.test('each loads when what needs it is configured', async (t) => {
  t.same(loadedPackages({ DEMO_PAGE: 'true' }), ['@fastify/static'], 'the demo page')
  t.same(loadedPackages({ DEMO_PAGE: 'false', REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() }).sort(),
    ['bullmq', 'ioredis'], 'Redis: the shared stores and the job line')
})
