import t from 'tap'
import { readdirSync } from 'node:fs'
import sharp from 'sharp'
import { CORPUS } from '../fixtures/index.js'
import { fixture, fuseForm, startEmulator, startService } from '../helper.js'

t.test('the corpus index names every file in test/fixtures/images', async (t) => {
  const files = readdirSync(new URL('../fixtures/images/', import.meta.url)).sort()
  t.same(CORPUS.map((entry) => entry.file).sort(), files)
})

t.test('every fixture through POST /fuse over real HTTP: the exact status and code', async (t) => {
  const received: Buffer[] = []
  const emulator = await startEmulator(t, { onPhoto: (photo) => received.push(photo) })
  const { url } = await startService(t, { TENCENT_LEGACY_URL: emulator.legacyUrl })

  for (const entry of CORPUS) {
    received.length = 0
    // The declared type is always image/jpeg: the service must not believe it.
    const reply = await fuseForm(url, fixture(entry.file))
    const answer = reply.json()
    t.equal(reply.status, entry.status, `${entry.file}: ${entry.about}`)
    if (entry.status === 200) {
      t.match(answer, { requestId: String, imageUrl: String }, entry.file)
      t.equal(received.length, 1, `${entry.file} reached the upstream once`)
      const sent = await sharp(received[0]!).metadata()
      t.match(sent, { format: 'jpeg', space: 'srgb', channels: 3, depth: 'uchar' }, `${entry.file} went up as 8-bit sRGB JPEG`)
      t.ok(Math.max(sent.width!, sent.height!) <= 1080 && received[0]!.length <= 500_000, `${entry.file} within 1080 px and 500 KB`)
      t.equal(sent.exif, undefined, `${entry.file} carries no EXIF`)
      t.equal(sent.icc, undefined, `${entry.file} carries no ICC profile`)
    } else {
      t.equal(answer.code, entry.code, `${entry.file} → ${entry.code}`)
      t.equal(answer.statusCode, entry.status)
      t.type(answer.message, 'string')
      if (entry.format !== undefined) t.equal(answer.format, entry.format, `${entry.file} names the format seen`)
      if (entry.code !== 'FUSION_NO_FACE') t.equal(received.length, 0, `${entry.file} was refused before any upstream call`)
    }
  }
})

t.test('every EXIF orientation comes out upright', async (t) => {
  const received: Buffer[] = []
  const emulator = await startEmulator(t, { onPhoto: (photo) => received.push(photo) })
  const { url } = await startService(t, { TENCENT_LEGACY_URL: emulator.legacyUrl })
  for (let n = 1; n <= 8; n++) {
    t.equal((await fuseForm(url, fixture(`orientation-${n}.jpg`))).status, 200)
    const sent = received.pop()!
    const { width, height } = await sharp(sent).metadata()
    t.same({ width, height }, { width: 360, height: 240 }, `orientation ${n}: landscape as shown`)
    const corner = await sharp(sent).extract({ left: 4, top: 4, width: 16, height: 16 }).raw().toBuffer()
    t.ok(corner[0]! > 200 && corner[1]! < 70 && corner[2]! < 70, `orientation ${n}: the red marker is top-left`)
  }
})

t.test('CMYK and 16-bit inputs keep their colours', async (t) => {
  const received: Buffer[] = []
  const emulator = await startEmulator(t, { onPhoto: (photo) => received.push(photo) })
  const { url } = await startService(t, { TENCENT_LEGACY_URL: emulator.legacyUrl })
  // The fixtures' faces are skin-toned (#f1c7a5) at the centre: red > green > blue, all bright.
  for (const file of ['cmyk.jpg', 'rgb16.png']) {
    t.equal((await fuseForm(url, fixture(file))).status, 200)
    const sent = received.pop()!
    const { width, height } = await sharp(sent).metadata()
    const [r, g, b] = await sharp(sent).extract({ left: Math.round(width! / 2) - 5, top: Math.round(height! * 0.45) + 10, width: 10, height: 10 }).raw().toBuffer()
    t.ok(r! > 140 && r! > g! && g! > b!, `${file}: skin tone preserved, not inverted (rgb ${r}, ${g}, ${b})`)
  }
})

t.test('a photo that takes too long is stopped at IMAGE_TIMEOUT_SECONDS: 422, and the service goes on', async (t) => {
  let upstreamCalls = 0
  const emulator = await startEmulator(t, { onPhoto: () => { upstreamCalls++ } })
  // The pixel limit raised so the interlaced 144 MP PNG is decoded at all; undecodable in a second on any machine.
  const { url } = await startService(t, { TENCENT_LEGACY_URL: emulator.legacyUrl, IMAGE_MAX_INPUT_PIXELS: '150000000', IMAGE_TIMEOUT_SECONDS: '1' })
  const started = Date.now()
  const reply = await fuseForm(url, fixture('slow-interlaced.png'))
  const elapsedMs = Date.now() - started
  t.match({ status: reply.status, ...reply.json() }, { status: 422, code: 'FUSION_IMAGE_TIMEOUT' })
  t.ok(elapsedMs < 8_000, `refused after ${elapsedMs} ms, not after decoding 144 MP`)
  t.equal(upstreamCalls, 0)
  t.equal((await fuseForm(url, fixture('face.jpg'))).status, 200, 'the next photo is served')
})
