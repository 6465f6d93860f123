import t from 'tap'
import { connect, type Socket } from 'node:net'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config/load.js'
import { completeWithStandIn } from '../../emulator/stand-in.js'
import { answerJson, captureLogs, fixture, fuseForm, multipart, post, startService, stubEnv, stubUpstream, until } from '../helper.js'

/**
 * A flood of refusals must not flood the error log: what protects the service, and the client's own mistakes, are
 * logged at info without a stack; an unwell upstream at warn with its code; only our own faults at error.
 */
type Line = Record<string, unknown>

const LEVEL = { info: 30, warn: 40, error: 50 }
const answers = (lines: Line[]): Line[] => lines.filter((line) => line.msg === 'request refused' || line.msg === 'request failed')
const byCode = (lines: Line[], code: string): Line[] => answers(lines).filter((line) => line.code === code)

/** An upload that has sent its headers and part of its body, and holds its image place until destroyed. */
function heldUpload (url: string): Socket {
  const { body, contentType } = multipart([
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'qc_100307_152854_1' },
    { name: 'image', value: fixture('face.jpg'), filename: 'me.jpg', contentType: 'image/jpeg' }
  ])
  const socket = connect(Number(new URL(url).port), '127.0.0.1')
  socket.on('error', () => {})
  socket.write(`POST /fuse HTTP/1.1\r\nHost: x\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n\r\n`)
  socket.write(body.subarray(0, 100))
  return socket
}

t.test('shedding, client limits and bad input under load: info, no stack, nothing at error', async (t) => {
  const logs = captureLogs()
  const { url } = await startService(t, {
    LOG_LEVEL: 'info',
    // One image place: while an upload holds it, every other photo is shed.
    IMAGE_CONCURRENCY: '1',
    IMAGE_QUEUE_LIMIT: '0',
    RATE_LIMIT_MAX: '40',
    RATE_LIMIT_WINDOW_MS: '60000',
    // Shedding on a slow event loop would answer before the image places do (a busy test machine).
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0'
  }, { logStream: logs.stream })

  const bad = await post(`${url}/fuse`, '{"project_id": 1}', { 'content-type': 'application/json' })
  t.equal(bad.status, 400, bad.body.toString())
  const badCode = bad.json().code as string

  const holder = heldUpload(url)
  t.teardown(() => holder.destroy())
  await until(() => logs.lines().some((line) => line.msg === 'incoming request' && (line.req as Line).remotePort === holder.localPort))
  const photo = fixture('face.jpg')
  const shed = await Promise.all(Array.from({ length: 20 }, async () => await fuseForm(url, photo)))
  t.same(new Set(shed.map((reply) => `${reply.status} ${reply.json().code as string}`)), new Set(['503 FUSION_OVERLOADED']),
    'twenty photos shed with 503')
  // Past the client limit (40 a minute): refused before admission, with 429.
  const limited = await Promise.all(Array.from({ length: 25 }, async () => (await fuseForm(url, photo)).status))
  t.ok(limited.includes(429), 'the client limit refused some')
  holder.destroy()

  await until(() => byCode(logs.lines(), 'FUSION_CLIENT_RATE_LIMITED').length > 0)
  const lines = logs.lines()
  const overloaded = byCode(lines, 'FUSION_OVERLOADED')
  t.equal(overloaded.length, 20 + limited.filter((status) => status === 503).length, 'each refusal logged once')
  for (const code of ['FUSION_OVERLOADED', 'FUSION_CLIENT_RATE_LIMITED', badCode]) {
    const refusals = byCode(lines, code)
    t.ok(refusals.length > 0, `${code} was logged`)
    t.ok(refusals.every((line) => line.level === LEVEL.info && line.msg === 'request refused'), `${code} at info`)
    t.ok(refusals.every((line) => line.err === undefined), `${code} without an error object`)
  }
  t.notOk(lines.some((line) => (line.level as number) >= LEVEL.error), 'nothing at error or fatal')
  t.notMatch(logs.text(), /"stack"/, 'no stack anywhere')
})

t.test('process pressure (under-pressure): 503 FUSION_SATURATED at info, without a stack', async (t) => {
  const logs = captureLogs()
  const { url } = await startService(t, {
    LOG_LEVEL: 'info',
    // Any heap is over this: every request is shed once the first sample is taken.
    PRESSURE_MAX_HEAP_USED_BYTES: '1',
    PRESSURE_SAMPLE_INTERVAL_MS: '10'
  }, { logStream: logs.stream })
  let reply = await fuseForm(url, fixture('face.jpg'))
  const deadline = Date.now() + 10_000
  while (reply.status !== 503 && Date.now() < deadline) reply = await fuseForm(url, fixture('face.jpg'))
  t.match({ status: reply.status, ...reply.json() }, { status: 503, code: 'FUSION_SATURATED' })
  await until(() => byCode(logs.lines(), 'FUSION_SATURATED').length > 0)
  const [line] = byCode(logs.lines(), 'FUSION_SATURATED')
  t.match(line, { level: LEVEL.info, msg: 'request refused', statusCode: 503 })
  t.equal(line!.err, undefined)
  t.notMatch(logs.text(), /"stack"/)
})

t.test('an unwell upstream: warn, with our code, its code and the cause, without a stack', async (t) => {
  // The template id picks how the stub misbehaves.
  const upstream = await stubUpstream(t, ({ body }, response) => {
    const model = String(JSON.parse(body.toString()).model_id)
    if (model === 'transient') answerJson(response, { ret: '-1003', msg: 'busy' })
    else if (model === 'html') response.writeHead(502, { 'content-type': 'text/html' }).end('<html>bad gateway</html>')
    else if (model === 'credentials') answerJson(response, { ret: '-20001', msg: 'bad signature' })
    else if (model === 'garbage') response.socket?.end('SSH-2.0-OpenSSH_9.6\r\n\r\n')
    // 'silent': never answers, so the call times out.
  })
  const logs = captureLogs()
  const { url } = await startService(t, {
    ...stubEnv('legacy', upstream.url),
    LOG_LEVEL: 'info',
    TENCENT_APPID: '1250000001',
    TENCENT_UIN: '100000000002',
    TENCENT_SECRET_ID: 'operator-secret-id',
    TENCENT_SECRET_KEY: 'operator-secret-key',
    UPSTREAM_RETRIES: '0',
    UPSTREAM_TIMEOUT_MS: '500',
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0'
  }, { logStream: logs.stream })
  const photo = fixture('face.jpg')
  const cases = [
    { model: 'transient', status: 502, code: 'FUSION_UPSTREAM_FAILED', upstreamCode: '-1003', level: LEVEL.warn },
    { model: 'html', status: 502, code: 'FUSION_UPSTREAM_BAD_RESPONSE', level: LEVEL.warn, cause: /HTTP 502/ },
    // Not HTTP at all: the upstream's fault too, not an internal error.
    { model: 'garbage', status: 502, code: 'FUSION_UPSTREAM_BAD_RESPONSE', level: LEVEL.warn, cause: /HTTP\/1\.1 protocol/ },
    { model: 'silent', status: 504, code: 'FUSION_UPSTREAM_TIMEOUT', level: LEVEL.warn },
    // Our credentials are ours to fix: an error, but still no stack.
    { model: 'credentials', status: 502, code: 'FUSION_UPSTREAM_AUTH_FAILED', upstreamCode: '-20001', level: LEVEL.error }
  ]
  for (const expected of cases) {
    const reply = await fuseForm(url, photo, { model_id: expected.model })
    t.match({ status: reply.status, ...reply.json() }, { status: expected.status, code: expected.code }, expected.model)
    const ofThisRequest = (): Line | undefined => answers(logs.lines()).find((line) => line.reqId === reply.json().requestId)
    await until(() => ofThisRequest() !== undefined)
    const line = ofThisRequest()
    t.match(line, {
      level: expected.level,
      msg: 'request failed',
      statusCode: expected.status,
      ...(expected.upstreamCode !== undefined ? { upstreamCode: expected.upstreamCode } : {}),
      ...(expected.cause !== undefined ? { cause: { message: expected.cause } } : {})
    }, `${expected.code} logged at ${expected.level}`)
    t.equal(line!.err, undefined, `${expected.code} without an error object`)
  }
  t.notMatch(logs.text(), /"stack"/, 'no stack anywhere')
})

t.test('our own fault: error, with the stack', async (t) => {
  const logs = captureLogs()
  const loaded = loadConfig({ LOG_LEVEL: 'info', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0' })
  const { config, close } = await completeWithStandIn(loaded, { faults: true })
  const app = await buildApp(config, { logStream: logs.stream })
  app.get('/broken', async () => { throw new TypeError('a bug of ours') })
  t.teardown(async () => { await app.close(); await close() })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }
  const reply = await fetch(`http://127.0.0.1:${address.port}/broken`)
  t.equal(reply.status, 500)
  t.match(await reply.json(), { code: 'FUSION_INTERNAL_ERROR', message: 'Internal error.' })
  await until(() => byCode(logs.lines(), 'FUSION_INTERNAL_ERROR').length > 0)
  const [line] = byCode(logs.lines(), 'FUSION_INTERNAL_ERROR')
  t.match(line, { level: LEVEL.error, msg: 'request failed', err: { type: 'TypeError', message: 'a bug of ours', stack: /TypeError: a bug of ours/ } })
})
