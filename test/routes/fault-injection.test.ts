import t, { type Test } from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { request } from 'undici'
import { closedPort } from '../../scripts/free-port.js'
import { UPSTREAM_PROVIDERS, fixture, fuseForm, rawFuseUpload, startService, stubEnv, stubUpstream, type UpstreamProvider } from '../helper.js'

/**
 * Faults of the upstream and of the client, over real HTTP through the whole
 * service: each case asserts the answer, the retries the service made (read
 * from /metrics), that nothing hung, and that the service still serves after.
 */
type Behaviour = (request: IncomingMessage, response: ServerResponse) => void

async function misbehavingUpstream (t: Test, behaviour: Behaviour, onConnection?: (socket: Socket) => void): Promise<{ url: string, calls: () => number }> {
  const upstream = await stubUpstream(t, ({ request }, response) => behaviour(request, response), onConnection !== undefined ? { onConnection } : {})
  return { url: upstream.url, calls: () => upstream.calls.length }
}

/** The service, pointed at `upstreamUrl` through the given API. */
async function serviceFor (t: Test, provider: UpstreamProvider, upstreamUrl: string, env: Record<string, string> = {}): Promise<{ url: string }> {
  return await startService(t, { ...serviceEnv, ...stubEnv(provider, upstreamUrl), ...env })
}

/** Each API's way of saying "a transient fault, try again", and of naming a result URL. */
const TRANSIENT_FAULT: Record<UpstreamProvider, string> = {
  legacy: '{"ret":"-1003"}',
  v3: '{"Response":{"Error":{"Code":"FailedOperation.InnerError","Message":"内部错误"},"RequestId":"r-1"}}'
}
const successWithUrl = (provider: UpstreamProvider, imageUrl: string): string => provider === 'v3'
  ? JSON.stringify({ Response: { FusedImage: imageUrl, RequestId: 'r-2' } })
  : JSON.stringify({ ret: '0', img_url: imageUrl })

async function retriesMade (serviceUrl: string): Promise<number> {
  const text = await (await request(`${serviceUrl}/metrics`)).body.text()
  return text.split('\n').filter((line) => line.startsWith('fusion_upstream_retries_total{')).reduce((sum, line) => sum + Number(line.split(' ').pop()), 0)
}

const photo = fixture('orientation-1.jpg')
const serviceEnv = { UPSTREAM_TIMEOUT_MS: '600', UPSTREAM_RETRIES: '2', UPSTREAM_RETRY_DELAY_MS: '10', UPSTREAM_MAX_RESPONSE_BYTES: '1048576' }

const cases = (provider: UpstreamProvider): Array<{ name: string, behaviour?: Behaviour, onConnection?: (socket: Socket) => void, status: number, code: string, retries: number }> => [
  { name: 'upstream timeout', behaviour: () => { /* never answers */ }, status: 504, code: 'FUSION_UPSTREAM_TIMEOUT', retries: 0 },
  { name: 'connection reset before the request was written', onConnection: (socket) => { socket.destroy() }, status: 502, code: 'FUSION_UPSTREAM_UNREACHABLE', retries: 0 },
  { name: 'connection reset after the request was written', behaviour: (incoming) => { incoming.socket.destroy() }, status: 502, code: 'FUSION_UPSTREAM_UNREACHABLE', retries: 0 },
  { name: 'a slow body', behaviour: (_q, response) => { response.writeHead(200, { 'content-type': 'application/json' }); response.write('{"ret":"0",') }, status: 504, code: 'FUSION_UPSTREAM_TIMEOUT', retries: 0 },
  { name: 'invalid JSON', behaviour: (_q, response) => { response.writeHead(200, { 'content-type': 'application/json' }).end('{"ret":"0","img_url":') }, status: 502, code: 'FUSION_UPSTREAM_BAD_RESPONSE', retries: 0 },
  { name: 'an HTML error page', behaviour: (_q, response) => { response.writeHead(502, { 'content-type': 'text/html' }).end('<html><body><h1>502 Bad Gateway</h1></body></html>') }, status: 502, code: 'FUSION_UPSTREAM_BAD_RESPONSE', retries: 0 },
  { name: 'a 500', behaviour: (_q, response) => { response.writeHead(500).end() }, status: 502, code: 'FUSION_UPSTREAM_BAD_RESPONSE', retries: 0 },
  { name: 'a body larger than any real result', behaviour: (_q, response) => { response.writeHead(200, { 'content-type': 'application/json' }).end(`{"ret":0,"img_base64":"${'A'.repeat(4 * 1024 * 1024)}"}`) }, status: 502, code: 'FUSION_UPSTREAM_BAD_RESPONSE', retries: 0 },
  { name: 'a transient upstream fault, every time', behaviour: (_q, response) => { response.writeHead(200, { 'content-type': 'application/json' }).end(TRANSIENT_FAULT[provider]) }, status: 502, code: 'FUSION_UPSTREAM_FAILED', retries: 2 }
]

for (const provider of UPSTREAM_PROVIDERS) for (const fault of cases(provider)) {
  t.test(`${provider}: ${fault.name}`, async (t) => {
    const upstream = await misbehavingUpstream(t, fault.behaviour ?? (() => {}), fault.onConnection)
    const { url } = await serviceFor(t, provider, upstream.url)
    const started = Date.now()
    const reply = await fuseForm(url, photo)
    t.equal(reply.status, fault.status)
    t.match(reply.json(), { statusCode: fault.status, code: fault.code, requestId: String })
    t.ok(Date.now() - started < 5_000, `answered in ${Date.now() - started} ms`)
    t.equal(await retriesMade(url), fault.retries, `${fault.retries} retries`)
    const health = await request(`${url}/healthz`)
    t.equal(health.statusCode, 200, 'the service still serves')
    await health.body.dump()
  })
}

for (const provider of UPSTREAM_PROVIDERS) t.test(`${provider}: an upstream that refuses connections: retried, then 502`, async (t) => {
  const { url } = await serviceFor(t, provider, `http://127.0.0.1:${await closedPort()}/fuseapi/face`)
  const reply = await fuseForm(url, photo)
  t.match({ status: reply.status, code: reply.json().code }, { status: 502, code: 'FUSION_UPSTREAM_UNREACHABLE' })
  t.equal(await retriesMade(url), 2, 'nothing was sent, so both retries were made')
})

for (const provider of UPSTREAM_PROVIDERS) t.test(`${provider}: a client that leaves mid-upstream-call cancels the call`, async (t) => {
  let upstreamClosed = false
  let received = false
  const upstream = await misbehavingUpstream(t, (incoming) => {
    received = true
    incoming.socket.on('close', () => { upstreamClosed = true })
  })
  const { url } = await serviceFor(t, provider, upstream.url, { UPSTREAM_TIMEOUT_MS: '20000' })
  const socket = rawFuseUpload(url, photo)
  const deadline = Date.now() + 5_000
  while (!received && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.ok(received, 'the upstream call was under way')
  socket.destroy()
  while (!upstreamClosed && Date.now() < deadline + 2_000) await new Promise((resolve) => setTimeout(resolve, 20))
  t.ok(upstreamClosed, 'the upstream connection was closed: the call was cancelled')
  t.equal(upstream.calls(), 1)
  t.equal(await retriesMade(url), 0)
  const text = await (await request(`${url}/metrics`)).body.text()
  t.match(text, /^fusion_http_requests_in_flight 1$/m, 'the abandoned request left the in-flight gauge (only the scrape is in flight)')
  t.match(text, /^fusion_http_requests_total\{route="\/fuse",method="POST",status="499"\} 1$/m, 'and is counted as 499')
})

for (const provider of UPSTREAM_PROVIDERS) t.test(`${provider}: a result URL with characters outside ASCII is passed through as given`, async (t) => {
  const upstream = await misbehavingUpstream(t, (_q, response) => {
    response.writeHead(200, { 'content-type': 'application/json' }).end(successWithUrl(provider, 'https://cos.example/融合 结果/a.jpg'))
  })
  const { url } = await serviceFor(t, provider, upstream.url)
  const reply = await fuseForm(url, photo)
  t.equal(reply.status, 200)
  t.equal(reply.json().imageUrl, 'https://cos.example/融合 结果/a.jpg')
})
