import t from 'tap'
import { request } from 'undici'
import { answerJson, fixture, fuseForm, stubEnv, startService, stubUpstream } from '../helper.js'

const photo = fixture('orientation-1.jpg')
const ok = (fields: Record<string, unknown>): unknown => ({ Response: { ...fields, RequestId: 'req-ok' } })
const v3Error = (code: string): unknown => ({ Response: { Error: { Code: code, Message: code }, RequestId: 'req-err' } })
const V3 = { TENCENT_SECRET_ID: 'AKIDTESTCHAIN0000000000000000000', TENCENT_SECRET_KEY: 'test-chain-key' }

// Spacing is a lower bound: a busy machine only makes the gaps longer.
const MIN_GAP_MS = 400

t.test('a re-signed call takes a budget slot of its own', async (t) => {
  const times: number[] = []
  const upstream = await stubUpstream(t, ({ number }, response) => {
    times.push(performance.now())
    if (number === 1) answerJson(response, v3Error('AuthFailure.SignatureExpire'), 200, { date: new Date(Date.now() + 600_000).toUTCString() })
    else answerJson(response, ok({ FusedImage: 'https://example.invalid/fused.jpg' }))
  })
  const { url } = await startService(t, { ...stubEnv('v3', upstream.url), ...V3, UPSTREAM_QPS: '2', UPSTREAM_BUDGET_WAIT_MS: '5000' })
  const reply = await fuseForm(url, photo, { project_id: 'at_1', model_id: 'mt_1' })
  t.equal(reply.status, 200)
  t.equal(upstream.calls.length, 2, 're-signed once')
  t.ok(times[1]! - times[0]! >= MIN_GAP_MS, `the re-signed call waited for its slot (${Math.round(times[1]! - times[0]!)} ms after the first, at 2 QPS)`)
})

t.test('template listings pass the shared budget', async (t) => {
  const times: number[] = []
  const upstream = await stubUpstream(t, (_call, response) => {
    times.push(performance.now())
    answerJson(response, ok({ MaterialInfos: [], Count: 0 }))
  })
  const { url } = await startService(t, { ...stubEnv('v3', upstream.url), ...V3, UPSTREAM_QPS: '2', UPSTREAM_BUDGET_WAIT_MS: '5000' })
  for (const project of ['at_1', 'at_2']) {
    t.equal((await request(`${url}/templates?project_id=${project}`)).statusCode, 200)
  }
  t.equal(upstream.calls.length, 2)
  t.ok(times[1]! - times[0]! >= MIN_GAP_MS, `the second listing waited for its slot (${Math.round(times[1]! - times[0]!)} ms)`)
})

t.test('a slot whose call could not start in time is given up for a new one', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, ok({ MaterialInfos: [], Count: 0 })) })
  const { url } = await startService(t, { ...stubEnv('v3', upstream.url), ...V3, UPSTREAM_QPS: '2', UPSTREAM_BUDGET_WAIT_MS: '5000' })
  const listings = ['at_1', 'at_2'].map(async (project) => await request(`${url}/templates?project_id=${project}`))
  // The second listing waits about 500 ms for its slot; a starved event loop fires its timer far later.
  await new Promise((resolve) => setTimeout(resolve, 100))
  const blockedUntil = performance.now() + 1_000
  while (performance.now() < blockedUntil) { /* the event loop is starved */ }
  t.same((await Promise.all(listings)).map((reply) => reply.statusCode), [200, 200])
  t.equal(upstream.calls.length, 2, 'each listing was sent once')
  const metrics = await (await request(`${url}/metrics`)).body.text()
  const stale = Number(/^fusion_budget_stale_slots_total (\d+)/m.exec(metrics)?.[1])
  t.ok(stale >= 1, `the late slot was given up for a new one (${stale})`)
})

t.test('template listings pass the breaker: failing listings open it, and an open circuit lists nothing', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => { response.writeHead(500, { 'content-type': 'text/html' }).end('<h1>500</h1>') })
  const { url } = await startService(t, {
    ...stubEnv('v3', upstream.url),
    ...V3,
    UPSTREAM_RETRIES: '0',
    UPSTREAM_BREAKER_MIN_CALLS: '2',
    UPSTREAM_BREAKER_WINDOW: '2',
    UPSTREAM_BREAKER_OPEN_MS: '60000'
  })
  for (const project of ['at_1', 'at_2']) {
    const reply = await request(`${url}/templates?project_id=${project}`)
    t.match({ status: reply.statusCode, ...await reply.body.json() as object }, { status: 502, code: 'FUSION_UPSTREAM_BAD_RESPONSE' })
  }
  const refused = await request(`${url}/templates?project_id=at_3`)
  t.match({ status: refused.statusCode, ...await refused.body.json() as object }, { status: 503, code: 'FUSION_UPSTREAM_UNAVAILABLE' })
  t.equal(upstream.calls.length, 2, 'the open circuit made no call')
  const fusion = await fuseForm(url, photo, { project_id: 'at_1', model_id: 'mt_1' })
  t.equal(fusion.status, 503, 'and fusions are refused by the same breaker')
  t.equal(upstream.calls.length, 2)
})
