import sharp, { type Metadata } from 'sharp'
import { fusionError, isFusionError } from '../errors.js'
import { estimateDecodeCost } from './decode-cost.js'
import { readJpegStructure } from './jpeg-scans.js'
import { sniffFormat, type SniffedFormat } from './sniff.js'

/**
 * The image policy: untrusted bytes in, an upstream-ready JPEG out.
 *
 * The format is decided from the bytes, never from the declared type or file
 * name, and the header is checked (format, frames, pixel count, a JPEG's
 * scans) before any pixel is decoded; the memory decoding will take is
 * estimated from it too (decode-cost.ts). The photo is then decoded once: rotate (EXIF), shrink
 * (inside the JPEG decoder where possible), flatten alpha onto white and
 * convert to 8-bit sRGB in one sharp pipeline straight to JPEG; when that is
 * over the byte budget only the encode is repeated, searching for the best
 * quality that fits. Metadata (EXIF, GPS, ICC, XMP) is never copied to the output.
 */
export interface ImagePolicy {
  /** Longest allowed side of the output, per upstream (legacy: 1080). */
  maxSide: number
  /** Largest allowed output in bytes, per upstream (legacy: 500 000). */
  maxBytes: number
  /** Width × height allowed in the input, checked from the header before decoding. */
  maxInputPixels: number
  /** Fewest pixels on the short side of the output: below it no face is found, and the upstream refuses it. */
  minShortSide: number
  /** Most scans (start-of-scan markers) a JPEG may have, counted before decoding: each costs a pass over every block. */
  maxJpegScans: number
  /** libvips is asked to give up on one image after this long (the pipeline answers by then whether it does or not). */
  timeoutSeconds: number
}

/** A photo whose header passed the policy, not decoded yet. */
export interface InspectedImage {
  metadata: Metadata
  /** Estimated peak memory of decoding and normalising it, in bytes. */
  decodeCost: number
}

export interface NormalizedImage {
  jpeg: Buffer
  width: number
  height: number
  inputFormat: string
  quality: number
  bytesIn: number
}

/** Formats the installed sharp decodes and the upstream's users send. */
const ACCEPTED = new Set<SniffedFormat>(['jpeg', 'png', 'webp', 'avif', 'heif'])
export const HIGHEST_QUALITY = 90
const LOWEST_QUALITY = 40

const FORMAT_NAMES: Partial<Record<SniffedFormat, string>> = {
  gif: 'GIF', svg: 'SVG', tiff: 'TIFF', pdf: 'PDF', bmp: 'BMP', ico: 'ICO', psd: 'Photoshop', jxl: 'JPEG XL', jp2: 'JPEG 2000'
}

/**
 * Refuses a format from the first bytes alone, so an upload can be turned
 * away before the rest of it is read.
 */
export function assertAcceptedFormat (head: Buffer): SniffedFormat {
  const format = sniffFormat(head)
  if (format === 'heic') throw fusionError('FUSION_HEIC_UNSUPPORTED', { format })
  if (!ACCEPTED.has(format)) {
    const name = FORMAT_NAMES[format]
    const message = name === undefined
      ? 'This file is not a supported image: send a JPEG, PNG, WebP or AVIF photo.'
      : `${name} images are not supported: send a JPEG, PNG, WebP or AVIF photo.`
    throw fusionError('FUSION_UNSUPPORTED_IMAGE_FORMAT', { message, format })
  }
  return format
}

/** Inspection, then the decode: what the image pipeline does with a job slot and memory budget in between. */
export async function normalizeImage (input: Buffer, policy: ImagePolicy): Promise<NormalizedImage> {
  return await decodeImage(input, await inspectImage(input, policy), policy)
}

/** Everything decided before a pixel is decoded: the refusals a header allows, and the decode's memory cost. */
export async function inspectImage (input: Buffer, policy: ImagePolicy): Promise<InspectedImage> {
  if (input.length === 0) throw fusionError('FUSION_EMPTY_IMAGE')
  const format = assertAcceptedFormat(input)
  if (format === 'jpeg') {
    // One past the limit is enough to refuse; the walk stops there.
    const { scans } = readJpegStructure(input, policy.maxJpegScans + 1)
    if (scans > policy.maxJpegScans) {
      throw fusionError('FUSION_IMAGE_TOO_MANY_SCANS', {
        message: `The photo is a JPEG with more than ${policy.maxJpegScans} scans: save it again as an ordinary JPEG.`
      })
    }
  }
  const metadata = await readHeader(input, policy)
  return { metadata, decodeCost: estimateDecodeCost(metadata, policy.maxSide) }
}

export async function decodeImage (input: Buffer, { metadata }: InspectedImage, policy: ImagePolicy): Promise<NormalizedImage> {
  const first = await decodeAndEncode(input, metadata, policy)
  const fitted = first.jpeg.length <= policy.maxBytes ? first : await reencodeWithinBudget(first.jpeg, policy)
  return {
    ...fitted,
    inputFormat: formatName(metadata),
    bytesIn: input.length
  }
}

/** sharp calls AVIF "heif"; HEVC-coded HEIF is refused before this is asked. */
function formatName (metadata: Metadata): string {
  return metadata.format === 'heif' ? 'avif' : metadata.format ?? 'unknown'
}

async function readHeader (input: Buffer, policy: ImagePolicy): Promise<Metadata> {
  let metadata: Metadata
  try {
    // Header only: the pixel limit is ours, checked below with a clear answer.
    metadata = await sharp(input, { limitInputPixels: false }).metadata()
  } catch (error) {
    throw fusionError('FUSION_IMAGE_CORRUPT', { cause: error })
  }
  if (metadata.format === 'heif' && metadata.compression === 'hevc') {
    throw fusionError('FUSION_HEIC_UNSUPPORTED', { format: 'heic' })
  }
  if ((metadata.pages ?? 1) > 1) throw fusionError('FUSION_ANIMATED_IMAGE', { format: formatName(metadata) })
  const { width = 0, height = 0 } = metadata
  if (width * height > policy.maxInputPixels) {
    throw fusionError('FUSION_IMAGE_TOO_MANY_PIXELS', {
      message: `The photo has ${width}×${height} pixels; at most ${policy.maxInputPixels} are accepted.`
    })
  }
  // Judged on what would be sent: a very narrow photo fitted within maxSide can end up too thin even if its input was not.
  // (Orientation does not change which side is short.)
  const scale = Math.min(1, policy.maxSide / Math.max(width, height))
  if (Math.floor(Math.min(width, height) * scale) < policy.minShortSide) {
    throw fusionError('FUSION_IMAGE_TOO_SMALL', {
      message: `The photo is too small to find a face in: send at least ${policy.minShortSide} pixels on the short side, ` +
        'and not a very narrow strip.'
    })
  }
  return metadata
}

/**
 * The one decode of the original: orientation, shrink-on-load and resize,
 * colour and alpha handling, encoded straight to JPEG at the highest quality.
 * Steps the photo does not need (flattening an opaque image, converting one
 * that is already 8-bit sRGB) are left out of the pipeline rather than run as no-ops.
 */
async function decodeAndEncode (input: Buffer, metadata: Metadata, policy: ImagePolicy): Promise<Encoded> {
  try {
    let pipeline = sharp(input, {
      limitInputPixels: policy.maxInputPixels,
      // Phones emit JPEGs with harmless warnings (Samsung's among them); refuse only what is cut short or broken.
      failOn: 'truncated',
      pages: 1
    })
      .timeout({ seconds: policy.timeoutSeconds })
      .rotate()
      .resize({ width: policy.maxSide, height: policy.maxSide, fit: 'inside', withoutEnlargement: true })
    if (metadata.hasAlpha === true) pipeline = pipeline.flatten({ background: '#ffffff' })
    // CMYK through the embedded (or libvips' default) profile; 16-bit and grey to 8-bit sRGB.
    if (metadata.space !== 'srgb' || metadata.depth !== 'uchar' || (metadata.channels ?? 3) < 3) pipeline = pipeline.toColourspace('srgb')
    const { data, info } = await pipeline
      .jpeg({ quality: HIGHEST_QUALITY, chromaSubsampling: '4:2:0' })
      .toBuffer({ resolveWithObject: true })
    return { jpeg: data, width: info.width, height: info.height, quality: HIGHEST_QUALITY }
  } catch (error) {
    if (isFusionError(error)) throw error
    const reason = error instanceof Error ? error.message : ''
    if (/timeout/i.test(reason)) throw fusionError('FUSION_IMAGE_TIMEOUT', { cause: error })
    if (/pixel limit/i.test(reason)) throw fusionError('FUSION_IMAGE_TOO_MANY_PIXELS', { cause: error })
    throw fusionError('FUSION_IMAGE_CORRUPT', { cause: error })
  }
}

interface Encoded { jpeg: Buffer, width: number, height: number, quality: number }

/**
 * Too detailed for the budget at the highest quality: search for the highest
 * quality that fits. The original is not decoded again; the pixels come from
 * the already resized high-quality JPEG (a few milliseconds at 1080 px), and
 * only the encode is repeated.
 */
async function reencodeWithinBudget (resized: Buffer, policy: ImagePolicy): Promise<Encoded> {
  const { data: pixels, info } = await sharp(resized).raw().toBuffer({ resolveWithObject: true })
  const encode = async (quality: number): Promise<Buffer> =>
    await sharp(pixels, { raw: { width: info.width, height: info.height, channels: info.channels } })
      .jpeg({ quality, chromaSubsampling: '4:2:0' })
      .toBuffer()

  // Binary search: detailed photos keep as much quality as the budget allows,
  // rather than a fixed low quality applied to everything.
  let low = LOWEST_QUALITY
  let high = HIGHEST_QUALITY - 1
  let fitting: Encoded | undefined
  while (low <= high) {
    const quality = Math.floor((low + high) / 2)
    const candidate = await encode(quality)
    if (candidate.length <= policy.maxBytes) {
      fitting = { jpeg: candidate, width: info.width, height: info.height, quality }
      low = quality + 1
    } else {
      high = quality - 1
    }
  }
  if (fitting === undefined) throw fusionError('FUSION_IMAGE_TOO_LARGE')
  return fitting
}
