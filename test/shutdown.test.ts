import t from 'tap'
import { freePort } from '../scripts/free-port.js'
import { answerJson, fixture, fuseForm, sharedRedisUrl, redisPrefix, runProcess, stubUpstream } from './helper.js'

t.test('SIGTERM with fusions in flight: every one completes, then the process exits 0', async (t) => {
  // An upstream of the test's own that takes its time, so requests are surely in flight at SIGTERM.
  const upstream = await stubUpstream(t, (_call, response) => {
    setTimeout(() => answerJson(response, { ret: '0', img_url: 'https://example.invalid/fused.jpg' }), 1_500)
  })

  const port = await freePort()
  const server = runProcess(t, 'src/server.ts', {
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    TENCENT_LEGACY_URL: upstream.url,
    REDIS_URL: sharedRedisUrl(),
    REDIS_KEY_PREFIX: redisPrefix(),
    SHUTDOWN_GRACE_MS: '10000'
  })
  await server.waitFor(/Server listening/)

  const url = `http://127.0.0.1:${port}`
  const photo = fixture('orientation-1.jpg')
  const inFlight = [0, 1, 2, 3].map(async () => await fuseForm(url, photo))
  while (upstream.calls.length < 4) await new Promise((resolve) => setTimeout(resolve, 20))
  server.kill('SIGTERM')

  const replies = await Promise.all(inFlight)
  t.same(replies.map((reply) => reply.status), [200, 200, 200, 200], 'every in-flight fusion completed')
  for (const reply of replies) t.equal(reply.json().imageUrl, 'https://example.invalid/fused.jpg')
  t.equal(await server.exited, 0, 'exit code 0')
  t.match(server.output(), /closing: finishing in-flight requests/)
  t.match(server.output(), /"msg":"closed"/)
})
