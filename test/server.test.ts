import t from 'tap'
import { request } from 'undici'
import { freePort } from '../scripts/free-port.js'
import { runProcess } from './helper.js'

t.test('a bad configuration stops the process with a message naming the variable', async (t) => {
  const secret = 'the secret with spaces'
  const stopped = runProcess(t, 'src/server.ts', { TENCENT_APPID: '1', TENCENT_UIN: '2', TENCENT_SECRET_ID: 'id', TENCENT_SECRET_KEY: secret, PORT: '99999' })
  t.equal(await stopped.exited, 1)
  t.match(stopped.output(), /Invalid configuration/)
  t.match(stopped.output(), /PORT: must be <= 65535/)
  t.match(stopped.output(), /TENCENT_SECRET_KEY: must match pattern/)
  t.notOk(stopped.output().includes(secret), 'the secret is not echoed')
})

t.test('without credentials it starts on the emulator, says so loudly, and stops cleanly on SIGTERM', async (t) => {
  const port = await freePort()
  const server = runProcess(t, 'src/server.ts', { PORT: String(port), HOST: '127.0.0.1' })
  await server.waitFor(/EMULATOR MODE/)
  t.match(server.output(), /"level":40/, 'a warning, not an info line')

  const health = await request(`http://127.0.0.1:${port}/healthz`)
  t.equal(health.statusCode, 200)
  t.match(await health.body.json(), { status: 'ok', upstream: { provider: 'legacy', mode: 'emulator', origin: `http://127.0.0.1:${port}` }, warning: /emulator/ })

  server.kill('SIGTERM')
  t.equal(await server.exited, 0)
})
