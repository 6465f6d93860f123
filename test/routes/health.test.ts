import t from 'tap'
import { request } from 'undici'
import { startEmulator, startService } from '../helper.js'

t.test('/healthz names the upstream in use', async (t) => {
  const emulator = await startEmulator(t)
  const { url } = await startService(t, {
    TENCENT_APPID: '1250000000',
    TENCENT_UIN: '100000000001',
    TENCENT_SECRET_ID: 'operator-id',
    TENCENT_SECRET_KEY: 'operator-key',
    TENCENT_LEGACY_URL: emulator.legacyUrl
  })
  const reply = await request(`${url}/healthz`)
  t.equal(reply.statusCode, 200)
  const body = await reply.body.json() as Record<string, unknown>
  t.same(body, { status: 'ok', upstream: { provider: 'legacy', mode: 'tencent', origin: emulator.url } })
  t.notOk('warning' in body, 'no emulator warning with real credentials')
})

t.test('/healthz in emulator mode warns', async (t) => {
  const { url } = await startService(t)
  const body = await (await request(`${url}/healthz`)).body.json()
  t.match(body, { status: 'ok', upstream: { mode: 'emulator' }, warning: /built-in emulator/ })
})
