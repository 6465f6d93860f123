import t from 'tap'
import { connect } from 'node:net'
import { answerJson, fixture, fuseForm, multipart, sharedRedisUrl, redisPrefix, runOnFreePort, stubUpstream } from './helper.js'

t.test('SIGTERM with fusions in flight: every one completes, then the process exits 0', async (t) => {
  // An upstream of the test's own that takes its time, so requests are surely in flight at SIGTERM.
  const upstream = await stubUpstream(t, (_call, response) => {
    setTimeout(() => answerJson(response, { ret: '0', img_url: 'https://example.invalid/fused.jpg' }), 1_500)
  })

  const { process: server, url } = await runOnFreePort(t, 'src/server.ts', {
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    TENCENT_LEGACY_URL: upstream.url,
    REDIS_URL: sharedRedisUrl(),
    REDIS_KEY_PREFIX: redisPrefix(),
    SHUTDOWN_GRACE_MS: '10000'
  }, /Server listening/)

  const photo = fixture('orientation-1.jpg')
  const inFlight = [0, 1, 2, 3].map(async () => await fuseForm(url, photo))
  while (upstream.calls.length < 4) await new Promise((resolve) => setTimeout(resolve, 20))
  server.kill('SIGTERM')

  const replies = await Promise.all(inFlight)
  t.same(replies.map((reply) => reply.status), [200, 200, 200, 200], 'every in-flight fusion completed')
  for (const reply of replies) t.equal(reply.json().imageUrl, 'https://example.invalid/fused.jpg')
  t.equal(await server.exited, 0, 'exit code 0')
  t.match(server.output(), /closing: finishing in-flight requests/)
  t.match(server.output(), /"msg":"closed"/)
})

t.test('no credentials: a fusion whose upload is still arriving at SIGTERM is answered by the emulator', async (t) => {
  const { process: server, port } = await runOnFreePort(t, 'src/server.ts',
    { HOST: '127.0.0.1', LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '10000' }, /EMULATOR MODE/)

  const { body, contentType } = multipart([
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'qc_100307_152854_1' },
    { name: 'image', value: fixture('orientation-1.jpg'), filename: 'me.jpg', contentType: 'image/jpeg' }
  ])
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  const closed = new Promise((resolve) => socket.on('close', resolve))
  socket.write(`POST /fuse HTTP/1.1\r\nHost: x\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`)
  const half = Math.floor(body.length / 2)
  socket.write(body.subarray(0, half))
  await server.waitFor(/incoming request/)

  server.kill('SIGTERM')
  await server.waitFor(/closing: finishing in-flight requests/)
  socket.write(body.subarray(half))
  await closed

  const answer = Buffer.concat(chunks).toString('latin1')
  t.match(answer, /^HTTP\/1\.1 200 /, `answered 200, not 500: ${answer.slice(0, 300)}`)
  t.match(answer, /"imageUrl":"http:\/\/x\/results\/[0-9a-f-]+\.jpg"/, 'with the emulator\'s result, at the host it was asked of')
  t.equal(await server.exited, 0, 'exit code 0')
  t.match(server.output(), /"msg":"closed"/)
})

t.test('a request that arrives once the service is closing gets 503 FUSION_SHUTTING_DOWN in the error shape', async (t) => {
  const { process: server, port, url } = await runOnFreePort(t, 'src/server.ts',
    { HOST: '127.0.0.1', LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '10000' }, /EMULATOR MODE/)

  // A kept-alive connection whose next request has begun (a load balancer's, reused as the replica stops): closing
  // does not cut it off as idle, and the request completes only once the service is closing.
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  const closed = new Promise((resolve) => socket.on('close', resolve))
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write('GET /readyz HTTP/1.1\r\nHost: x\r\n')
  // An answer on another connection comes after the server's loop has read what was sent before it.
  t.equal((await fetch(`${url}/healthz`, { headers: { connection: 'close' } })).status, 200)

  server.kill('SIGTERM')
  await server.waitFor(/closing: finishing in-flight requests/)
  // Refused connections: the listener is closed, so the service is past the start of its close.
  while (await new Promise<boolean>((resolve) => {
    const probe = connect(port, '127.0.0.1')
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => { resolve(false) })
  })) await new Promise((resolve) => setTimeout(resolve, 20))
  socket.write('\r\n')
  await closed

  const answer = Buffer.concat(chunks).toString('latin1')
  const [head = '', body = ''] = answer.split('\r\n\r\n')
  t.match(head, /^HTTP\/1\.1 503 /, `answered 503: ${answer.slice(0, 300)}`)
  t.match(head, /\r\nretry-after: 1(\r\n|$)/i, 'with Retry-After')
  t.match(head, /\r\nconnection: close(\r\n|$)/i, 'and the connection closes')
  const requestId = /\r\nx-request-id: ([^\r]+)/i.exec(head)?.[1]
  t.ok(requestId, 'with a request id')
  t.match(JSON.parse(body.slice(body.indexOf('{'), body.lastIndexOf('}') + 1)), {
    statusCode: 503, code: 'FUSION_SHUTTING_DOWN', error: 'Service Unavailable', requestId
  }, 'in the error shape, with a stable code')
  t.equal(await server.exited, 0, 'exit code 0')
})
