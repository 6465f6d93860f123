import t from 'tap'
import { request } from 'undici'
import { answerJson, fixture, fuseForm, startService, stubUpstream, until } from '../helper.js'

t.test('the breaker opens after a minimum volume of failures, fails fast, and needs several successes to close', async (t) => {
  let healthy = false
  const upstream = await stubUpstream(t, (_call, response) => {
    if (healthy) answerJson(response, { ret: 0, img_url: 'https://example.invalid/ok.jpg' })
    else response.writeHead(500, { 'content-type': 'text/html' }).end('<h1>500 Internal Server Error</h1>')
  })
  const calls = (): number => upstream.calls.length
  const { url } = await startService(t, {
    TENCENT_LEGACY_URL: upstream.url,
    UPSTREAM_RETRIES: '0',
    UPSTREAM_BREAKER_MIN_CALLS: '4',
    UPSTREAM_BREAKER_WINDOW: '4',
    UPSTREAM_BREAKER_FAILURE_RATIO: '0.5',
    UPSTREAM_BREAKER_OPEN_MS: '600',
    UPSTREAM_BREAKER_HALF_OPEN_SUCCESSES: '2'
  })
  const photo = fixture('orientation-1.jpg')
  const readiness = async (): Promise<{ status: number, body: Record<string, unknown> }> => {
    const reply = await request(`${url}/readyz`)
    return { status: reply.statusCode, body: await reply.body.json() as Record<string, unknown> }
  }

  for (let i = 0; i < 3; i++) t.equal((await fuseForm(url, photo)).status, 502, `failure ${i + 1} below the minimum volume: still calling`)
  t.equal((await fuseForm(url, photo)).status, 502)
  t.equal(calls(), 4)

  const fast = await fuseForm(url, photo)
  t.equal(fast.status, 503)
  t.match(fast.json(), { code: 'FUSION_UPSTREAM_UNAVAILABLE' })
  t.ok(Number(fast.headers['retry-after']) >= 1, 'with Retry-After')
  t.equal(calls(), 4, 'the open circuit made no call')
  t.match(await readiness(), { status: 503, body: { status: 'not ready', upstreamBreaker: 'open' } })

  healthy = true
  await new Promise((resolve) => setTimeout(resolve, 700))
  t.equal((await fuseForm(url, photo)).status, 200, 'the first probe after the open period succeeds')
  t.match(await readiness(), { status: 200, body: { upstreamBreaker: 'half-open' } }, 'one success is not enough to close')
  t.equal((await fuseForm(url, photo)).status, 200)
  t.match(await readiness(), { status: 200, body: { upstreamBreaker: 'closed' } }, 'the second closes it')

  // Failing again: open, then a probe that fails re-opens at once.
  healthy = false
  for (let i = 0; i < 4; i++) await fuseForm(url, photo)
  t.match(await readiness(), { body: { upstreamBreaker: 'open' } })
  await new Promise((resolve) => setTimeout(resolve, 700))
  healthy = true
  t.equal((await fuseForm(url, photo)).status, 200, 'probe 1 succeeds')
  healthy = false
  t.equal((await fuseForm(url, photo)).status, 502, 'probe 2 fails')
  t.match(await readiness(), { status: 503, body: { upstreamBreaker: 'open' } }, 'a failure on probation re-opens the circuit')
  const callsBefore = calls()
  t.equal((await fuseForm(url, photo)).status, 503)
  t.equal(calls(), callsBefore, 'and calls fail fast again')
})

t.test('answers about the request itself never open the circuit', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => answerJson(response, { ret: 1000 }))
  const { url } = await startService(t, {
    TENCENT_LEGACY_URL: upstream.url,
    UPSTREAM_BREAKER_MIN_CALLS: '2', UPSTREAM_BREAKER_WINDOW: '2'
  })
  for (let i = 0; i < 5; i++) t.equal((await fuseForm(url, fixture('orientation-1.jpg'))).status, 422, 'no face is the photo\'s problem, not the upstream\'s')
})

t.test('half-open lets one call through at a time; a crowd arriving then fails fast', async (t) => {
  let healthy = false
  let concurrent = 0
  let maxConcurrent = 0
  // The probe is held until the rest of the crowd has been answered: however slowly a busy machine lets them arrive,
  // they all meet the circuit while its one probe is out.
  let releaseProbe = (): void => {}
  const probeHeld = new Promise<void>((resolve) => { releaseProbe = resolve })
  const upstream = await stubUpstream(t, (_call, response) => {
    concurrent++
    maxConcurrent = Math.max(maxConcurrent, concurrent)
    const answer = (): void => {
      concurrent--
      if (healthy) answerJson(response, { ret: 0, img_url: 'https://example.invalid/ok.jpg' })
      else response.writeHead(500).end()
    }
    if (healthy) void probeHeld.then(answer)
    else setTimeout(answer, 100)
  })
  const { url } = await startService(t, {
    TENCENT_LEGACY_URL: upstream.url,
    UPSTREAM_RETRIES: '0', UPSTREAM_BREAKER_MIN_CALLS: '2', UPSTREAM_BREAKER_WINDOW: '2', UPSTREAM_BREAKER_OPEN_MS: '400', UPSTREAM_BREAKER_HALF_OPEN_SUCCESSES: '2'
  })
  const photo = fixture('orientation-1.jpg')
  await fuseForm(url, photo)
  await fuseForm(url, photo)
  healthy = true
  maxConcurrent = 0
  await new Promise((resolve) => setTimeout(resolve, 500))
  const answered: number[] = []
  const crowd = Array.from({ length: 6 }, async () => {
    const status = (await fuseForm(url, photo)).status
    answered.push(status)
    return status
  })
  await until(() => answered.length >= 5)
  t.same(answered, [503, 503, 503, 503, 503], 'the rest failed fast while the probe was out')
  releaseProbe()
  const statuses = await Promise.all(crowd)
  t.equal(maxConcurrent, 1, 'the upstream saw one probe at a time')
  t.equal(statuses.filter((status) => status === 200).length, 1, 'one probe went through')
})
