import t from 'tap'
import sharp, { type Sharp } from 'sharp'
import { readJpegStructure } from '../../src/images/jpeg-scans.js'
import { fixture } from '../helper.js'
import { componentScansJpeg, scanBombJpeg } from '../hostile/image-corpus.js'

const photo = async (): Promise<Sharp> => sharp(fixture('face.jpg'))

t.test('what encoders write: one scan for baseline, about a dozen for progressive', async (t) => {
  t.same(readJpegStructure(fixture('face.jpg')), { scans: 1, progressive: false })
  t.same(readJpegStructure(fixture('progressive.jpg')), { scans: 10, progressive: true }, 'libjpeg\'s script for colour: 10')
  t.same(readJpegStructure(await (await photo()).toColourspace('b-w').jpeg({ progressive: true }).toBuffer()),
    { scans: 6, progressive: true }, 'for grey: 6')
  t.same(readJpegStructure(await (await photo()).toColourspace('cmyk').jpeg({ progressive: true }).toBuffer()),
    { scans: 18, progressive: true }, 'for CMYK: 18')
  const mozjpeg = readJpegStructure(await (await photo()).jpeg({ mozjpeg: true }).toBuffer())
  t.ok(mozjpeg.progressive && mozjpeg.scans >= 4 && mozjpeg.scans <= 12, `mozjpeg's optimised scans: ${mozjpeg.scans}`)
  for (const file of ['cmyk.jpg', 'grayscale.jpg', 'face-exif-orientation-6.jpg', 'phone-photo-3000x4000.jpg']) {
    t.equal(readJpegStructure(fixture(file)).scans, 1, `${file}: baseline`)
  }
})

t.test('segments are skipped by their length: a JPEG inside EXIF (a thumbnail) or a comment is not counted', async (t) => {
  const jpeg = fixture('face.jpg')
  // A comment holding the bytes of a whole progressive JPEG, start-of-scan markers and all.
  const inner = fixture('progressive.jpg').subarray(0, 60_000)
  const comment = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from([(inner.length + 2) >> 8, (inner.length + 2) & 0xff]), inner])
  const withComment = Buffer.concat([jpeg.subarray(0, 2), comment, jpeg.subarray(2)])
  t.same(readJpegStructure(withComment), { scans: 1, progressive: false })
  t.equal((await sharp(withComment).metadata()).width, 600, 'and libjpeg reads it the same way')
})

t.test('entropy-coded data: stuffed 0xFF 0x00 and restart markers are data, fill bytes before a marker are skipped', async (t) => {
  const scan = (data: number[]): number[] => [0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, ...data]
  const bytes = Buffer.from([
    0xff, 0xd8,
    ...scan([0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56, 0xff, 0xd7, 0x78]),
    0xff, 0xff, 0xff, ...scan([0x01]).slice(1),
    0x00, 0x00, ...scan([0x02]),
    0xff, 0xd9,
    ...scan([0x03])
  ])
  t.same(readJpegStructure(bytes), { scans: 3, progressive: false }, 'three scans before the end marker; what follows it is not the image')
})

t.test('a sequential Huffman frame complete in its first scan is walked to that scan only; others to the end', async (t) => {
  // A start-of-frame segment for 8 × 8 pixels in one or three components (their tables are not read), then scans of one.
  const frame = (code: number, components = 1): number[] =>
    [0xff, code, 0x00, 8 + 3 * components, 0x08, 0x00, 0x08, 0x00, 0x08, components,
      ...Array.from({ length: components }, (_, index) => [index + 1, 0x11, 0x00]).flat()]
  const scan = (data: number[]): number[] => [0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, ...data]
  const scans = [...scan([0x12]), ...scan([0x34]), ...scan([0x56])]
  const jpeg = (code: number, components = 1): Buffer => Buffer.from([0xff, 0xd8, ...frame(code, components), ...scans, 0xff, 0xd9])
  t.same(readJpegStructure(jpeg(0xc0)), { scans: 1, progressive: false }, 'baseline (SOF0)')
  t.same(readJpegStructure(jpeg(0xc1)), { scans: 1, progressive: false }, 'extended sequential (SOF1)')
  t.same(readJpegStructure(jpeg(0xc0, 3)), { scans: 3, progressive: false },
    'baseline in a scan per component: libjpeg reads every scan, so every scan is counted')
  t.same(readJpegStructure(componentScansJpeg({ scans: 150 })), { scans: 150, progressive: false }, 'however many')
  t.same(readJpegStructure(jpeg(0xc2)), { scans: 3, progressive: true }, 'progressive (SOF2)')
  t.same(readJpegStructure(jpeg(0xc9)), { scans: 3, progressive: false }, 'sequential, arithmetic-coded (SOF9)')
  t.same(readJpegStructure(jpeg(0xca)), { scans: 3, progressive: true }, 'progressive, arithmetic-coded (SOF10)')
  const secondFrame = Buffer.from([0xff, 0xd8, ...frame(0xc2), ...frame(0xc0), ...scans, 0xff, 0xd9])
  t.same(readJpegStructure(secondFrame), { scans: 3, progressive: true }, 'the first frame decides, as libjpeg refuses a second')
  const lyingFrame = Buffer.from([0xff, 0xd8, 0xff, 0xc0, 0x00, 0x0c, ...frame(0xc0).slice(4), 0x00, ...scans, 0xff, 0xd9])
  t.same(readJpegStructure(lyingFrame), { scans: 3, progressive: false }, 'a frame whose length disagrees with its components')
  const lyingScan = Buffer.from([0xff, 0xd8, ...frame(0xc0), 0xff, 0xda, 0x00, 0x09, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x12,
    ...scan([0x34]), 0xff, 0xd9])
  t.same(readJpegStructure(lyingScan), { scans: 2, progressive: false }, 'a scan whose length disagrees with its components')

  // A phone's baseline photo followed by 200 more scans of bytes that are not entropy-coded data: libjpeg, having read
  // the one scan of an interleaved baseline image, reads none of them (had it, each would be a warning, and these
  // decode options fail on the first).
  const photo = fixture('face.jpg')
  const scanHeader = photo.subarray(photo.indexOf(Buffer.from([0xff, 0xda])), photo.indexOf(Buffer.from([0xff, 0xda])) + 14)
  const noise = Buffer.from(Array.from({ length: 2000 }, (_, index) => (index * 131 + 17) % 255))
  const extra = Buffer.concat(Array.from({ length: 200 }, () => Buffer.concat([scanHeader, noise])))
  const followed = Buffer.concat([photo.subarray(0, photo.length - 2), extra, photo.subarray(-2)])
  t.same(readJpegStructure(followed), { scans: 1, progressive: false })
  const { info } = await sharp(followed, { failOn: 'warning' }).raw().toBuffer({ resolveWithObject: true })
  t.same({ width: info.width, height: info.height }, await sharp(photo).metadata().then(({ width, height }) => ({ width, height })))
})

t.test('the walk stops at the limit and at broken or cut-off structure, leaving the verdict to the decoder', async (t) => {
  const bomb = await scanBombJpeg({ width: 64, height: 64, scans: 500 })
  t.same(readJpegStructure(bomb), { scans: 501, progressive: true })
  t.equal(readJpegStructure(bomb, 101).scans, 101, 'stops one past a limit of 100')
  t.equal(readJpegStructure(bomb.subarray(0, 5_000)).scans > 0, true, 'a cut-off file is counted as far as it goes')
  t.same(readJpegStructure(Buffer.from('not a jpeg')), { scans: 0, progressive: false })
  t.same(readJpegStructure(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x01])), { scans: 0, progressive: false }, 'a length under 2')
  t.same(readJpegStructure(Buffer.from([0xff, 0xd8, 0xff, 0xe0])), { scans: 0, progressive: false }, 'no room for a length')
})

t.test('the hostile corpus\'s scan bomb is a valid JPEG that decodes (slowly), not a broken one', async (t) => {
  const bomb = await scanBombJpeg({ width: 256, height: 256, scans: 50 })
  const { info } = await sharp(bomb, { failOn: 'truncated' }).raw().toBuffer({ resolveWithObject: true })
  t.same({ width: info.width, height: info.height }, { width: 256, height: 256 })
})
