import t, { type Test } from 'tap'
import sharp from 'sharp'
import { request } from 'undici'
import { loadConfig } from '../../src/config/load.js'
import { sentImageLimits } from '../../src/upstream/image-limits.js'
import { UPSTREAM_PROVIDERS, fixture, fuseForm, multipart, post, startEmulator, startService, upstreamEnv } from '../helper.js'

/** What the service sends the API, at the default IMAGE_MAX_SIDE. */
function sentLimits (provider: string): ReturnType<typeof sentImageLimits> {
  const config = loadConfig({ FUSION_PROVIDER: provider })
  return sentImageLimits(config.upstream, config.IMAGE_MAX_SIDE)
}

/**
 * The gateway end to end, over real HTTP, once per upstream API: the same
 * assertions hold whichever provider is configured.
 */

for (const provider of UPSTREAM_PROVIDERS) {
  t.test(`${provider} provider`, async (t) => {
    const service = async (t: Test, env: Record<string, string> = {}): ReturnType<typeof startService> => await startService(t, { FUSION_PROVIDER: provider, ...env })

    t.test('a form upload comes back as a fused picture URL', async (t) => {
      const { url } = await service(t)
      const reply = await fuseForm(url, fixture('face.jpg'))
      t.equal(reply.status, 200)
      const answer = reply.json()
      t.match(answer, { requestId: String, imageUrl: /^http:\/\/127\.0\.0\.1:\d+\/results\/.+\.jpg$/ })
      // The emulator listens on a loopback port of its own: the service serves its pictures (test/plugins/emulator-pictures.test.ts).
      t.equal(new URL(answer.imageUrl).origin, url, 'on the service\'s own port')
      t.equal(reply.headers['x-request-id'], answer.requestId, 'the request id is in the body and the header')

      const image = await request(answer.imageUrl)
      t.equal(image.statusCode, 200)
      t.match(await sharp(Buffer.from(await image.body.arrayBuffer())).metadata(), { format: 'jpeg', width: 720, height: 960 })
    })

    t.test('rsp_img_type=base64 answers with imageBase64', async (t) => {
      const { url } = await service(t)
      const reply = await fuseForm(url, fixture('face.jpg'), { rsp_img_type: 'base64' })
      t.equal(reply.status, 200)
      const answer = reply.json()
      t.notOk('imageUrl' in answer)
      t.equal((await sharp(Buffer.from(answer.imageBase64, 'base64')).metadata()).format, 'jpeg')
    })

    t.test('Accept: image/jpeg answers with the picture itself', async (t) => {
      const { url } = await service(t)
      const reply = await fuseForm(url, fixture('face.jpg'), {}, { accept: 'image/jpeg' })
      t.equal(reply.status, 200)
      t.equal(reply.headers['content-type'], 'image/jpeg')
      t.match(reply.headers['x-request-id'], /.+/)
      t.match(await sharp(reply.body).metadata(), { format: 'jpeg', width: 720, height: 960 })

      const browserDefault = await fuseForm(url, fixture('face.jpg'), {}, { accept: '*/*' })
      t.match(browserDefault.headers['content-type'], /^application\/json/, 'a browser\'s */* gets JSON')
    })

    t.test('fields may come before or after the file', async (t) => {
      const { url } = await service(t)
      const image = { name: 'image', value: fixture('face.jpg'), filename: 'me.jpg', contentType: 'image/jpeg' }
      const fields = [{ name: 'project_id', value: '100307' }, { name: 'model_id', value: 'qc_100307_152854_2' }]
      for (const parts of [[image, ...fields], [...fields, image], [fields[0]!, image, fields[1]!]]) {
        const { body, contentType } = multipart(parts)
        const reply = await post(`${url}/fuse`, body, { 'content-type': contentType })
        t.equal(reply.status, 200, parts.map((part) => part.name).join(', '))
      }
    })

    t.test('JSON bodies for server-side callers', async (t) => {
      const { url } = await service(t)
      const base64 = fixture('face.jpg').toString('base64')
      const send = async (payload: unknown): Promise<Awaited<ReturnType<typeof post>>> =>
        await post(`${url}/fuse`, JSON.stringify(payload), { 'content-type': 'application/json' })

      const plain = await send({ project_id: '100307', model_id: 'qc_100307_152854_1', image: base64 })
      t.equal(plain.status, 200)
      t.match(plain.json(), { imageUrl: /^http/ })

      const dataUrl = await send({ project_id: '100307', model_id: 'qc_100307_152854_1', image: `data:image/jpeg;base64,${base64}`, rsp_img_type: 'base64' })
      t.equal(dataUrl.status, 200, 'a data: URL prefix is tolerated')
      t.type(dataUrl.json().imageBase64, 'string')

      const numericId = await send({ project_id: 100307, model_id: 'qc_100307_152854_1', image: base64 })
      t.equal(numericId.status, 200, 'a numeric project id means the same string')

      const refusals: Array<[unknown, number, string]> = [
        [[1, 2], 400, 'FUSION_MALFORMED_BODY'],
        [{ project_id: '100307', model_id: 'qc_100307_152854_1' }, 400, 'FUSION_MISSING_IMAGE'],
        [{ project_id: '100307', model_id: 'qc_100307_152854_1', image: 42 }, 400, 'FUSION_INVALID_FIELD'],
        [{ project_id: '100307', model_id: 'qc_100307_152854_1', image: 'not base64!' }, 400, 'FUSION_INVALID_BASE64'],
        [{ project_id: '100307', model_id: 'qc_100307_152854_1', image: '' }, 400, 'FUSION_EMPTY_IMAGE'],
        [{ project_id: '100307', image: base64 }, 400, 'FUSION_MISSING_FIELD'],
        [{ project_id: '100307', model_id: 'qc_100307_152854_1', image: base64, extra: 1 }, 400, 'FUSION_UNKNOWN_FIELD'],
        [{ project_id: '../etc', model_id: 'qc_100307_152854_1', image: base64 }, 400, 'FUSION_INVALID_FIELD'],
        [{ project_id: '100307', model_id: 'qc_100307_152854_1', image: base64, rsp_img_type: 'file' }, 400, 'FUSION_INVALID_FIELD']
      ]
      for (const [payload, status, code] of refusals) {
        const reply = await send(payload)
        t.equal(reply.status, status, code)
        t.equal(reply.json().code, code)
      }

      const broken = await post(`${url}/fuse`, '{"project_id":', { 'content-type': 'application/json' })
      t.match({ status: broken.status, code: broken.json().code }, { status: 400, code: 'FUSION_MALFORMED_BODY' })
    })

    t.test('the JSON body is bounded by the upload limit', async (t) => {
      const { url } = await service(t, { MAX_UPLOAD_BYTES: '100000' })
      const payload = JSON.stringify({ project_id: '100307', model_id: 'qc_100307_152854_1', image: 'A'.repeat(300_000) })
      const reply = await post(`${url}/fuse`, payload, { 'content-type': 'application/json' })
      t.equal(reply.status, 413)
      t.equal(reply.json().code, 'FUSION_BODY_TOO_LARGE')

      const justOver = JSON.stringify({ project_id: '100307', model_id: 'qc_100307_152854_1', image: Buffer.alloc(100_003).toString('base64') })
      const decoded = await post(`${url}/fuse`, justOver, { 'content-type': 'application/json' })
      t.equal(decoded.json().code, 'FUSION_FILE_TOO_LARGE', 'base64 that decodes past the limit')
    })

    t.test('what goes upstream: upright, flattened, stripped, within the upstream\'s size and byte limits', async (t) => {
      const limits = sentLimits(provider)
      const fitted = (width: number, height: number): { width: number, height: number } => {
        const scale = Math.min(1, limits.maxSide / Math.max(width, height))
        return { width: Math.round(width * scale), height: Math.round(height * scale) }
      }
      const received: Buffer[] = []
      const emulator = await startEmulator(t, { onPhoto: (photo) => received.push(photo) })
      const { url } = await service(t, upstreamEnv(provider, emulator))

      t.equal((await fuseForm(url, fixture('face-exif-orientation-6.jpg'))).status, 200)
      const rotated = await sharp(received.pop()!).metadata()
      t.match(rotated, { format: 'jpeg', width: 600, height: 800 }, 'EXIF orientation 6 applied: portrait, as the phone showed it')
      t.equal(rotated.orientation, undefined, 'no orientation tag left')
      t.equal(rotated.exif, undefined, 'no EXIF left')

      t.equal((await fuseForm(url, fixture('face-alpha.png'))).status, 200)
      const flattened = received.pop()!
      const flat = await sharp(flattened).metadata()
      t.match(flat, { format: 'jpeg', channels: 3, hasAlpha: false })
      const corner = await sharp(await sharp(flattened).extract({ left: 0, top: 0, width: 8, height: 8 }).toBuffer()).stats()
      t.ok(corner.channels.every((channel) => channel.mean > 245), 'transparent corners became white')

      t.equal((await fuseForm(url, fixture('phone-photo-3000x4000.jpg'))).status, 200)
      const phone = received.pop()!
      t.ok(phone.length <= limits.maxBytes, `fits the ${limits.maxBytes}-byte budget (${phone.length} bytes)`)
      t.match(await sharp(phone).metadata(), fitted(3000, 4000))

      // Larger than either API takes: the pipeline must shrink it to the configured API's limits.
      const huge = await sharp(fixture('face.jpg')).resize(5000, 6000, { fit: 'fill' }).jpeg({ quality: 85 }).toBuffer()
      t.equal((await fuseForm(url, huge)).status, 200)
      const shrunk = received.pop()!
      t.ok(shrunk.length <= limits.maxBytes, `a 5000×6000 photo fits the ${limits.maxBytes}-byte budget (${shrunk.length} bytes)`)
      t.match(await sharp(shrunk).metadata(), fitted(5000, 6000))

      t.equal((await fuseForm(url, fixture('face.webp'))).status, 200, 'WebP is accepted')
      t.equal((await sharp(received.pop()!).metadata()).format, 'jpeg', 'and sent as JPEG')
    })

    t.test('a photo so narrow that fitting it leaves too few pixels is refused', async (t) => {
      const limits = sentLimits(provider)
      // Its short side is above the minimum as sent, below it once fitted within maxSide.
      const narrow = await sharp({ create: { width: limits.maxSide * 2, height: limits.minShortSide * 2 - 2, channels: 3, background: '#a0785a' } }).jpeg().toBuffer()
      const reply = await fuseForm(await service(t).then(({ url }) => url), narrow)
      t.match({ status: reply.status, code: reply.json().code }, { status: 422, code: 'FUSION_IMAGE_TOO_SMALL' })
    })

    t.test('images refused before any upstream call', async (t) => {
      let upstreamCalls = 0
      const emulator = await startEmulator(t, { onPhoto: () => { upstreamCalls++ } })
      const { url } = await service(t, upstreamEnv(provider, emulator))
      const cases: Array<[string, number, string, RegExp?]> = [
        ['not-an-image.jpg', 415, 'FUSION_UNSUPPORTED_IMAGE_FORMAT'],
        ['still.gif', 415, 'FUSION_UNSUPPORTED_IMAGE_FORMAT', /GIF/],
        ['animated.webp', 415, 'FUSION_ANIMATED_IMAGE'],
        ['truncated.jpg', 422, 'FUSION_IMAGE_CORRUPT'],
        ['tiny.png', 422, 'FUSION_IMAGE_TOO_SMALL']
      ]
      for (const [name, status, code, message] of cases) {
        const reply = await fuseForm(url, fixture(name))
        t.equal(reply.status, status, name)
        t.equal(reply.json().code, code, name)
        if (message) t.match(reply.json().message, message)
      }
      const empty = await fuseForm(url, Buffer.alloc(0))
      t.match({ status: empty.status, code: empty.json().code }, { status: 400, code: 'FUSION_EMPTY_IMAGE' })
      t.equal(upstreamCalls, 0, 'none of them reached the upstream')
    })

    t.test('missing, extra and oversized parts', async (t) => {
      const { url } = await service(t, { MAX_UPLOAD_BYTES: '300000' })
      const photo = { name: 'image', value: fixture('face.jpg'), filename: 'me.jpg', contentType: 'image/jpeg' }
      const ids = [{ name: 'project_id', value: '100307' }, { name: 'model_id', value: 'qc_100307_152854_1' }]
      const cases: Array<[string, Array<{ name: string, value: string | Buffer, filename?: string, contentType?: string }>, number, string]> = [
        ['no image', ids, 400, 'FUSION_MISSING_IMAGE'],
        ['no project_id', [ids[1]!, photo], 400, 'FUSION_MISSING_FIELD'],
        ['empty model_id', [ids[0]!, { name: 'model_id', value: '' }, photo], 400, 'FUSION_MISSING_FIELD'],
        ['bad rsp_img_type', [...ids, { name: 'rsp_img_type', value: 'gif' }, photo], 400, 'FUSION_INVALID_FIELD'],
        ['unknown field', [...ids, { name: 'color', value: 'red' }, photo], 400, 'FUSION_UNKNOWN_FIELD'],
        ['duplicate field', [...ids, { name: 'model_id', value: 'qc_100307_152854_2' }, photo], 400, 'FUSION_DUPLICATE_FIELD'],
        ['image as a text field', [...ids, { name: 'image', value: 'abc' }], 400, 'FUSION_INVALID_FIELD'],
        ['two files', [...ids, photo, { ...photo, filename: 'again.jpg' }], 400, 'FUSION_TOO_MANY_FILES'],
        ['file under another name', [...ids, { ...photo, name: 'photo' }], 400, 'FUSION_UNKNOWN_FIELD'],
        ['oversized field', [{ name: 'project_id', value: '1'.repeat(5000) }, ids[1]!, photo], 413, 'FUSION_FIELD_TOO_LARGE'],
        ['too many fields', [...ids, ...Array.from({ length: 12 }, (_, i) => ({ name: `f${i}`, value: 'x' })), photo], 413, 'FUSION_TOO_MANY_PARTS'],
        ['oversized file', [...ids, { ...photo, value: fixture('face-alpha.png') }], 413, 'FUSION_FILE_TOO_LARGE'],
        ['oversized file again, on the same server', [...ids, { ...photo, value: fixture('face-alpha.png') }], 413, 'FUSION_FILE_TOO_LARGE'],
        ['oversized file before the fields', [{ ...photo, value: fixture('phone-photo-3000x4000.jpg') }, ...ids], 413, 'FUSION_FILE_TOO_LARGE']
      ]
      for (const [name, parts, status, code] of cases) {
        const { body, contentType } = multipart(parts)
        const reply = await post(`${url}/fuse`, body, { 'content-type': contentType })
        t.equal(reply.status, status, name)
        const answer = reply.json()
        t.equal(answer.code, code, name)
        t.equal(answer.statusCode, status)
        t.equal(answer.requestId, reply.headers['x-request-id'])
        t.type(answer.message, 'string')
      }
      const after = await fuseForm(url, fixture('face.jpg'))
      t.equal(after.status, 200, 'the server still serves after every refusal')
    })

    t.test('broken or foreign bodies never hang', async (t) => {
      const { url } = await service(t)
      const { body } = multipart([{ name: 'project_id', value: '100307' }])
      const unterminated = body.subarray(0, body.length - 10)
      const cases: Array<[string, Buffer | string, Record<string, string>, number, string]> = [
        ['multipart without its closing boundary', unterminated, { 'content-type': 'multipart/form-data; boundary=----fusion-test-boundary' }, 400, 'FUSION_MALFORMED_BODY'],
        ['multipart without a boundary parameter', 'x', { 'content-type': 'multipart/form-data' }, 400, 'FUSION_MALFORMED_BODY'],
        ['plain text', 'hello', { 'content-type': 'text/plain' }, 415, 'FUSION_UNSUPPORTED_MEDIA_TYPE'],
        ['form-urlencoded', 'project_id=1', { 'content-type': 'application/x-www-form-urlencoded' }, 415, 'FUSION_UNSUPPORTED_MEDIA_TYPE'],
        ['no content type', 'hello', {}, 415, 'FUSION_UNSUPPORTED_MEDIA_TYPE']
      ]
      for (const [name, payload, headers, status, code] of cases) {
        const reply = await post(`${url}/fuse`, payload, headers)
        t.equal(reply.status, status, name)
        t.equal(reply.json().code, code, name)
      }
    })

    t.test('content negotiation, unknown routes and request ids', async (t) => {
      const { url } = await service(t)
      const html = await fuseForm(url, fixture('face.jpg'), {}, { accept: 'text/html' })
      t.match({ status: html.status, code: html.json().code }, { status: 406, code: 'FUSION_NOT_ACCEPTABLE' })

      const missing = await request(`${url}/nope`)
      t.equal(missing.statusCode, 404)
      t.match(await missing.body.json(), { statusCode: 404, code: 'FUSION_NOT_FOUND', error: 'Not Found', requestId: String })

      const traced = await fuseForm(url, Buffer.alloc(0), {}, { 'x-request-id': 'gateway-trace-42' })
      t.equal(traced.headers['x-request-id'], 'gateway-trace-42', 'a safe incoming id is kept')
      t.equal(traced.json().requestId, 'gateway-trace-42')
      const unsafe = await fuseForm(url, Buffer.alloc(0), {}, { 'x-request-id': 'bad id\twith spaces' })
      t.not(unsafe.headers['x-request-id'], 'bad id\twith spaces', 'an unsafe one is replaced')
    })
  })
}

t.test('the sent-size policy: FuseFace 2022 gets photos at IMAGE_MAX_SIDE, never enlarged', async (t) => {
  const received: Buffer[] = []
  const emulator = await startEmulator(t, { onPhoto: (photo) => received.push(photo) })
  const sentSize = async (url: string, photo: Buffer): Promise<{ width?: number, height?: number }> => {
    t.equal((await fuseForm(url, photo)).status, 200)
    const { width, height } = await sharp(received.pop()!).metadata()
    return { width, height }
  }
  const phone = fixture('phone-photo-3000x4000.jpg')

  const byDefault = await startService(t, upstreamEnv('v3', emulator))
  t.same(await sentSize(byDefault.url, phone), { width: 810, height: 1080 }, 'a 12 MP photo reaches the upstream at 1080 px')
  t.same(await sentSize(byDefault.url, fixture('face.jpg')), { width: 600, height: 800 }, 'a smaller photo as it is')

  const larger = await startService(t, { ...upstreamEnv('v3', emulator), IMAGE_MAX_SIDE: '2000' })
  t.same(await sentSize(larger.url, phone), { width: 1500, height: 2000 }, 'IMAGE_MAX_SIDE=2000')
  t.same(await sentSize(larger.url, fixture('face.jpg')), { width: 600, height: 800 }, 'still not enlarged')
})
