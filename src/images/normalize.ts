import sharp, { type Metadata, type OutputInfo } from 'sharp'
import { fusionError, isFusionError } from '../errors.js'

/**
 * The image policy: untrusted bytes in, an upstream-ready JPEG out.
 *
 * Decided from the bytes, never from the declared type or file name. The photo
 * is decoded once: rotate (EXIF), shrink (inside the JPEG decoder where
 * possible), flatten alpha onto white and convert to sRGB in one sharp
 * pipeline to raw pixels; only the JPEG encode is repeated while searching for
 * the best quality that fits the byte budget. Metadata (EXIF, GPS, ICC, XMP) is
 * never copied to the output.
 */
export interface ImagePolicy {
  /** Longest allowed side of the output, per upstream (legacy: 1080). */
  maxSide: number
  /** Largest allowed output in bytes (legacy: about 500 KB). */
  maxBytes: number
  /** Width × height allowed in the input, checked from the header before decoding. */
  maxInputPixels: number
  /** A face cannot be found below this many pixels on the short side. */
  minShortSide: number
}

export const LEGACY_IMAGE_POLICY: Omit<ImagePolicy, 'maxInputPixels'> = {
  maxSide: 1080,
  // "图片大小不超过 500k": kept under 500 000 bytes, the stricter reading.
  maxBytes: 500_000,
  minShortSide: 64
}

export interface NormalizedImage {
  jpeg: Buffer
  width: number
  height: number
  inputFormat: string
  quality: number
  bytesIn: number
}

const ACCEPTED_FORMATS = new Set(['jpeg', 'png', 'webp'])
const HIGHEST_QUALITY = 90
const LOWEST_QUALITY = 40

export async function normalizeImage (input: Buffer, policy: ImagePolicy): Promise<NormalizedImage> {
  if (input.length === 0) throw fusionError('FUSION_EMPTY_IMAGE')

  const format = await detectFormat(input, policy)
  const { data, info } = await decodeUpright(input, policy)
  return {
    ...(await encodeWithinBudget(data, info, policy)),
    inputFormat: format,
    bytesIn: input.length
  }
}

async function detectFormat (input: Buffer, policy: ImagePolicy): Promise<string> {
  let metadata: Metadata
  try {
    metadata = await sharp(input, { limitInputPixels: false }).metadata()
  } catch {
    const seen = sniffFormat(input)
    // Starts like a format we accept but sharp cannot even read its header.
    if (seen !== undefined && ACCEPTED_FORMATS.has(seen)) throw fusionError('FUSION_IMAGE_CORRUPT')
    throw fusionError('FUSION_UNSUPPORTED_IMAGE_FORMAT', seen ? { message: unsupportedMessage(seen) } : {})
  }
  const format = metadata.format
  if (format === undefined || !ACCEPTED_FORMATS.has(format)) {
    throw fusionError('FUSION_UNSUPPORTED_IMAGE_FORMAT', { message: unsupportedMessage(format ?? 'unknown') })
  }
  if ((metadata.pages ?? 1) > 1) throw fusionError('FUSION_ANIMATED_IMAGE')
  const { width = 0, height = 0 } = metadata
  if (width * height > policy.maxInputPixels) {
    throw fusionError('FUSION_IMAGE_TOO_MANY_PIXELS', {
      message: `The photo has ${width}×${height} pixels; at most ${policy.maxInputPixels} are accepted.`
    })
  }
  return format
}

async function decodeUpright (input: Buffer, policy: ImagePolicy): Promise<{ data: Buffer, info: OutputInfo }> {
  try {
    const { data, info } = await sharp(input, {
      limitInputPixels: policy.maxInputPixels,
      // Phones emit JPEGs with harmless warnings; refuse only what is cut short or broken.
      failOn: 'truncated',
      pages: 1
    })
      .rotate()
      .resize({ width: policy.maxSide, height: policy.maxSide, fit: 'inside', withoutEnlargement: true })
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true })
    if (Math.min(info.width, info.height) < policy.minShortSide) throw fusionError('FUSION_IMAGE_TOO_SMALL')
    return { data, info }
  } catch (error) {
    if (isFusionError(error)) throw error
    const reason = error instanceof Error ? error.message : ''
    if (/pixel limit/i.test(reason)) throw fusionError('FUSION_IMAGE_TOO_MANY_PIXELS', { cause: error })
    throw fusionError('FUSION_IMAGE_CORRUPT', { cause: error })
  }
}

async function encodeWithinBudget (
  pixels: Buffer,
  info: OutputInfo,
  policy: ImagePolicy
): Promise<{ jpeg: Buffer, width: number, height: number, quality: number }> {
  const encode = async (quality: number): Promise<Buffer> =>
    await sharp(pixels, { raw: { width: info.width, height: info.height, channels: info.channels } })
      .jpeg({ quality, chromaSubsampling: '4:2:0' })
      .toBuffer()

  let best = await encode(HIGHEST_QUALITY)
  let bestQuality = HIGHEST_QUALITY
  if (best.length > policy.maxBytes) {
    // Binary search for the highest quality that fits: detailed photos need less
    // compression than a fixed low quality would apply to everything.
    let low = LOWEST_QUALITY
    let high = HIGHEST_QUALITY - 1
    let fitting: { jpeg: Buffer, quality: number } | undefined
    while (low <= high) {
      const quality = Math.floor((low + high) / 2)
      const candidate = await encode(quality)
      if (candidate.length <= policy.maxBytes) {
        fitting = { jpeg: candidate, quality }
        low = quality + 1
      } else {
        high = quality - 1
      }
    }
    if (fitting === undefined) throw fusionError('FUSION_IMAGE_TOO_LARGE')
    best = fitting.jpeg
    bestQuality = fitting.quality
  }
  return { jpeg: best, width: info.width, height: info.height, quality: bestQuality }
}

/** Names the format of bytes sharp could not read, so the answer says what was seen. */
function sniffFormat (input: Buffer): string | undefined {
  const head = input.subarray(0, 64)
  const ascii = head.toString('latin1')
  if (ascii.startsWith('GIF8')) return 'gif'
  if (ascii.startsWith('%PDF')) return 'pdf'
  if (ascii.startsWith('BM')) return 'bmp'
  if (ascii.startsWith('II*\0') || ascii.startsWith('MM\0*')) return 'tiff'
  if (ascii.slice(4, 8) === 'ftyp') return /heic|heix|hevc|mif1|msf1/.test(ascii.slice(8, 32)) ? 'heic' : 'heif'
  if (/^\s*(<\?xml|<svg)/i.test(ascii)) return 'svg'
  if (ascii.startsWith('\xFF\xD8')) return 'jpeg'
  if (ascii.startsWith('\x89PNG')) return 'png'
  if (ascii.startsWith('RIFF') && ascii.slice(8, 12) === 'WEBP') return 'webp'
  return undefined
}

function unsupportedMessage (format: string): string {
  const names: Record<string, string> = { gif: 'GIF', svg: 'SVG', pdf: 'PDF', tiff: 'TIFF', heif: 'HEIF/AVIF', heic: 'HEIC', bmp: 'BMP', unknown: 'This file' }
  const name = names[format] ?? format.toUpperCase()
  const subject = format === 'unknown' ? 'This file is not a supported image' : `${name} images are not supported`
  return `${subject}: send a JPEG, PNG or WebP photo.`
}
