import t from 'tap'
import { fixture, fuseForm, redisPrefix, sharedRedisUrl, startEmulator, startService } from '../helper.js'

t.test('when the upstream still says "too frequent", every replica pauses and the client is told for how long', async (t) => {
  let upstreamCalls = 0
  const emulator = await startEmulator(t, { onAnswer: () => { upstreamCalls++ } })
  const env = {
    TENCENT_LEGACY_URL: emulator.legacyUrl,
    REDIS_URL: sharedRedisUrl(),
    REDIS_KEY_PREFIX: redisPrefix(),
    UPSTREAM_BACKOFF_MS: '2500',
    UPSTREAM_BUDGET_WAIT_MS: '500'
  }
  const first = await startService(t, env)
  const second = await startService(t, env)
  const photo = fixture('orientation-1.jpg')

  const throttled = await fuseForm(first.url, photo, { model_id: 'emulator_ret_-2012' })
  t.equal(throttled.status, 429)
  t.match(throttled.json(), { code: 'FUSION_RATE_LIMITED', upstreamCode: '-2012' })
  t.equal(throttled.headers['retry-after'], '3', 'Retry-After covers the 2.5 s pause')
  t.equal(upstreamCalls, 1)

  const paused = await fuseForm(second.url, photo)
  t.equal(paused.status, 503, 'the other replica does not call the upstream during the pause')
  t.equal(paused.json().code, 'FUSION_UPSTREAM_BUSY')
  t.ok(Number(paused.headers['retry-after']) >= 2)
  t.equal(upstreamCalls, 1, 'no call went out')

  await new Promise((resolve) => setTimeout(resolve, 2_600))
  t.equal((await fuseForm(second.url, photo)).status, 200, 'after the pause, calls resume')
})
