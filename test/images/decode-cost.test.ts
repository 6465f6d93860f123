import t from 'tap'
import sharp, { type Metadata } from 'sharp'
import { estimateDecodeCost } from '../../src/images/decode-cost.js'
import { plainImage, type PlainImage } from '../hostile/image-corpus.js'

const MiB = 1024 * 1024
const header = async (spec: PlainImage): Promise<Metadata> => await sharp(await plainImage(spec), { limitInputPixels: false }).metadata()
/** Headers written by hand: only the fields the estimate reads. */
const cost = (metadata: Record<string, unknown>, maxSide = 1080): number => estimateDecodeCost(metadata as unknown as Metadata, maxSide)

t.test('sharp\'s header tells the estimate what it needs, for every accepted format', async (t) => {
  t.match(await header({ format: 'jpeg', width: 64, height: 64, progressive: true, chromaSubsampling: '4:4:4' }),
    { format: 'jpeg', isProgressive: true, chromaSubsampling: '4:4:4', channels: 3 })
  t.match(await header({ format: 'jpeg', width: 64, height: 64 }), { isProgressive: false, chromaSubsampling: '4:2:0' })
  t.match(await header({ format: 'png', width: 64, height: 64, progressive: true, channels: 4, bitdepth: 16 }),
    { format: 'png', isProgressive: true, channels: 4, depth: 'ushort' })
  t.match(await header({ format: 'webp', width: 64, height: 64, channels: 4 }), { format: 'webp', hasAlpha: true })
  t.match(await header({ format: 'avif', width: 64, height: 64, channels: 4, bitdepth: 12 }),
    { format: 'heif', compression: 'av1', bitsPerSample: 12, hasAlpha: true })
  t.match(await header({ format: 'jpeg', width: 64, height: 64, orientation: 6 }), { orientation: 6 })
})

t.test('the issue\'s AVIFs cost more than the default budget; a phone photo a small part of it', async (t) => {
  const avif = await header({ format: 'avif', width: 7000, height: 7000 })
  t.ok(estimateDecodeCost(avif, 1080) > 1024 * MiB, `7000² AVIF: ${Math.round(estimateDecodeCost(avif, 1080) / MiB)} MiB (measured ~750)`)
  const deep: Record<string, unknown> = { ...avif, bitsPerSample: 12, hasAlpha: true, channels: 4 }
  t.ok(cost(deep) > estimateDecodeCost(avif, 1080), '12 bits with alpha: more')
  const phone = cost({ format: 'jpeg', width: 4000, height: 3000, channels: 3, chromaSubsampling: '4:2:0', isProgressive: false })
  t.ok(phone < 64 * MiB, `a 12 MP baseline JPEG, fitted in 1080 px: ${Math.round(phone / MiB)} MiB`)
  const large = cost({ format: 'jpeg', width: 4000, height: 3000, channels: 3, chromaSubsampling: '4:2:0' }, 4095)
  t.ok(large < 256 * MiB, `and in 4095 px, for API 3.0: ${Math.round(large / MiB)} MiB (measured up to 187 when re-encoded)`)
})

t.test('the same size costs what its format\'s decoder needs', async (t) => {
  const size = { width: 5000, height: 5000, channels: 3 }
  const baseline = cost({ ...size, format: 'jpeg', chromaSubsampling: '4:2:0', isProgressive: false })
  const progressive = cost({ ...size, format: 'jpeg', chromaSubsampling: '4:2:0', isProgressive: true })
  const progressive444 = cost({ ...size, format: 'jpeg', chromaSubsampling: '4:4:4', isProgressive: true })
  const png = cost({ ...size, format: 'png', isProgressive: false })
  const interlaced = cost({ ...size, format: 'png', isProgressive: true })
  const interlaced16 = cost({ ...size, format: 'png', isProgressive: true, channels: 4, depth: 'ushort' })
  const webp = cost({ ...size, format: 'webp', hasAlpha: false })
  const webpAlpha = cost({ ...size, format: 'webp', hasAlpha: true, channels: 4 })
  const avif = cost({ ...size, format: 'heif', bitsPerSample: 8 })
  t.ok(baseline < progressive && progressive < progressive444, 'a progressive JPEG holds its coefficients: 3 bytes a pixel at 4:2:0, 6 at 4:4:4')
  t.equal(progressive444 - baseline, 2 * (progressive - baseline))
  t.ok(png < interlaced && interlaced < interlaced16, 'an interlaced PNG is decoded whole, 16-bit RGBA eight bytes a pixel')
  t.ok(webp < webpAlpha, 'a WebP with alpha is decoded whole')
  t.ok([baseline, progressive, png, interlaced, webp, webpAlpha].every((other) => other < avif), 'AVIF costs most')
})

t.test('bigger output and a quarter turn cost more; an unknown format is charged as the costliest', async (t) => {
  const jpeg = { format: 'jpeg' as const, width: 6000, height: 4000, channels: 3, chromaSubsampling: '4:2:0' }
  t.ok(cost(jpeg, 4095) > cost(jpeg, 1080), 'fitted in 4095 px rather than 1080')
  t.ok(cost({ ...jpeg, orientation: 6 }, 4095) > cost(jpeg, 4095), 'EXIF orientation 6 turns the whole resized image')
  t.equal(cost({ ...jpeg, orientation: 3 }, 4095), cost(jpeg, 4095), 'a half turn needs no copy')
  t.equal(cost({ width: 100, height: 100 }), cost({ width: 100, height: 100, format: 'heif' }))
  t.ok(cost({}) > 0, 'a header without dimensions still costs the base')
})
