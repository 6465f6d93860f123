/**
 * The hostile image corpus: photos built to cost the service time or memory
 * out of all proportion to their size. Every builder is deterministic and
 * works in memory (sharp encodes from fixed inputs; the scan bomb is spliced
 * by hand). The large AVIFs take sharp many seconds to encode, so each build
 * is kept in a cache directory under the system's temp dir, named by the
 * builder's inputs and the sharp and libvips versions: the same bytes, made once per machine.
 */
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import sharp from 'sharp'

const CACHE_DIR = join(tmpdir(), 'face-fusion-bff-hostile-corpus')
/** Raised whenever a builder changes what it makes, so no cached build of the old one is used. */
const BUILDERS_VERSION = 2

async function cached (key: string, build: () => Promise<Buffer>): Promise<Buffer> {
  const name = createHash('sha256').update(`${BUILDERS_VERSION}/${sharp.versions.sharp}/${sharp.versions.vips}/${key}`).digest('hex').slice(0, 24)
  const path = join(CACHE_DIR, name)
  try {
    return readFileSync(path)
  } catch {
    const bytes = await build()
    mkdirSync(CACHE_DIR, { recursive: true })
    // Written aside and renamed, so two test processes never read half a file.
    writeFileSync(`${path}.${process.pid}`, bytes)
    renameSync(`${path}.${process.pid}`, path)
    return bytes
  }
}

export type PlainFormat = 'jpeg' | 'png' | 'webp' | 'avif'

export interface PlainImage {
  format: PlainFormat
  width: number
  height: number
  /** 3 (RGB) or 4 (RGBA); 1 for grey. */
  channels?: 1 | 3 | 4
  /** Progressive JPEG, interlaced PNG. */
  progressive?: boolean
  /** JPEG and AVIF chroma subsampling. */
  chromaSubsampling?: '4:2:0' | '4:4:4'
  /** AVIF: 8, 10 or 12 bits; PNG: 8 or 16. */
  bitdepth?: 8 | 10 | 12 | 16
  /** An EXIF orientation: 5 to 8 turn the image a quarter, which libvips does on the whole decoded image. */
  orientation?: number
}

/**
 * A smooth gradient of the given size and kind: cheap to encode at any size, and decoded by exactly the same code
 * paths as a photo (decoders allocate by dimensions, not by content).
 */
export async function plainImage (spec: PlainImage): Promise<Buffer> {
  return await cached(`plain:${JSON.stringify(spec)}`, async () => {
    const { width, height, channels = 3 } = spec
    const gradient = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
      <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
        <stop offset="0" stop-color="#8fb3d9" stop-opacity="${channels === 4 ? 0.4 : 1}"/><stop offset="1" stop-color="#2d4a6b"/>
      </linearGradient></defs><rect width="100%" height="100%" fill="url(#g)"/></svg>`)
    let image = sharp(gradient, { limitInputPixels: false })
    image = channels === 1 ? image.toColourspace('b-w') : channels === 3 ? image.removeAlpha() : image.ensureAlpha()
    if (spec.orientation !== undefined) image = image.withMetadata({ orientation: spec.orientation })
    switch (spec.format) {
      case 'jpeg':
        return await image.jpeg({ quality: 85, progressive: spec.progressive ?? false, chromaSubsampling: spec.chromaSubsampling ?? '4:2:0' })
          .toBuffer()
      case 'png':
        if (spec.bitdepth === 16) image = image.toColourspace(channels === 1 ? 'grey16' : 'rgb16')
        return await image.png({ progressive: spec.progressive ?? false, compressionLevel: 9 }).toBuffer()
      case 'webp':
        return await image.webp({ quality: 80 }).toBuffer()
      case 'avif':
        return await image.avif({
          quality: 50,
          effort: 0,
          bitdepth: spec.bitdepth === 10 || spec.bitdepth === 12 ? spec.bitdepth : 8,
          chromaSubsampling: spec.chromaSubsampling ?? '4:2:0'
        }).toBuffer()
    }
  })
}

/**
 * A progressive JPEG whose first scan (the DC coefficients: a blurred but complete image) is followed by `scans`
 * empty AC scans of the luma: each a scan header and one end-of-block run over every block, about 25 bytes. libjpeg
 * walks every block once per scan, so the decode time grows with scans × blocks while the file stays small.
 */
export async function scanBombJpeg (options: { width?: number, height?: number, scans?: number } = {}): Promise<Buffer> {
  const { width = 4000, height = 4000, scans = 20_000 } = options
  const base = await plainImage({ format: 'jpeg', width, height, progressive: true })
  const { firstScanEnd, lumaId } = firstScanOf(base)
  // One AC table (class 1, id 1) with a single one-bit code, for EOBRUN class 14: an end-of-block run of
  // 2^14 + (14 more bits) blocks, so all ones is 32 767 blocks per symbol.
  const table = Buffer.from([0xff, 0xc4, 0x00, 0x14, 0x11, 1, ...new Array<number>(15).fill(0), 0xe0])
  const lumaBlocks = Math.ceil(width / 8) * Math.ceil(height / 8)
  const runs = Math.ceil(lumaBlocks / 32_767)
  const header = Buffer.from([0xff, 0xda, 0x00, 0x08, 0x01, lumaId, 0x01, 1, 63, 0x00])
  const scan = Buffer.concat([header, entropyBits('0' + '1'.repeat(14), runs)])
  return Buffer.concat([base.subarray(0, firstScanEnd), table, ...new Array<Buffer>(scans).fill(scan), Buffer.from([0xff, 0xd9])])
}

/**
 * A baseline JPEG whose frame of three components comes in a scan per component, `scans` of them, each empty:
 * libjpeg reads every scan of such a frame, and passes over every block of its component in each (an empty scan only
 * adds a warning). Its own tables: one quantisation table, and one Huffman table for DC and AC with a single code.
 */
export function componentScansJpeg (options: { width?: number, height?: number, scans?: number } = {}): Buffer {
  const { width = 7000, height = 7000, scans = 2_000 } = options
  const parts = [
    [0xff, 0xd8],
    [0xff, 0xdb, 0x00, 0x43, 0x00, ...new Array<number>(64).fill(1)],
    [0xff, 0xc0, 0x00, 0x11, 0x08, height >> 8, height & 0xff, width >> 8, width & 0xff, 0x03, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0],
    [0xff, 0xc4, 0x00, 0x26, 0x00, 1, ...new Array<number>(15).fill(0), 0x00, 0x10, 1, ...new Array<number>(15).fill(0), 0x00]
  ]
  for (let scan = 0; scan < scans; scan++) parts.push([0xff, 0xda, 0x00, 0x08, 0x01, 1 + (scan % 3), 0x00, 0x00, 0x3f, 0x00])
  parts.push([0xff, 0xd9])
  return Buffer.from(parts.flat())
}

/** The end of a JPEG's first scan's entropy-coded data, and the id of its first (luma) component. */
function firstScanOf (jpeg: Buffer): { firstScanEnd: number, lumaId: number } {
  let at = 2
  let lumaId = 1
  for (;;) {
    const code = jpeg[at + 1]!
    const length = jpeg.readUInt16BE(at + 2)
    if (code === 0xc2) lumaId = jpeg[at + 10]!
    at += 2 + length
    if (code === 0xda) break
  }
  // The first marker that is not a stuffed zero or a restart marker ends the scan.
  while (!(jpeg[at] === 0xff && jpeg[at + 1] !== 0x00 && !(jpeg[at + 1]! >= 0xd0 && jpeg[at + 1]! <= 0xd7))) at++
  return { firstScanEnd: at, lumaId }
}

/** `pattern` repeated `times`, padded with one bits to a whole byte, 0xFF stuffed with 0x00 as entropy data must be. */
function entropyBits (pattern: string, times: number): Buffer {
  let bits = pattern.repeat(times)
  bits += '1'.repeat((8 - (bits.length % 8)) % 8)
  const bytes: number[] = []
  for (let at = 0; at < bits.length; at += 8) {
    const byte = Number.parseInt(bits.slice(at, at + 8), 2)
    bytes.push(byte)
    if (byte === 0xff) bytes.push(0x00)
  }
  return Buffer.from(bytes)
}

export interface HostileImage {
  name: string
  about: string
  build: () => Promise<Buffer>
  /** What POST /fuse answers with the default settings. */
  status: number
  code?: string
}

/** The corpus, with the answer each gets from a service on its defaults. */
export const HOSTILE_IMAGES: readonly HostileImage[] = [
  {
    name: 'scan-bomb.jpg',
    about: 'a 4000×4000 progressive JPEG with 20 000 empty AC scans (a minute of libjpeg work)',
    build: async () => await scanBombJpeg(),
    status: 422,
    code: 'FUSION_IMAGE_TOO_MANY_SCANS'
  },
  {
    name: 'avif-7000.avif',
    about: 'a 1 KB AVIF of 7000×7000, under the pixel limit (about 1 GB to decode)',
    build: async () => await plainImage({ format: 'avif', width: 7000, height: 7000 }),
    status: 413,
    code: 'FUSION_IMAGE_DECODE_TOO_LARGE'
  },
  {
    name: 'avif-7000-12bit-alpha.avif',
    about: 'a 12-bit AVIF with alpha of 7000×7000 (about 1.3 GB to decode)',
    build: async () => await plainImage({ format: 'avif', width: 7000, height: 7000, channels: 4, bitdepth: 12 }),
    status: 413,
    code: 'FUSION_IMAGE_DECODE_TOO_LARGE'
  },
  {
    name: 'interlaced-7000.png',
    about: 'an interlaced PNG of 7000×7000: no decoder can stream it',
    build: async () => await plainImage({ format: 'png', width: 7000, height: 7000, progressive: true }),
    status: 200
  }
]
