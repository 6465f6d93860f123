import { createServer, type AddressInfo } from 'node:net'
import t from 'tap'
import { request } from 'undici'
import { freePort } from '../scripts/free-port.js'
import { fixture, fuseForm, runOnFreePort, runProcess } from './helper.js'

t.test('a bad configuration stops the process with a message naming the variable', async (t) => {
  const secret = 'the secret with spaces'
  const stopped = runProcess(t, 'src/server.ts', { TENCENT_APPID: '1', TENCENT_UIN: '2', TENCENT_SECRET_ID: 'id', TENCENT_SECRET_KEY: secret, PORT: '99999' })
  t.equal(await stopped.exited, 1)
  t.match(stopped.output(), /Invalid configuration/)
  t.match(stopped.output(), /PORT: must be <= 65535/)
  t.match(stopped.output(), /TENCENT_SECRET_KEY: must match pattern/)
  t.notOk(stopped.output().includes(secret), 'the secret is not echoed')
  const lines = stopped.output().trim().split('\n')
  t.equal(lines.length, 1)
  t.match(JSON.parse(lines[0]!), { level: 60, problems: ['PORT: must be <= 65535', /^TENCENT_SECRET_KEY: must match pattern/] },
    'one fatal JSON line, like every line the process writes')
})

t.test('without credentials it starts on the emulator, says so loudly, and stops cleanly on SIGTERM', async (t) => {
  const { process: server, port } = await runOnFreePort(t, 'src/server.ts', { HOST: '127.0.0.1' }, /EMULATOR MODE/)
  t.match(server.output(), /"level":40/, 'a warning, not an info line')

  const warning = server.output().split('\n').find((line) => line.includes('EMULATOR MODE'))!
  t.match(warning, /TENCENT_APPID, TENCENT_UIN, TENCENT_SECRET_ID, TENCENT_SECRET_KEY for the legacy API/, 'the legacy API\'s four')

  const health = await request(`http://127.0.0.1:${port}/healthz`)
  t.equal(health.statusCode, 200)
  const body = await health.body.json() as { upstream: { origin: string } }
  t.match(body, { status: 'ok', upstream: { provider: 'legacy', mode: 'emulator', origin: /^http:\/\/127\.0\.0\.1:\d+$/ }, warning: /emulator/ })
  t.not(body.upstream.origin, `http://127.0.0.1:${port}`, 'the emulator listens on a port of its own')

  server.kill('SIGTERM')
  t.equal(await server.exited, 0)
})

t.test('NODE_ENV=production without credentials refuses to start, unless the emulator is asked for', async (t) => {
  const refused = runProcess(t, 'src/server.ts', { PORT: String(await freePort()), HOST: '127.0.0.1', NODE_ENV: 'production' })
  t.equal(await refused.exited, 1)
  t.match(refused.output(), /NODE_ENV=production without Tencent credentials/)
  t.match(refused.output(), /EMULATOR_IN_PRODUCTION=true/, 'it says how to opt in')

  const { process: staging, port } = await runOnFreePort(t, 'src/server.ts',
    { HOST: '127.0.0.1', NODE_ENV: 'production', EMULATOR_IN_PRODUCTION: 'true' }, /EMULATOR MODE/)
  // The fault-injection ids are off: a visitor cannot make the upstream fail at will.
  const reply = await fuseForm(`http://127.0.0.1:${port}`, fixture('face.jpg'), { model_id: 'emulator_ret_-5' })
  t.equal(reply.status, 404)
  t.match(reply.json(), { code: 'FUSION_TEMPLATE_NOT_FOUND' })
  staging.kill('SIGTERM')
  t.equal(await staging.exited, 0)
})

t.test('with credentials, the startup line names the configured API', async (t) => {
  const credentials = { TENCENT_SECRET_ID: 'operator-secret-id', TENCENT_SECRET_KEY: 'operator-secret-key' }
  const { process: v3 } = await runOnFreePort(t, 'src/server.ts', { HOST: '127.0.0.1', FUSION_PROVIDER: 'v3', ...credentials },
    /upstream: Tencent Cloud face fusion API 3\.0 \(FuseFace, version 2022-09-27\)/)
  v3.kill('SIGTERM')
  t.equal(await v3.exited, 0)

  const { process: legacy } = await runOnFreePort(t, 'src/server.ts',
    { HOST: '127.0.0.1', TENCENT_APPID: '1250000001', TENCENT_UIN: '100000000002', ...credentials }, /upstream: Tencent Cloud legacy face fusion/)
  t.notMatch(legacy.output(), /EMULATOR MODE/)
  legacy.kill('SIGTERM')
  t.equal(await legacy.exited, 0)
})

t.test('with API 3.0 the emulator warning names only the variables API 3.0 reads', async (t) => {
  const { process: server } = await runOnFreePort(t, 'src/server.ts', { HOST: '127.0.0.1', FUSION_PROVIDER: 'v3' }, /EMULATOR MODE/)
  const warning = server.output().split('\n').find((line) => line.includes('EMULATOR MODE'))!
  t.match(warning, /TENCENT_SECRET_ID, TENCENT_SECRET_KEY for API 3\.0/)
  t.notMatch(warning, /TENCENT_APPID|TENCENT_UIN/, 'no appid or uin: API 3.0 does not use them')
  server.kill('SIGTERM')
  t.equal(await server.exited, 0)
})

t.test('a port in use stops the process with one line naming PORT, HOST and the address', async (t) => {
  // The port is held by the test itself, so nothing else can take it between the check and the start.
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { holder.close() })
  const { port } = holder.address() as AddressInfo
  const stopped = runProcess(t, 'src/server.ts', { PORT: String(port), HOST: '127.0.0.1' })
  t.equal(await stopped.exited, 1)
  const lines = stopped.output().trim().split('\n')
  t.equal(lines.length, 1, 'one line, no stack')
  const line = JSON.parse(lines[0]!)
  t.match(line, { level: 60, code: 'EADDRINUSE', host: '127.0.0.1', port })
  t.equal(line.msg, `Cannot listen on PORT=${port} HOST=127.0.0.1: 127.0.0.1:${port} is already in use: stop what listens there, or set another PORT`)
  t.notOk('err' in line || 'stack' in line, 'no stack trace')
})
