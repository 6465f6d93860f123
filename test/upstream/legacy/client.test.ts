import t, { type Test } from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { closedPort } from '../../../scripts/free-port.js'
import { stubUpstream, TEST_TRANSPORT } from '../../helper.js'
import { EMULATOR_ACCOUNT } from '../../../emulator/shared/accounts.js'
import { verifyLegacySignature } from '../../../emulator/legacy/verify-signature.js'
import { createLegacyClient, type LegacyClientOptions } from '../../../src/upstream/legacy/client.js'
import type { FusionProvider } from '../../../src/upstream/provider.js'

type Handler = (request: IncomingMessage, response: ServerResponse, body: Buffer) => void

/** A small upstream of the test's own, misbehaving as told. */
async function upstream (t: Test, handler: Handler): Promise<string> {
  return (await stubUpstream(t, ({ request, body }, response) => handler(request, response, body))).url
}

function client (t: Test, url: string, overrides: Partial<LegacyClientOptions> = {}): FusionProvider {
  const provider = createLegacyClient({
    url,
    mode: 'tencent',
    credentials: { ...EMULATOR_ACCOUNT.credentials },
    signatureTtlSeconds: 300,
    ...TEST_TRANSPORT,
    ...overrides
  })
  t.teardown(async () => await provider.close())
  return provider
}

const photo = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4])
const call = { projectId: '100307', modelId: 'qc_100307_152854_1', image: photo, resultType: 'url' as const }

const json = (status: number, payload: unknown, headers: Record<string, string> = {}): Handler => (_request, response) => {
  response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(payload))
}

t.test('the request it builds: signed, JSON, photo as plain base64', async (t) => {
  let seen: { headers: IncomingMessage['headers'], body: Record<string, unknown>, method?: string } | undefined
  const url = await upstream(t, (request, response, body) => {
    seen = { headers: request.headers, body: JSON.parse(body.toString()), method: request.method }
    json(200, { ret: '0', img_url: 'https://example.invalid/result.jpg' })(request, response, body)
  })
  const result = await client(t, url).fuse(call)
  t.same(result, { resultType: 'url', imageUrl: 'https://example.invalid/result.jpg' })
  t.equal(seen?.method, 'POST')
  t.equal(seen?.headers['content-type'], 'application/json')
  const { credentials } = EMULATOR_ACCOUNT
  t.match(verifyLegacySignature(seen?.headers.authorization, () => credentials.secretKey, Math.floor(Date.now() / 1000)), { ok: true, appId: credentials.appId })
  t.same(seen?.body, {
    appid: credentials.appId,
    uin: credentials.uin,
    project_id: '100307',
    model_id: 'qc_100307_152854_1',
    rsp_img_type: 'url',
    img_data: photo.toString('base64')
  })
})

t.test('answers that cannot be read are 502 FUSION_UPSTREAM_BAD_RESPONSE', async (t) => {
  const cases: Array<[string, Handler]> = [
    ['an HTML error page', (_q, response) => { response.writeHead(502, { 'content-type': 'text/html' }).end('<html><body>Bad Gateway</body></html>') }],
    ['invalid JSON', (_q, response) => { response.writeHead(200, { 'content-type': 'application/json' }).end('{"ret":') }],
    ['JSON without ret', json(200, { img_url: 'https://x.invalid/a.jpg' })],
    ['a non-numeric ret', json(200, { ret: 'ok' })],
    ['success without img_url', json(200, { ret: 0 })],
    ['success whose img_url is not a URL', json(200, { ret: '0', img_url: 'javascript:alert(1)' })],
    ['an answer over the size cap', json(200, { ret: 0, img_url: `https://x.invalid/${'a'.repeat(100_000)}` })]
  ]
  for (const [name, handler] of cases) {
    const url = await upstream(t, handler)
    await t.rejects(client(t, url).fuse(call), { code: 'FUSION_UPSTREAM_BAD_RESPONSE', statusCode: 502 }, name)
  }
})

t.test('base64 results: img_base64, or img_url holding base64; never a URL', async (t) => {
  const base64 = Buffer.from('fused').toString('base64')
  const inBase64 = await upstream(t, json(200, { ret: 0, img_base64: base64 }))
  t.same(await client(t, inBase64).fuse({ ...call, resultType: 'base64' }), { resultType: 'base64', imageBase64: base64 })
  const inUrl = await upstream(t, json(200, { ret: '0', img_url: base64 }))
  t.same(await client(t, inUrl).fuse({ ...call, resultType: 'base64' }), { resultType: 'base64', imageBase64: base64 })
  const urlInstead = await upstream(t, json(200, { ret: '0', img_url: 'https://x.invalid/a.jpg' }))
  await t.rejects(client(t, urlInstead).fuse({ ...call, resultType: 'base64' }), { code: 'FUSION_UPSTREAM_BAD_RESPONSE' })
})

t.test('HTTP-level throttling and size refusals without a ret', async (t) => {
  const throttled = await upstream(t, (_q, response) => { response.writeHead(429, { 'retry-after': '7' }).end() })
  await t.rejects(client(t, throttled).fuse(call), { code: 'FUSION_RATE_LIMITED', statusCode: 429, retryAfterSeconds: 7 })
  const tooLarge = await upstream(t, (_q, response) => { response.writeHead(413).end('Request Entity Too Large') })
  await t.rejects(client(t, tooLarge).fuse(call), { code: 'FUSION_IMAGE_TOO_LARGE', statusCode: 413 })
  const withRet = await upstream(t, json(200, { ret: -2013 }, { 'retry-after': '3' }))
  await t.rejects(client(t, withRet).fuse(call), { code: 'FUSION_RATE_LIMITED', upstreamCode: '-2013', retryAfterSeconds: 3 })
})

t.test('an upstream that never answers is a 504 within the deadline', async (t) => {
  const silent = await upstream(t, () => { /* never answers */ })
  const started = Date.now()
  await t.rejects(client(t, silent, { timeoutMs: 300 }).fuse(call), { code: 'FUSION_UPSTREAM_TIMEOUT', statusCode: 504 })
  t.ok(Date.now() - started < 2_000, 'gave up at the deadline')

  const slowBody = await upstream(t, (_q, response) => {
    response.writeHead(200, { 'content-type': 'application/json' })
    response.write('{"ret":')
  })
  await t.rejects(client(t, slowBody, { timeoutMs: 300 }).fuse(call), { code: 'FUSION_UPSTREAM_TIMEOUT' }, 'a body that stalls')
})

t.test('an unreachable upstream is a 502', async (t) => {
  // A port nothing listens on.
  const url = `http://127.0.0.1:${await closedPort()}/fuseapi/face`
  await t.rejects(client(t, url).fuse(call), { code: 'FUSION_UPSTREAM_UNREACHABLE', statusCode: 502 })

  const reset = await upstream(t, (request) => { request.socket.destroy() })
  await t.rejects(client(t, reset).fuse(call), { code: 'FUSION_UPSTREAM_UNREACHABLE' }, 'a connection reset')
})

t.test('a client that goes away cancels the upstream call', async (t) => {
  let aborted = false
  const url = await upstream(t, (request) => { request.socket.on('close', () => { aborted = true }) })
  const controller = new AbortController()
  const pending = client(t, url).fuse({ ...call, signal: controller.signal })
  setTimeout(() => controller.abort(), 100)
  await t.rejects(pending, { code: 'FUSION_CLIENT_CLOSED_REQUEST' })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.ok(aborted, 'the upstream connection was closed')
})

t.test('plain http:// and any host work; each client calls its own origin', async (t) => {
  const first = await upstream(t, json(200, { ret: 0, img_url: 'http://a.invalid/1.jpg' }))
  const second = await upstream(t, json(200, { ret: 0, img_url: 'http://b.invalid/2.jpg' }))
  t.match(await client(t, first).fuse(call), { imageUrl: 'http://a.invalid/1.jpg' })
  const other = client(t, second)
  t.match(await other.fuse(call), { imageUrl: 'http://b.invalid/2.jpg' })
  t.match(other.describe(), { provider: 'legacy', mode: 'tencent', origin: new URL(second).origin })
})
