import t from 'tap'
import { connect, type Socket } from 'node:net'
import { captureLogs, fixture, fuseForm, multipart, startEmulator, startService } from '../helper.js'

/** A raw HTTP/1.1 upload the test writes byte by byte, to control how much of the body is ever sent. */
function openUpload (url: string, contentType: string, contentLength: number): { socket: Socket, response: Promise<string>, closed: Promise<void> } {
  const { port } = new URL(url)
  const socket = connect(Number(port), '127.0.0.1')
  socket.write(`POST /fuse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${contentType}\r\nContent-Length: ${contentLength}\r\n\r\n`)
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += String(chunk) })
  socket.on('error', () => { /* the server may reset a connection it stopped reading */ })
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  const response = new Promise<string>((resolve) => {
    const check = (): void => { if (/\r\n\r\n[\s\S]*\}/.test(received)) resolve(received) }
    socket.on('data', check)
    socket.on('close', () => resolve(received))
  })
  return { socket, response, closed }
}

const wait = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

t.test('an oversized upload is cut off at the limit, not read to the end', async (t) => {
  const { url } = await startService(t, { MAX_UPLOAD_BYTES: '200000' })
  const photo = fixture('phone-photo-3000x4000.jpg')
  const { body, contentType } = multipart([
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'qc_100307_152854_1' },
    { name: 'image', value: photo, filename: 'big.jpg', contentType: 'image/jpeg' }
  ])
  const upload = openUpload(url, contentType, body.length)
  let sent = 0
  // Trickle the body in 64 KiB steps; stop as soon as the server has answered.
  let answered = false
  void upload.response.then(() => { answered = true })
  while (sent < body.length && !answered && !upload.socket.destroyed) {
    upload.socket.write(body.subarray(sent, sent + 65_536))
    sent += 65_536
    await wait(5)
  }
  const response = await upload.response
  t.match(response, /^HTTP\/1\.1 413 /)
  t.match(response, /"code":"FUSION_FILE_TOO_LARGE"/)
  t.match(response, /connection: close/i, 'the server closes the connection instead of draining the upload')
  t.ok(sent < body.length / 4, `answered after ${sent} of ${body.length} bytes`)
  await upload.closed
})

t.test('a client that reads its socket late still gets the refusal, not a reset', async (t) => {
  // A busy phone: it keeps sending and only reads after a while. Closing the socket on it outright would reset the
  // connection, and a reset makes its kernel drop the unread 413.
  const { url } = await startService(t, { MAX_UPLOAD_BYTES: '200000' })
  const { body, contentType } = multipart([
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'qc_100307_152854_1' },
    { name: 'image', value: fixture('phone-photo-3000x4000.jpg'), filename: 'big.jpg', contentType: 'image/jpeg' }
  ])
  for (let round = 0; round < 5; round++) {
    const upload = openUpload(url, contentType, body.length)
    upload.socket.pause()
    setTimeout(() => upload.socket.resume(), 150)
    for (let sent = 0; sent < body.length && !upload.socket.destroyed && sent < 2_000_000; sent += 65_536) {
      upload.socket.write(body.subarray(sent, sent + 65_536))
      await wait(2)
    }
    const response = await upload.response
    t.match(response, /^HTTP\/1\.1 413 [\s\S]*"code":"FUSION_FILE_TOO_LARGE"/, `round ${round + 1}`)
    upload.socket.destroy()
  }
})

t.test('a refused format is answered from the first bytes', async (t) => {
  const { url } = await startService(t)
  const pdf = Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.alloc(4_000_000, 0x20)])
  const { body, contentType } = multipart([
    { name: 'image', value: pdf, filename: 'me.jpg', contentType: 'image/jpeg' },
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'qc_100307_152854_1' }
  ])
  const upload = openUpload(url, contentType, body.length)
  upload.socket.write(body.subarray(0, 65_536))
  const response = await upload.response
  t.match(response, /^HTTP\/1\.1 415 /)
  t.match(response, /"format":"pdf"/)
  upload.socket.destroy()
})

t.test('a client that aborts mid-upload is logged as 499 and costs nothing further', async (t) => {
  let upstreamCalls = 0
  const emulator = await startEmulator(t, { onPhoto: () => { upstreamCalls++ } })
  const logs = captureLogs()
  const { url, app } = await startService(t, { TENCENT_LEGACY_URL: emulator.legacyUrl, LOG_LEVEL: 'info' }, { logStream: logs.stream })
  const { body, contentType } = multipart([
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'qc_100307_152854_1' },
    { name: 'image', value: fixture('face.jpg'), filename: 'me.jpg', contentType: 'image/jpeg' }
  ])
  const upload = openUpload(url, contentType, body.length)
  upload.socket.write(body.subarray(0, Math.floor(body.length / 2)))
  await wait(100)
  upload.socket.destroy()

  const deadline = Date.now() + 5_000
  let refused: Record<string, unknown> | undefined
  while (refused === undefined && Date.now() < deadline) {
    await wait(20)
    refused = logs.lines().find((line) => line.code === 'FUSION_CLIENT_CLOSED_REQUEST')
  }
  t.ok(refused, 'logged with the 499 code')
  t.equal(refused?.statusCode, 499)
  t.equal(refused?.level, 30, 'at info: a client leaving is not an error')
  t.equal(upstreamCalls, 0, 'no upstream call was made')
  t.equal(app.imagePipeline.admitted, 0, 'its place in the image pipeline was given back')
})

t.test('when every image place is taken, the next upload gets 503 before its body is read', async (t) => {
  const { url, app } = await startService(t, { IMAGE_CONCURRENCY: '1', IMAGE_QUEUE_LIMIT: '0' })
  const { body, contentType } = multipart([
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'qc_100307_152854_1' },
    { name: 'image', value: fixture('face.jpg'), filename: 'me.jpg', contentType: 'image/jpeg' }
  ])
  // The first upload holds the only place while it is still arriving.
  const slow = openUpload(url, contentType, body.length)
  slow.socket.write(body.subarray(0, 1000))
  await wait(100)
  t.equal(app.imagePipeline.admitted, 1)

  const shed = await fuseForm(url, fixture('face.jpg'))
  t.equal(shed.status, 503)
  t.equal(shed.headers['retry-after'], '1')
  t.equal(shed.json().code, 'FUSION_OVERLOADED')

  slow.socket.write(body.subarray(1000))
  t.match(await slow.response, /^HTTP\/1\.1 200 /, 'the admitted upload completes')
  slow.socket.destroy()
  await wait(50)
  t.equal(app.imagePipeline.admitted, 0)
  t.equal((await fuseForm(url, fixture('face.jpg'))).status, 200, 'and the place is free again')
})

t.test('a client that leaves after its upload costs no upstream call, and its place is given back', async (t) => {
  let upstreamCalls = 0
  const emulator = await startEmulator(t, { onPhoto: () => { upstreamCalls++ } })
  const { url, app } = await startService(t, { TENCENT_LEGACY_URL: emulator.legacyUrl })
  const { body, contentType } = multipart([
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'qc_100307_152854_1' },
    { name: 'image', value: fixture('phone-photo-3000x4000.jpg'), filename: 'big.jpg', contentType: 'image/jpeg' }
  ])
  const upload = openUpload(url, contentType, body.length)
  upload.socket.end(body)
  // Gone while its (multi-megapixel) photo is being normalised.
  await wait(30)
  upload.socket.destroy()
  await wait(1_500)
  t.equal(upstreamCalls, 0, 'the upstream was not called for a client that left')
  t.equal(app.imagePipeline.admitted, 0)
})

t.test('an upload still arriving at the request deadline is cut off with 408, and its place given back', async (t) => {
  const { url, app } = await startService(t, { REQUEST_DEADLINE_MS: '1000' })
  const { body, contentType } = multipart([{ name: 'image', value: fixture('face.jpg'), filename: 'me.jpg', contentType: 'image/jpeg' }])
  const upload = openUpload(url, contentType, body.length)
  upload.socket.write(body.subarray(0, 1000))
  await wait(200)
  t.equal(app.imagePipeline.admitted, 1, 'the stalled upload holds a place')
  const started = Date.now()
  const response = await upload.response
  t.match(response, /^HTTP\/1\.1 408 /, 'answered, not reset')
  t.match(response, /"code":"FUSION_UPLOAD_TIMEOUT"/)
  await upload.closed
  t.ok(Date.now() - started < 5_000, 'the server closed the connection at the deadline')
  await wait(50)
  t.equal(app.imagePipeline.admitted, 0, 'and the place is free')
})
