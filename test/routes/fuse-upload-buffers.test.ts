import t, { type Test } from 'tap'
import { connect } from 'node:net'
import sharp from 'sharp'
import { answerJson, captureLogs, fixture, fuseForm, multipart, rawFuseUpload, startService, stubUpstream, until, type StubCall } from '../helper.js'

/**
 * Upload buffers are reused from photo to photo (src/images/upload-buffers.ts).
 * These tests send photos of one size in different colours and check, at the
 * upstream, that every photo forwarded is the one its request sent while
 * uploads keep arriving as others wait in the queue.
 */
const COLOURS = {
  red: { r: 220, g: 20, b: 20 },
  green: { r: 20, g: 200, b: 40 },
  blue: { r: 30, g: 40, b: 210 },
  grey: { r: 128, g: 128, b: 128 },
  yellow: { r: 230, g: 220, b: 30 }
} as const
type Colour = keyof typeof COLOURS

/** Uncompressed, so every colour's PNG has exactly the same length and lands in the same size of buffer. */
async function photoIn (colour: Colour): Promise<Buffer> {
  return await sharp({ create: { width: 320, height: 240, channels: 3, background: COLOURS[colour] } }).png({ compressionLevel: 0 }).toBuffer()
}

/** The colour of the photo a call forwarded, read from the upstream's own body. */
async function forwardedColour (call: StubCall): Promise<{ model: string, rgb: number[] }> {
  const body = JSON.parse(call.body.toString('utf8')) as { model_id: string, img_data: string }
  const stats = await sharp(Buffer.from(body.img_data, 'base64')).stats()
  return { model: body.model_id, rgb: stats.channels.slice(0, 3).map((channel) => Math.round(channel.mean)) }
}

function assertOwnColours (t: Test, seen: Array<{ model: string, rgb: number[] }>): void {
  for (const { model, rgb } of seen) {
    const colour = model.split('_')[0] as Colour
    const expected = COLOURS[colour]
    const off = Math.max(Math.abs(rgb[0]! - expected.r), Math.abs(rgb[1]! - expected.g), Math.abs(rgb[2]! - expected.b))
    t.ok(off <= 6, `${model} forwarded ${rgb.join(',')}, sent ${Object.values(expected).join(',')}`)
  }
}

/**
 * One job at a time, held for a second by a photo that only IMAGE_TIMEOUT_SECONDS stops (refused with 422): the
 * uploads sent meanwhile are all read and wait in the queue, each in its buffer.
 */
const BLOCKING = { IMAGE_CONCURRENCY: '1', IMAGE_MAX_INPUT_PIXELS: '150000000', IMAGE_TIMEOUT_SECONDS: '1' }

t.test('photos queued behind each other are forwarded as their own, though their buffers are reused', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, { ret: '0', img_url: 'https://cos.example/fused.jpg' }) })
  const logs = captureLogs()
  const { url, app } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, ...BLOCKING, LOG_LEVEL: 'info' }, { logStream: logs.stream })
  const colours = Object.keys(COLOURS) as Colour[]
  const photos = await Promise.all(colours.map(photoIn))
  t.equal(new Set(photos.map((photo) => photo.length)).size, 1, 'every photo has the same length')

  for (let round = 1; round <= 3; round++) {
    const blocker = fuseForm(url, fixture('slow-interlaced.png'), { model_id: `blocker_${round}` })
    await until(() => app.imagePipeline.admitted === 1)
    const replies = await Promise.all(colours.map(async (colour, index) => await fuseForm(url, photos[index]!, { model_id: `${colour}_${round}` })))
    t.same(replies.map((reply) => reply.status), colours.map(() => 200), `round ${round}: every photo fused`)
    t.equal((await blocker).json().code, 'FUSION_IMAGE_TIMEOUT', 'the photo that held the queue')
    // The blocker is answered at its timeout; libvips lets go of its buffer when it stops, a moment later on a busy
    // machine. Only then may the next round's uploads reuse it.
    await until(() => app.imagePipeline.uploadBuffers.lent === 0)
  }
  t.equal(upstream.calls.length, 15)
  assertOwnColours(t, await Promise.all(upstream.calls.map(forwardedColour)))
  t.ok(app.imagePipeline.uploadBuffers.allocations <= colours.length + 1, `${app.imagePipeline.uploadBuffers.allocations} buffers served 18 uploads`)
  // The pipeline saw each photo's own bytes, not the whole (larger) buffer it was copied into.
  const sizes = logs.lines().filter((line) => line.msg === 'image normalised').map((line) => (line.image as { bytesIn: number }).bytesIn)
  t.same(sizes, Array.from({ length: 15 }, () => photos[0]!.length))
})

t.test('a client that leaves while its photo waits gives its buffer back at once, not when the queue reaches it', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, { ret: '0', img_url: 'https://cos.example/fused.jpg' }) })
  const { url, app } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, ...BLOCKING, IMAGE_TIMEOUT_SECONDS: '3' })
  const buffers = app.imagePipeline.uploadBuffers
  let blockerAnsweredAt = Infinity
  const blocker = fuseForm(url, fixture('slow-interlaced.png'), { model_id: 'blocker' }).then((reply) => { blockerAnsweredAt = Date.now(); return reply })
  await until(() => app.imagePipeline.admitted === 1 && buffers.allocations === 1)
  // About 1.5 MB: its buffer (2 MiB) is told apart from the blocker's (1 MiB).
  const photo = await sharp({ create: { width: 720, height: 700, channels: 3, background: COLOURS.blue } }).png({ compressionLevel: 0 }).toBuffer()
  const leaving = rawFuseUpload(url, photo)
  await until(() => app.imagePipeline.admitted === 2 && buffers.allocations === 2)
  // Read in full (a few milliseconds on loopback) and queued behind the blocker for seconds.
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(buffers.freeBytes, 0)
  const leftAt = Date.now()
  leaving.destroy()
  await until(() => buffers.freeBytes >= 2 * 1024 * 1024)
  const backAt = Date.now()
  t.ok(backAt - leftAt < 1_000, `its buffer came back ${backAt - leftAt} ms after it left`)
  await blocker
  // Had it waited for its turn, it would have come back as the blocker's job ended, just before its answer.
  t.ok(blockerAnsweredAt - backAt >= 200, `${blockerAnsweredAt - backAt} ms before the blocker's job ended`)
  t.same(upstream.calls.map((call) => JSON.parse(call.body.toString('utf8')).model_id).filter((model) => model !== 'blocker'), [],
    'nothing went upstream for the client that left')
})

t.test('a smaller photo in a reused buffer is read as itself, not with the rest of the buffer', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, { ret: '0', img_url: 'https://cos.example/fused.jpg' }) })
  const logs = captureLogs()
  const { url, app } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, LOG_LEVEL: 'info' }, { logStream: logs.stream })
  const large = await sharp({ create: { width: 900, height: 700, channels: 3, background: COLOURS.green } }).png({ compressionLevel: 0 }).toBuffer()
  const small = await photoIn('red')
  t.equal((await fuseForm(url, large, { model_id: 'green_large' })).status, 200)
  t.equal((await fuseForm(url, small, { model_id: 'red_small' })).status, 200)
  t.equal(app.imagePipeline.uploadBuffers.allocations, 1, 'the small photo went into the large one’s buffer')
  assertOwnColours(t, await Promise.all(upstream.calls.map(forwardedColour)))
  const sizes = logs.lines().filter((line) => line.msg === 'image normalised').map((line) => (line.image as { bytesIn: number }).bytesIn)
  t.same(sizes, [large.length, small.length])
})

t.test('a chunked upload, with no length to size a buffer by, is collected and read whole', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, { ret: '0', img_url: 'https://cos.example/fused.jpg' }) })
  const { url, app } = await startService(t, { TENCENT_LEGACY_URL: upstream.url })
  const { body, contentType } = multipart([
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'yellow_chunked' },
    { name: 'image', value: await photoIn('yellow'), filename: 'me.png', contentType: 'image/png' }
  ])
  const socket = connect(Number(new URL(url).port), '127.0.0.1')
  socket.write(`POST /fuse HTTP/1.1\r\nHost: x\r\nContent-Type: ${contentType}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`)
  for (let offset = 0; offset < body.length; offset += 50_000) {
    const piece = body.subarray(offset, offset + 50_000)
    socket.write(`${piece.length.toString(16)}\r\n`)
    socket.write(piece)
    socket.write('\r\n')
  }
  socket.write('0\r\n\r\n')
  let answer = ''
  socket.on('data', (chunk: Buffer) => { answer += String(chunk) })
  await new Promise((resolve) => socket.on('close', resolve))
  t.match(answer, /^HTTP\/1\.1 200 /)
  t.equal(app.imagePipeline.uploadBuffers.allocations, 0, 'no pooled buffer was taken')
  assertOwnColours(t, await Promise.all(upstream.calls.map(forwardedColour)))
})

t.test('a photo refused for an option the upstream cannot honour gives its buffer back', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, { ret: '0', img_url: 'https://cos.example/fused.jpg' }) })
  const { url, app } = await startService(t, { TENCENT_LEGACY_URL: upstream.url })
  const reply = await fuseForm(url, await photoIn('grey'), { fuse_face_degree: '50' })
  t.equal(reply.json().code, 'FUSION_UNSUPPORTED_OPTION')
  t.equal(app.imagePipeline.uploadBuffers.allocations, 1)
  t.equal(app.imagePipeline.uploadBuffers.freeBytes, 1024 * 1024, 'back in the pool')
  t.equal(upstream.calls.length, 0)
})
