import t from 'tap'
import { connect } from 'node:net'
import { answerJson, fixture, fuseForm, multipart, redisPrefix, runOnFreePort, sharedRedisUrl, stubUpstream, until, type Reply } from '../helper.js'

/**
 * SIGTERM twice, as an impatient orchestrator or operator sends it: the second signal may cut the wait short, but
 * an answer already on its way back from the upstream (a fusion that may be billed) is still delivered, everything
 * else is answered at once rather than dropped, and every line the process writes is JSON.
 */
// Two real processes, each compiled by tsx as it starts: on a saturated machine that alone can take most of a minute.
t.setTimeout(150_000)

t.test('a second SIGTERM: answers from the upstream delivered, the rest refused at once, all logs JSON', async (t) => {
  // The upstream holds its answers until the test lets them go.
  let release = (): void => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  t.teardown(() => release())
  const upstream = await stubUpstream(t, ({ body }, response) => {
    const project = String(JSON.parse(body.toString()).project_id)
    void gate.then(() => answerJson(response, { ret: '0', img_url: `https://example.invalid/${project}.jpg` }))
  })

  // Starting (tsx compiles the sources) is slow on a saturated machine.
  const { process: server, port, url } = await runOnFreePort(t, 'src/server.ts', {
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    TENCENT_LEGACY_URL: upstream.url,
    REDIS_URL: sharedRedisUrl(),
    REDIS_KEY_PREFIX: redisPrefix(),
    SHUTDOWN_GRACE_MS: '30000',
    REQUEST_DEADLINE_MS: '60000',
    UPSTREAM_TIMEOUT_MS: '60000',
    // Activity 100307 gets one call every 20 s: its second fusion waits for the budget; `other` is not limited.
    UPSTREAM_PROJECT_QPS: '100307=0.05',
    UPSTREAM_BUDGET_WAIT_MS: '30000',
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0'
  }, /Server listening/, { timeoutMs: 90_000 })
  const photo = fixture('face.jpg')
  const count = (pattern: RegExp): number => server.output().split('\n').filter((line) => pattern.test(line)).length
  const normalised = (): number => count(/"msg":"image normalised"/)

  // At the upstream: one with an Idempotency-Key (its call runs to its end whatever happens), one without.
  const withKey = fuseForm(url, photo, {}, { 'idempotency-key': 'order-1' })
  const withoutKey = fuseForm(url, photo, { project_id: 'other' })
  await until(() => upstream.calls.length === 2)
  // Waiting for the upstream budget.
  const budgetWait = fuseForm(url, photo)
  await until(() => normalised() === 3)
  // Waiting for the request at work on its key (the same payload: a retry).
  const keyWait = fuseForm(url, photo, {}, { 'idempotency-key': 'order-1' })
  await server.waitFor(/waiting for the request at work on this Idempotency-Key/)
  // An upload still arriving.
  const { body, contentType } = multipart([
    { name: 'project_id', value: 'other' },
    { name: 'model_id', value: 'qc_100307_152854_1' },
    { name: 'image', value: photo, filename: 'me.jpg', contentType: 'image/jpeg' }
  ])
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  const uploadClosed = new Promise((resolve) => socket.on('close', resolve))
  socket.write(`POST /fuse HTTP/1.1\r\nHost: x\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n\r\n`)
  socket.write(body.subarray(0, 200))
  await until(() => count(/"msg":"incoming request"/) === 5)

  server.kill('SIGTERM')
  await server.waitFor(/closing: finishing in-flight requests/)
  server.kill('SIGTERM')
  await server.waitFor(/asked again to stop/)
  const hurried = performance.now()
  socket.write(body.subarray(200))

  const refused = await Promise.all([budgetWait, keyWait])
  await uploadClosed
  const seconds = (performance.now() - hurried) / 1000
  const upload = Buffer.concat(chunks).toString('latin1')
  const answer = (reply: Reply): unknown => ({ status: reply.status, retryAfter: reply.headers['retry-after'], ...reply.json() })
  for (const [name, reply] of [['waiting for the budget', refused[0]], ['waiting on its key', refused[1]]] as const) {
    t.match(answer(reply), { status: 503, retryAfter: '1', code: 'FUSION_SHUTTING_DOWN' }, `${name}: refused with 503`)
  }
  t.match(upload, /^HTTP\/1\.1 503 /, 'the upload still arriving: answered 503 once its body was in, not dropped')
  t.match(upload, /"code":"FUSION_SHUTTING_DOWN"/)
  t.ok(seconds < 5, `all three answered at once (${seconds.toFixed(2)} s), while the upstream still held two answers`)
  t.equal(upstream.calls.length, 2, 'none of them reached the upstream')

  release()
  const [keyed, plain] = await Promise.all([withKey, withoutKey])
  t.match({ status: keyed.status, ...keyed.json() }, { status: 200, imageUrl: 'https://example.invalid/100307.jpg' },
    'the fusion with a key, at the upstream: its answer delivered')
  t.match({ status: plain.status, ...plain.json() }, { status: 200, imageUrl: 'https://example.invalid/other.jpg' },
    'the fusion without a key, at the upstream: its answer delivered')
  t.equal(await server.exited, 0, 'exit 0: every request was answered')

  const lines = server.output().split('\n').filter((line) => line !== '')
  const notJson = lines.filter((line) => { try { JSON.parse(line); return false } catch { return true } })
  t.same(notJson, [], 'every line on stdout and stderr is JSON')
  const messages = lines.map((line) => JSON.parse(line) as { level: number, msg: string })
  t.match(messages.find((line) => line.msg.startsWith('asked again to stop')), { level: 40, signal: 'SIGTERM', inFlight: 5 })
  t.match(messages.find((line) => line.msg === 'closed'), { level: 30, hurried: true }, 'closed, in a hurry')
  t.notOk(messages.some((line) => line.level >= 50), 'nothing at error: the refusals are the shutdown doing its job')
})

t.test('SIGINT, then SIGTERM: the fusion at the upstream completes, its answer closes the connection, the exit is prompt', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => {
    setTimeout(() => answerJson(response, { ret: '0', img_url: 'https://example.invalid/fused.jpg' }), 1_000)
  })
  // Starting (tsx compiles the sources) is slow on a saturated machine.
  const { process: server, port } = await runOnFreePort(t, 'src/server.ts', {
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    TENCENT_LEGACY_URL: upstream.url,
    SHUTDOWN_GRACE_MS: '20000',
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0'
  }, /Server listening/, { timeoutMs: 90_000 })
  // A raw client that keeps its connection open for as long as the server does, as a load balancer's pool would.
  const { body, contentType } = multipart([
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'qc_100307_152854_1' },
    { name: 'image', value: fixture('face.jpg'), filename: 'me.jpg', contentType: 'image/jpeg' }
  ])
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  const chunks: Buffer[] = []
  let answered = 0
  socket.on('data', (chunk: Buffer) => { chunks.push(chunk); answered = performance.now() })
  const closed = new Promise((resolve) => socket.on('close', resolve))
  socket.write(`POST /fuse HTTP/1.1\r\nHost: x\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n\r\n`)
  socket.write(body)
  await until(() => upstream.calls.length === 1)
  server.kill('SIGINT')
  await server.waitFor(/closing: finishing in-flight requests/)
  server.kill('SIGTERM')
  await server.waitFor(/asked again to stop/)
  await closed

  const answer = Buffer.concat(chunks).toString('latin1')
  t.match(answer, /^HTTP\/1\.1 200 [^]*"imageUrl":"https:\/\/example\.invalid\/fused\.jpg"/, 'the fusion at the upstream: 200')
  t.match(answer, /\r\nconnection: close\r\n/i, 'its answer closes the connection')
  t.equal(await server.exited, 0)
  const seconds = (performance.now() - answered) / 1000
  t.ok(seconds < 5, `exited ${seconds.toFixed(2)} s after the last answer, not after the 10 s keep-alive timeout`)
  const notJson = server.output().split('\n').filter((line) => line !== '').filter((line) => { try { JSON.parse(line); return false } catch { return true } })
  t.same(notJson, [], 'every line is JSON')
})
