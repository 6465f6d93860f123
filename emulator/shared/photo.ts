import sharp from 'sharp'

/**
 * The one photo checker of both APIs: a base64 photo decoded, its header read
 * (format, sides) without decoding a pixel, then its pixels decoded within the
 * limits. Each API states its rules and maps a `PhotoFault` to its own code
 * (legacy `ret`, API 3.0 `Error.Code`).
 */

/** Plain base64 (line breaks allowed), without a data: prefix: the upstream fails to decode anything else. */
export const BASE64_TEXT = /^[A-Za-z0-9+/\r\n]+={0,2}$/

/**
 * The most pixels sharp may decode from bytes a caller sent (4096 × 4096). The
 * emulator's credentials are public, so without this cap a tiny PNG declaring
 * 16 000 × 16 000 pixels costs seconds of CPU and most of a gigabyte.
 */
export const MAX_INPUT_PIXELS = 4096 * 4096

export interface PhotoRules {
  /** Longest accepted base64 text, in characters, checked before the text is decoded. */
  maxBase64Chars?: number
  /** Most decoded bytes, checked after the text is decoded. */
  maxBytes?: number
  /** sharp's format names. */
  formats: readonly string[]
  /** Refuse a picture of several frames (an animated WebP). */
  singleFrame?: boolean
  /** A side longer than this is refused. */
  maxSide: number
  /** A side this short or shorter is refused. */
  minSide: number
}

export type PhotoFault =
  | 'empty'
  /** Over maxBase64Chars or maxBytes. */
  | 'too-long'
  /** Not base64, not a picture, a format or frame count not allowed, truncated pixels. */
  | 'undecodable'
  | 'too-large'
  | 'too-small'

export class PhotoRefused extends Error {
  constructor (readonly fault: PhotoFault) {
    super(`photo refused: ${fault}`)
    this.name = 'PhotoRefused'
  }
}

/** A photo whose header passed the checks. */
export interface CheckedPhoto { bytes: Buffer, width: number, height: number }

/** The most pixels a photo within these rules has: what sharp may decode. */
export function pixelLimit (rules: PhotoRules): number {
  return Math.min(rules.maxSide * rules.maxSide, MAX_INPUT_PIXELS)
}

export function decodeBase64Photo (text: string, rules: PhotoRules): Buffer {
  if (text === '') throw new PhotoRefused('empty')
  if (rules.maxBase64Chars !== undefined && text.length > rules.maxBase64Chars) throw new PhotoRefused('too-long')
  if (!BASE64_TEXT.test(text)) throw new PhotoRefused('undecodable')
  const bytes = Buffer.from(text, 'base64')
  if (rules.maxBytes !== undefined && bytes.length > rules.maxBytes) throw new PhotoRefused('too-long')
  return bytes
}

/** Format and sides, from the header alone. */
export async function checkPhotoHeader (bytes: Buffer, rules: PhotoRules): Promise<CheckedPhoto> {
  let width: number
  let height: number
  try {
    // metadata() reads the header and decodes no pixel, so it needs no pixel limit; without one, a
    // decompression bomb is answered "too large" (below) rather than undecodable, and is never decoded.
    const metadata = await sharp(bytes, { limitInputPixels: false }).metadata()
    if (!rules.formats.includes(metadata.format ?? '')) throw new Error(`${rules.formats.join(', ')} only`)
    if (rules.singleFrame === true && (metadata.pages ?? 1) > 1) throw new Error('one frame only')
    width = metadata.width ?? 0
    height = metadata.height ?? 0
  } catch {
    throw new PhotoRefused('undecodable')
  }
  if (width > rules.maxSide || height > rules.maxSide) throw new PhotoRefused('too-large')
  if (width <= rules.minSide || height <= rules.minSide) throw new PhotoRefused('too-small')
  return { bytes, width, height }
}

/** The header says nothing of a truncated file: decode the pixels, never more than the rules allow. */
export async function decodePhotoPixels (bytes: Buffer, rules: PhotoRules): Promise<void> {
  try {
    await sharp(bytes, { limitInputPixels: pixelLimit(rules) }).stats()
  } catch {
    throw new PhotoRefused('undecodable')
  }
}

/** Header and pixels: the whole check short of face detection. */
export async function checkPhoto (bytes: Buffer, rules: PhotoRules): Promise<CheckedPhoto> {
  const photo = await checkPhotoHeader(bytes, rules)
  await decodePhotoPixels(bytes, rules)
  return photo
}
