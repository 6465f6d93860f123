import t from 'tap'
import { Writable } from 'node:stream'
import { closedPort } from '../../scripts/free-port.js'
import { answerJson, fixture, fuseForm, startService, stubUpstream } from '../helper.js'

type Script = Parameters<typeof stubUpstream>[1]

const success = { ret: '0', img_url: 'https://example.invalid/fused.jpg' }
const photo = fixture('orientation-1.jpg')

t.test('a transient upstream fault is retried once, and the retry succeeds', async (t) => {
  const upstream = await stubUpstream(t, ({ number }, response) => answerJson(response, number === 1 ? { ret: -5 } : success))
  const { url } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, UPSTREAM_RETRY_DELAY_MS: '10' })
  const reply = await fuseForm(url, photo)
  t.equal(reply.status, 200)
  t.equal(upstream.calls.length, 2)
})

t.test('an expired signature is re-signed and retried', async (t) => {
  const upstream = await stubUpstream(t, ({ number }, response) => answerJson(response, number === 1 ? { ret: '-7' } : success))
  const { url } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, UPSTREAM_RETRY_DELAY_MS: '10' })
  t.equal((await fuseForm(url, photo)).status, 200)
  t.equal(upstream.calls.length, 2)
  t.not(upstream.calls[0]!.request.headers.authorization, upstream.calls[1]!.request.headers.authorization, 'the retry carries a fresh signature')
})

t.test('retries are bounded', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => answerJson(response, { ret: -20005 }))
  const { url } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, UPSTREAM_RETRIES: '2', UPSTREAM_RETRY_DELAY_MS: '10' })
  const reply = await fuseForm(url, photo)
  t.match({ status: reply.status, ...reply.json() }, { status: 502, code: 'FUSION_UPSTREAM_FAILED', upstreamCode: '-20005' })
  t.equal(upstream.calls.length, 3, 'one attempt and two retries')
})

t.test('what may have been billed or fused is never sent twice', async (t) => {
  const cases: Array<[string, Script, number, string]> = [
    ['frequency control', (_c, response) => answerJson(response, { ret: -2012 }), 429, 'FUSION_RATE_LIMITED'],
    ['no face (billed)', (_c, response) => answerJson(response, { ret: 1000 }), 422, 'FUSION_NO_FACE'],
    ['a reset after the request was received', ({ request }) => { request.socket.destroy() }, 502, 'FUSION_UPSTREAM_UNREACHABLE'],
    ['an HTML 500 page', (_c, response) => { response.writeHead(500, { 'content-type': 'text/html' }).end('<h1>500</h1>') }, 502, 'FUSION_UPSTREAM_BAD_RESPONSE'],
    ['no answer in time', () => { /* silent */ }, 504, 'FUSION_UPSTREAM_TIMEOUT']
  ]
  for (const [name, script, status, code] of cases) {
    const upstream = await stubUpstream(t, script)
    const { url } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, UPSTREAM_RETRIES: '2', UPSTREAM_RETRY_DELAY_MS: '10', UPSTREAM_TIMEOUT_MS: '500', UPSTREAM_BACKOFF_MS: '0' })
    const reply = await fuseForm(url, photo)
    t.match({ status: reply.status, code: reply.json().code }, { status, code }, name)
    t.equal(upstream.calls.length, 1, `${name}: one call, no retry`)
  }
})

t.test('a connection that was never made is retried', async (t) => {
  const lines: string[] = []
  const logStream = new Writable({ write (chunk, _encoding, done) { lines.push(String(chunk)); done() } })
  const port = await closedPort()
  const { url } = await startService(t, {
    TENCENT_LEGACY_URL: `http://127.0.0.1:${port}/fuseapi/face`, UPSTREAM_RETRIES: '2', UPSTREAM_RETRY_DELAY_MS: '10', LOG_LEVEL: 'warn'
  }, { logStream })
  const reply = await fuseForm(url, photo)
  t.match({ status: reply.status, code: reply.json().code }, { status: 502, code: 'FUSION_UPSTREAM_UNREACHABLE' })
  t.equal(lines.filter((line) => line.includes('retrying the upstream call')).length, 2, 'two retries were made')
})

t.test('the request deadline bounds the upstream call', async (t) => {
  const upstream = await stubUpstream(t, () => { /* never answers */ })
  const { url } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, REQUEST_DEADLINE_MS: '1000', UPSTREAM_TIMEOUT_MS: '15000' })
  const started = Date.now()
  const reply = await fuseForm(url, photo)
  const elapsed = Date.now() - started
  t.match({ status: reply.status, code: reply.json().code }, { status: 504, code: 'FUSION_UPSTREAM_TIMEOUT' })
  t.ok(elapsed < 2_500, `answered at the deadline, not at UPSTREAM_TIMEOUT_MS (${elapsed} ms)`)
})
