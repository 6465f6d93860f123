import sharp from 'sharp'
import { Api3Failure } from './api3-errors.js'
import type { Api3Version, FaceRect } from './api3-params.js'
import { looksFaceless } from './blend.js'
import { BASE64_TEXT, MAX_INPUT_PIXELS } from './shared.js'

/**
 * A user photo as API 3.0 takes it (base64 `Image`, or `Url`, which wins) and
 * checks it, with the limits and codes of each version
 * (the FaceFusion and FuseFace API documents, 670/31061 and 670/85618).
 *
 * A `Url` (or `LogoUrl`) is never fetched. The emulator's credentials are
 * public, so a request made for whoever signs with them would let strangers
 * reach, and tell apart, the services and ports of the machine it runs on.
 * Only the emulator's own pictures are accepted — a result
 * (`<prefix>/results/<id>.jpg`) or a material (`<prefix>/materials/<modelId>.jpg`)
 * on the host the request came in on — and their bytes come from memory
 * (see OwnPicture); any other http(s) URL is FailedOperation.ImageDownloadError.
 */
export interface PhotoLimits {
  /** Longest accepted base64 text, in characters. */
  maxBase64Chars: number
  base64TooLong: string
  /** A side longer than this is refused. */
  maxSide: number
  /** A side this short or shorter is refused. */
  minSide: number
  noFace: string
}

export const PHOTO_LIMITS: Readonly<Record<Api3Version, PhotoLimits>> = {
  // 2018-12-01: the original "≤ 500 KB, ≤ 1080×1080".
  '2018-12-01': { maxBase64Chars: 500 * 1024, base64TooLong: 'FailedOperation.ImageSizeExceedFiveHundredKB', maxSide: 1080, minSide: 64, noFace: 'FailedOperation.FuseDetectNoFace' },
  // 2022-09-27: "> 64×64 and < 4096×4096, base64 ≤ 5 MB".
  '2022-09-27': { maxBase64Chars: 5 * 1024 * 1024, base64TooLong: 'FailedOperation.ImageSizeExceed', maxSide: 4095, minSide: 64, noFace: 'FailedOperation.NoFaceDetected' }
}

/**
 * A logo (LogoParam.LogoImage or LogoUrl): JPEG or PNG, base64 ≤ 5 MB. The
 * upstream documents no side limit; the emulator refuses a side over 4096 as
 * it refuses a photo's (ImageResolutionExceed), so a small file cannot make it
 * decode a huge picture.
 */
const LOGO_LIMITS: Readonly<PhotoLimits> = { ...PHOTO_LIMITS['2022-09-27'], maxSide: 4096, minSide: 0 }

export interface PhotoSource { image: string | undefined, url: string | undefined }

/**
 * The bytes of the emulator's own picture that a URL names, from memory, or
 * undefined when it names anything else (api3.ts decides what is its own).
 */
export type OwnPicture = (url: URL) => Promise<Buffer | undefined>

/** A photo whose header passed the checks: format and sides. Its pixels are not decoded yet. */
export interface CheckedPhoto { bytes: Buffer, width: number, height: number }

/** The most pixels a photo within these limits has: what sharp may decode. */
function pixelLimit (limits: PhotoLimits): number {
  return Math.min(limits.maxSide * limits.maxSide, MAX_INPUT_PIXELS)
}

/** The photo's bytes with its header checked, without decoding a pixel; throws the refusal. */
export async function readPhoto (source: PhotoSource, limits: PhotoLimits, ownPicture: OwnPicture): Promise<CheckedPhoto> {
  const bytes = await fetchImage(source, limits, ownPicture)
  return { bytes, ...await checkHeader(bytes, limits) }
}

/** The photo read and fully decoded, checked up to (not including) face detection; throws the refusal. */
export async function loadPhoto (source: PhotoSource, limits: PhotoLimits, ownPicture: OwnPicture): Promise<CheckedPhoto> {
  const photo = await readPhoto(source, limits, ownPicture)
  await decodePixels(photo.bytes, limits)
  return photo
}

export async function loadLogo (source: PhotoSource, ownPicture: OwnPicture): Promise<Buffer> {
  return (await loadPhoto(source, LOGO_LIMITS, ownPicture)).bytes
}

async function fetchImage (source: PhotoSource, limits: PhotoLimits, ownPicture: OwnPicture): Promise<Buffer> {
  return source.url !== undefined && source.url !== '' ? await pictureAt(source.url, ownPicture) : decodeBase64(source.image ?? '', limits)
}

function decodeBase64 (image: string, limits: PhotoLimits): Buffer {
  if (image === '') throw new Api3Failure('InvalidParameterValue.ImageEmpty')
  if (image.length > limits.maxBase64Chars) throw new Api3Failure(limits.base64TooLong)
  if (!BASE64_TEXT.test(image)) throw new Api3Failure('FailedOperation.ImageDecodeFailed')
  return Buffer.from(image, 'base64')
}

/** A Url: only the emulator's own pictures, from memory; nothing is ever requested over the network. */
async function pictureAt (url: string, ownPicture: OwnPicture): Promise<Buffer> {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new Api3Failure('InvalidParameterValue.UrlIllegal')
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Api3Failure('InvalidParameterValue.UrlIllegal')
  const bytes = await ownPicture(parsed)
  if (bytes === undefined) throw new Api3Failure('FailedOperation.ImageDownloadError')
  return bytes
}

/** Format and sides, from the header alone. */
async function checkHeader (bytes: Buffer, limits: PhotoLimits): Promise<{ width: number, height: number }> {
  let width: number
  let height: number
  try {
    // metadata() reads the header and decodes no pixel, so it needs no pixel limit; without one, a
    // decompression bomb is answered "too large" (below) rather than undecodable.
    const metadata = await sharp(bytes, { limitInputPixels: false }).metadata()
    if (metadata.format !== 'jpeg' && metadata.format !== 'png') throw new Error('jpg and png only')
    width = metadata.width ?? 0
    height = metadata.height ?? 0
  } catch {
    throw new Api3Failure('FailedOperation.ImageDecodeFailed')
  }
  if (width > limits.maxSide || height > limits.maxSide) throw new Api3Failure('FailedOperation.ImageResolutionExceed')
  if (width <= limits.minSide || height <= limits.minSide) throw new Api3Failure('FailedOperation.ImageResolutionTooSmall')
  return { width, height }
}

/** The header says nothing of a truncated file: decode the pixels, never more than the limits allow. */
async function decodePixels (bytes: Buffer, limits: PhotoLimits): Promise<void> {
  try {
    await sharp(bytes, { limitInputPixels: pixelLimit(limits) }).stats()
  } catch {
    throw new Api3Failure('FailedOperation.ImageDecodeFailed')
  }
}

/** InputImageFaceRect must lie inside the photo (its header's sides suffice). */
export function checkFaceRect (photo: CheckedPhoto, rect: FaceRect | undefined): void {
  if (rect !== undefined && (rect.X + rect.Width > photo.width || rect.Y + rect.Height > photo.height)) {
    throw new Api3Failure('InvalidParameterValue.FaceRectParameterValueError', 'InputImageFaceRect lies outside the photo.')
  }
}

/** The face the caller pointed at (InputImageFaceRect), or the whole photo; refuses a photo without a face. */
export async function faceOf (photo: CheckedPhoto, rect: FaceRect | undefined, limits: PhotoLimits): Promise<Buffer> {
  checkFaceRect(photo, rect)
  const face = rect === undefined
    ? photo.bytes
    : await sharp(photo.bytes, { limitInputPixels: pixelLimit(limits) })
      .extract({ left: rect.X, top: rect.Y, width: rect.Width, height: rect.Height }).png().toBuffer()
  if (await looksFaceless(face)) throw new Api3Failure(limits.noFace)
  return face
}
