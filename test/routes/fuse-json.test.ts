import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { setImmediate as tick } from 'node:timers/promises'
import sharp from 'sharp'
import t from 'tap'
import { request } from 'undici'
import { answerJson, fixture, post, startService, stubUpstream, until } from '../helper.js'

/**
 * JSON bodies through the real server, read as they arrive (src/intake/json-body.ts): a large photo in small pieces,
 * cut inside escapes and base64 quartets, decoded into one pooled upload buffer and forwarded as its own photo.
 */

/**
 * A large photo that is cheap to decode, so the test measures reading, not sharp, on a busy machine: 1500 × 2000
 * pixels stored uncompressed, about 9 MB, 12 MB as base64.
 */
async function largePhoto (): Promise<Buffer> {
  const { data, info } = await sharp(fixture('face.jpg')).resize(1500, 2000, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true })
  return await sharp(data, { raw: info }).png({ compressionLevel: 0 }).toBuffer()
}

// Not shed on a busy machine: this is about the body, not the event loop's delay.
const ENV = { PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0' }

/** A body as PHP or a MIME encoder writes it: a data: URL, line breaks every 76 characters, slashes escaped. */
function jsonBody (photo: Buffer, modelId: string): Buffer {
  const image = `data:image/jpeg;base64,${photo.toString('base64').replace(/.{76}/g, '$&\r\n')}`
  return Buffer.from(JSON.stringify({ project_id: '100307', model_id: modelId, image }).replace(/\//g, '\\/'))
}

/** `body` in pieces of an odd size (so they end anywhere), letting the event loop turn now and then. */
function inPieces (body: Buffer, size: number): Readable {
  return Readable.from((async function * () {
    for (let at = 0, count = 0; at < body.length; at += size, count++) {
      if (count % 32 === 0) await tick()
      yield body.subarray(at, at + size)
    }
  })())
}

/** The photo the upstream was sent, from its own body. */
async function forwarded (body: Buffer): Promise<{ model: string, width?: number, height?: number, digest: string }> {
  const call = JSON.parse(body.toString('utf8')) as { model_id: string, img_data: string }
  const bytes = Buffer.from(call.img_data, 'base64')
  const { width, height } = await sharp(bytes).metadata()
  return { model: call.model_id, width, height, digest: createHash('sha256').update(bytes).digest('hex') }
}

t.test('a large JSON photo sent in small pieces is decoded as it arrives, into a pooled buffer, and forwarded', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, { ret: '0', img_url: 'https://cos.example/fused.jpg' }) })
  const { url, app } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, ...ENV })
  const photo = await largePhoto()
  const body = jsonBody(photo, 'declared')
  t.ok(body.length > 10_000_000, `a ${(body.length / 1e6).toFixed(1)} MB body for a ${(photo.length / 1e6).toFixed(1)} MB photo`)

  const declared = await request(`${url}/fuse`, {
    method: 'POST',
    body: inPieces(body, 4093),
    headers: { 'content-type': 'application/json', 'content-length': String(body.length) },
    headersTimeout: 60_000,
    bodyTimeout: 60_000
  })
  t.equal(declared.statusCode, 200, 'with Content-Length')
  t.match(await declared.body.json(), { imageUrl: 'https://cos.example/fused.jpg' })
  const buffers = app.imagePipeline.uploadBuffers
  t.equal(buffers.allocations, 1, 'one upload buffer')
  await until(() => buffers.lent === 0)
  // Three quarters of the body (the most its base64 can decode to), in whole MiB.
  t.ok(buffers.freeBytes <= Math.ceil(body.length * 3 / 4 / 1048576) * 1048576 && buffers.freeBytes < body.length,
    `of ${buffers.freeBytes / 1048576} MiB, sized for the photo, not to hold the ${(body.length / 1048576).toFixed(1)} MiB body`)

  // Without Content-Length the buffer is sized by the upload limit, and reused for the next photo.
  const chunked = await request(`${url}/fuse`, {
    method: 'POST', body: inPieces(jsonBody(photo, 'chunked'), 1021), headers: { 'content-type': 'application/json' }, headersTimeout: 60_000, bodyTimeout: 60_000
  })
  t.equal(chunked.statusCode, 200, 'sent chunked')
  await chunked.body.dump()
  await until(() => buffers.lent === 0)

  const small = fixture('face.jpg')
  const again = await post(`${url}/fuse`, jsonBody(small, 'small'), { 'content-type': 'application/json' })
  t.equal(again.status, 200, 'a small photo after the large ones')
  await until(() => buffers.lent === 0)

  const seen = await Promise.all(upstream.calls.map(async (call) => await forwarded(call.body)))
  t.same(seen.map(({ model }) => model), ['declared', 'chunked', 'small'])
  t.equal(seen[0]!.width! * 4, seen[0]!.height! * 3, `the 1500 × 2000 photo, fitted (${seen[0]!.width} × ${seen[0]!.height})`)
  t.equal(seen[1]!.digest, seen[0]!.digest, 'sent chunked, the same photo')
  const { width, height } = await sharp(small).metadata()
  t.match(seen[2], { width, height }, 'the small photo is its own, though it reused a buffer that held the large one')
})

t.test('a JSON body refused before the handler reads it gives its buffer back; the connection stays usable', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, { ret: '0', img_url: 'https://cos.example/fused.jpg' }) })
  const { url, app } = await startService(t, { TENCENT_LEGACY_URL: upstream.url, ...ENV })
  const body = jsonBody(fixture('face.jpg'), 'refused')
  const refused = await post(`${url}/fuse`, body, { 'content-type': 'application/json', accept: 'text/html' })
  t.match({ status: refused.status, code: refused.json().code }, { status: 406, code: 'FUSION_NOT_ACCEPTABLE' })
  t.not(refused.headers.connection, 'close', 'read to the end before the answer, as when Fastify parsed it')
  await until(() => app.imagePipeline.uploadBuffers.lent === 0)
  t.equal(upstream.calls.length, 0)
})
