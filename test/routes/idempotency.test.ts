import t from 'tap'
import { request } from 'undici'
import { UPSTREAM_PROVIDERS, answerJson, captureLogs, fixture, fuseForm, rawFuseUpload, redisPrefix, sharedRedisUrl, startEmulator, startService, stubUpstream, until, upstreamEnv, type Reply } from '../helper.js'

/** Upstream calls that reached the fusion, on either API. */
async function countingEmulator (t: Parameters<typeof startEmulator>[0]): Promise<{ env: (provider: typeof UPSTREAM_PROVIDERS[number]) => Record<string, string>, calls: () => number }> {
  let calls = 0
  const emulator = await startEmulator(t, {
    onAnswer: () => { calls++ },
    onV3Answer: () => { calls++ }
  })
  return { env: (provider) => upstreamEnv(provider, emulator), calls: () => calls }
}

const photo = fixture('face.jpg')
const withKey = (key: string): Record<string, string> => ({ 'idempotency-key': key })
const same = (a: Reply, b: Reply): boolean => a.status === b.status && a.body.equals(b.body) && a.headers['content-type'] === b.headers['content-type']

for (const provider of UPSTREAM_PROVIDERS) {
  t.test(`${provider}: the same key twice: one upstream call, two identical answers`, async (t) => {
    const upstream = await countingEmulator(t)
    const { url } = await startService(t, upstream.env(provider))
    const first = await fuseForm(url, photo, {}, withKey('order-4711-photo-1'))
    const second = await fuseForm(url, photo, {}, withKey('order-4711-photo-1'))
    t.equal(first.status, 200)
    t.ok(same(first, second), 'same status, same body')
    t.equal(upstream.calls(), 1)
    t.notOk(first.headers['idempotent-replayed'])
    t.equal(second.headers['idempotent-replayed'], 'true')
    t.match(first.json(), { imageUrl: /^http/, expiresAt: String })
    const lifetimeDays = (Date.parse(first.json().expiresAt) - Date.now()) / 86_400_000
    t.ok(lifetimeDays > (provider === 'v3' ? 6.9 : 0.9) && lifetimeDays <= (provider === 'v3' ? 7 : 1), `expiresAt is the upstream's URL lifetime (${lifetimeDays.toFixed(2)} days)`)

    const other = await fuseForm(url, photo, {}, withKey('order-4711-photo-2'))
    t.equal(other.status, 200)
    t.equal(upstream.calls(), 2, 'another key is another fusion')
    const none = await fuseForm(url, photo)
    t.equal(none.status, 200)
    t.equal(upstream.calls(), 3, 'no key, no de-duplication')
  })
}

t.test('ten concurrent requests with one key: one upstream call, ten identical answers', async (t) => {
  const upstream = await countingEmulator(t)
  const { url } = await startService(t, upstream.env('legacy'))
  const replies = await Promise.all(Array.from({ length: 10 }, async () => await fuseForm(url, photo, {}, withKey('double-tap'))))
  t.equal(upstream.calls(), 1)
  t.ok(replies.every((reply) => reply.status === 200 && same(reply, replies[0]!)), 'all ten answers are the same')
  t.equal(replies.filter((reply) => reply.headers['idempotent-replayed'] === 'true').length, 9, 'nine were replays')
  const metrics = await (await request(`${url}/metrics`)).body.text()
  t.match(metrics, /^fusion_idempotency_total\{outcome="replayed"\} 9$/m)
  t.match(metrics, /^fusion_idempotency_total\{outcome="stored"\} 1$/m)
})

t.test('the same key with another payload is refused', async (t) => {
  const upstream = await countingEmulator(t)
  const { url } = await startService(t, upstream.env('legacy'))
  t.equal((await fuseForm(url, photo, {}, withKey('k-1'))).status, 200)
  const refusals: Array<[string, Reply]> = [
    ['another photo', await fuseForm(url, fixture('face.webp'), {}, withKey('k-1'))],
    ['another template', await fuseForm(url, photo, { model_id: 'qc_100307_152854_2' }, withKey('k-1'))],
    ['another answer type', await fuseForm(url, photo, { rsp_img_type: 'base64' }, withKey('k-1'))],
    ['the picture instead of JSON', await fuseForm(url, photo, {}, { ...withKey('k-1'), accept: 'image/jpeg' })]
  ]
  for (const [name, reply] of refusals) {
    t.match({ status: reply.status, ...reply.json() }, { status: 422, code: 'FUSION_IDEMPOTENCY_KEY_REUSED' }, name)
  }
  t.equal(upstream.calls(), 1)
})

t.test('a retryable failure is not stored; a final answer is', async (t) => {
  const upstream = await countingEmulator(t)
  const { url } = await startService(t, { ...upstream.env('legacy'), UPSTREAM_RETRIES: '0' })
  const transient = { model_id: 'emulator_ret_-1003' }
  t.equal((await fuseForm(url, photo, transient, withKey('flaky'))).status, 502)
  t.equal((await fuseForm(url, photo, transient, withKey('flaky'))).status, 502)
  t.equal(upstream.calls(), 2, 'the retry reached the upstream again')

  const noFace = await fuseForm(url, fixture('blank.jpg'), {}, withKey('blank-wall'))
  t.match({ status: noFace.status, ...noFace.json() }, { status: 422, code: 'FUSION_NO_FACE' })
  const again = await fuseForm(url, fixture('blank.jpg'), {}, withKey('blank-wall'))
  t.ok(same(noFace, again))
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(upstream.calls(), 3, 'the final answer was replayed, not asked again')

  const damaged = await fuseForm(url, fixture('truncated.jpg'), {}, withKey('damaged'))
  t.equal(damaged.status, 422)
  t.equal((await fuseForm(url, fixture('truncated.jpg'), {}, withKey('damaged'))).headers['idempotent-replayed'], 'true', 'a photo that does not decode is a final answer too')
})

/** A legacy upstream that answers only when the test opens the gate. */
async function gatedUpstream (t: Parameters<typeof stubUpstream>[0]): Promise<{ url: string, calls: () => number, open: () => void }> {
  let open: () => void = () => {}
  const gate = new Promise<void>((resolve) => { open = resolve })
  const upstream = await stubUpstream(t, (_call, response) => {
    void gate.then(() => { answerJson(response, { ret: '0', img_url: 'https://cos.example/fused.jpg' }) })
  })
  return { url: upstream.url, calls: () => upstream.calls.length, open }
}

t.test('a request that arrives while the first is at work waits for it', async (t) => {
  const upstream = await gatedUpstream(t)
  const logs = captureLogs()
  const { url, app } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, LOG_LEVEL: 'info' }, { logStream: logs.stream })
  const first = fuseForm(url, photo, {}, withKey('slow'))
  await until(() => upstream.calls() === 1)
  const second = fuseForm(url, photo, {}, withKey('slow'))
  // The second has read its upload and is waiting on the key, holding no place in the pipeline meanwhile.
  await until(() => logs.text().includes('waiting for the request at work on this Idempotency-Key'))
  t.equal(app.imagePipeline.admitted, 0, 'a waiting request holds no image place')
  t.equal(app.imagePipeline.uploadBuffers.lent, 0, 'nor an upload buffer')
  await new Promise((resolve) => setTimeout(resolve, 150))
  upstream.open()
  const [a, b] = await Promise.all([first, second])
  t.equal(a.status, 200)
  t.ok(same(a, b))
  t.equal(b.headers['idempotent-replayed'], 'true')
  t.equal(upstream.calls(), 1)
})

t.test('a waiting request whose first failed does the work itself: with its own photo and a place taken again', async (t) => {
  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  const upstream = await stubUpstream(t, ({ number }, response) => {
    // The first call fails in a way a retry may cure (not stored), once the second request is waiting.
    if (number === 1) void gate.then(() => { answerJson(response, { ret: -5 }) })
    else answerJson(response, { ret: '0', img_url: 'https://cos.example/fused.jpg' })
  })
  const logs = captureLogs()
  const { url, app } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, UPSTREAM_RETRIES: '0', LOG_LEVEL: 'info' }, { logStream: logs.stream })
  const first = fuseForm(url, photo, {}, withKey('flaky'))
  await until(() => upstream.calls.length === 1)
  const second = fuseForm(url, photo, {}, withKey('flaky'))
  await until(() => logs.text().includes('waiting for the request at work on this Idempotency-Key'))
  // Another upload meanwhile reuses the waiting request's upload buffer: the waiter must have its own copy.
  t.equal((await fuseForm(url, fixture('face-alpha.png'))).status, 200)
  release()
  t.match({ status: (await first).status, code: (await first).json().code }, { status: 502, code: 'FUSION_UPSTREAM_FAILED' })
  const done = await second
  t.equal(done.status, 200, 'the waiter became the owner and fused')
  t.notOk(done.headers['idempotent-replayed'])
  t.equal(upstream.calls.length, 3)
  const imageOf = (call: { body: Buffer }): string => (JSON.parse(call.body.toString('utf8')) as { img_data: string }).img_data
  t.equal(imageOf(upstream.calls[2]!), imageOf(upstream.calls[0]!), 'the waiter sent its own photo, as the first sent it')
  t.equal(app.imagePipeline.admitted, 0, 'and gave its place back')
})

t.test('a wait that outlasts the deadline is 409 with Retry-After, and the retry gets the answer', async (t) => {
  // The first request runs on a replica with a longer deadline than the second's, so it is still at work when the second gives up.
  const upstream = await gatedUpstream(t)
  const shared = { TENCENT_LEGACY_URL: upstream.url, REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix(), UPSTREAM_TIMEOUT_MS: '10000' }
  const patient = await startService(t, { ...shared, REQUEST_DEADLINE_MS: '10000' })
  const hurried = await startService(t, { ...shared, REQUEST_DEADLINE_MS: '1500' })
  const first = fuseForm(patient.url, photo, {}, withKey('stuck'))
  await until(() => upstream.calls() === 1)
  const second = await fuseForm(hurried.url, photo, {}, withKey('stuck'))
  t.match({ status: second.status, ...second.json() }, { status: 409, code: 'FUSION_IDEMPOTENCY_IN_PROGRESS' })
  t.equal(second.headers['retry-after'], '1')
  upstream.open()
  t.equal((await first).status, 200)
  const retry = await fuseForm(hurried.url, photo, {}, withKey('stuck'))
  t.equal(retry.headers['idempotent-replayed'], 'true')
  t.equal(upstream.calls(), 1)
})

t.test('a failure at the deadline is not stored: the key works again', async (t) => {
  const upstream = await gatedUpstream(t)
  const { url } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, REQUEST_DEADLINE_MS: '1000', UPSTREAM_TIMEOUT_MS: '5000' })
  t.equal((await fuseForm(url, photo, {}, withKey('timed-out'))).status, 504)
  upstream.open()
  const again = await fuseForm(url, photo, {}, withKey('timed-out'))
  t.equal(again.status, 200)
  t.notOk(again.headers['idempotent-replayed'])
  t.equal(upstream.calls(), 2)
})

t.test('a client that leaves after the upstream call went out: the call finishes, and the retry is replayed', async (t) => {
  const upstream = await gatedUpstream(t)
  const { url } = await startService(t, { TENCENT_LEGACY_URL: upstream.url })
  const socket = rawFuseUpload(url, photo, { 'Idempotency-Key': 'tunnel' })
  await until(() => upstream.calls() === 1)
  // The subway tunnel: the phone is gone while the upstream works (and bills).
  socket.destroy()
  await new Promise((resolve) => setTimeout(resolve, 100))
  upstream.open()
  await new Promise((resolve) => setTimeout(resolve, 300))
  const retry = await fuseForm(url, photo, {}, withKey('tunnel'))
  t.equal(retry.status, 200)
  t.equal(retry.headers['idempotent-replayed'], 'true', 'the answer the phone never got was stored')
  t.equal(upstream.calls(), 1, 'one fusion, paid once')

  const noKey = rawFuseUpload(url, photo)
  await until(() => upstream.calls() === 2)
  t.pass('without a key the call is made as usual (and cancelled if the client leaves)')
  noKey.destroy()
})

t.test('the picture itself (Accept: image/jpeg) is replayed byte for byte; an answer over the size cap is not kept', async (t) => {
  const upstream = await countingEmulator(t)
  const { url } = await startService(t, { ...upstream.env('legacy'), IDEMPOTENCY_MAX_REPLY_BYTES: '50000' })
  const image = { ...withKey('picture'), accept: 'image/jpeg' }
  const first = await fuseForm(url, photo, { rsp_img_type: 'base64' }, image)
  t.equal(first.headers['content-type'], 'image/jpeg')
  const json = await fuseForm(url, photo, { rsp_img_type: 'base64' }, withKey('picture-json'))
  t.ok(json.body.length > 50_000, 'the base64 answer is over the cap')
  t.equal(upstream.calls(), 2)
  // The picture (about 60 KB) is also over 50 000 bytes: neither is kept.
  const again = await fuseForm(url, photo, { rsp_img_type: 'base64' }, withKey('picture-json'))
  t.notOk(again.headers['idempotent-replayed'])
  t.equal(upstream.calls(), 3, 'an answer over IDEMPOTENCY_MAX_REPLY_BYTES is sent, not kept')

  const roomy = await startService(t, upstream.env('legacy'))
  const picture = await fuseForm(roomy.url, photo, {}, image)
  const replayed = await fuseForm(roomy.url, photo, {}, image)
  t.equal(replayed.headers['idempotent-replayed'], 'true')
  t.equal(replayed.headers['content-type'], 'image/jpeg')
  t.ok(replayed.body.equals(picture.body), 'the same JPEG bytes')
})

t.test('invalid keys are refused before the body is read', async (t) => {
  const { url } = await startService(t)
  for (const [name, key] of [['empty', ''], ['too long', 'k'.repeat(256)], ['not ASCII', 'clé'], ['a space', 'two words']] as const) {
    const reply = await fuseForm(url, photo, {}, withKey(key))
    t.match({ status: reply.status, ...reply.json() }, { status: 400, code: 'FUSION_INVALID_IDEMPOTENCY_KEY' }, name)
  }
  t.equal((await fuseForm(url, photo, {}, withKey('k'.repeat(255)))).status, 200, '255 characters are fine')
  t.equal((await fuseForm(url, photo, {}, withKey('"quoted-as-the-draft-writes-it"'))).status, 200, 'a structured-field string')
})

t.test('replays work across two instances sharing one Redis', async (t) => {
  const upstream = await countingEmulator(t)
  const shared = { ...upstream.env('v3'), REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() }
  const a = await startService(t, shared)
  const b = await startService(t, shared)
  const first = await fuseForm(a.url, photo, {}, withKey('cross-replica'))
  const second = await fuseForm(b.url, photo, {}, withKey('cross-replica'))
  t.equal(first.status, 200)
  t.ok(same(first, second))
  t.equal(second.headers['idempotent-replayed'], 'true')
  t.equal(upstream.calls(), 1)

  const together = await Promise.all(Array.from({ length: 6 }, async (_, i) => await fuseForm((i % 2 === 0 ? a : b).url, photo, {}, withKey('both-at-once'))))
  t.equal(upstream.calls(), 2, 'six concurrent requests on two replicas, one upstream call')
  t.ok(together.every((reply) => same(reply, together[0]!)))

  const mismatch = await fuseForm(b.url, fixture('face.webp'), {}, withKey('cross-replica'))
  t.equal(mismatch.json().code, 'FUSION_IDEMPOTENCY_KEY_REUSED', 'the other replica knows the payload too')
})
