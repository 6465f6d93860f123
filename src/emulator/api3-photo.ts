import sharp from 'sharp'
import { request } from 'undici'
import { Api3Failure } from './api3-errors.js'
import type { Api3Version, FaceRect } from './api3-params.js'
import { looksFaceless } from './blend.js'

/**
 * A user photo as API 3.0 takes it (base64 `Image`, or `Url`, which wins) and
 * checks it, with the limits and codes of each version
 * (docs/upstream-protocol.md §3 and §5).
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

/** "URL image ≤ 10 MB". */
export const URL_IMAGE_LIMIT_BYTES = 10 * 1024 * 1024
const DOWNLOAD_TIMEOUT_MS = 5_000

export interface PhotoSource { image: string | undefined, url: string | undefined }

/** The photo's bytes, checked up to (not including) face detection; throws the refusal. */
export async function loadPhoto (source: PhotoSource, limits: PhotoLimits): Promise<Buffer> {
  const bytes = await fetchImage(source, limits)
  await checkPicture(bytes, limits)
  return bytes
}

/** A logo (LogoParam.LogoImage or LogoUrl): JPEG or PNG of any size, base64 ≤ 5 MB. */
export async function loadLogo (source: PhotoSource): Promise<Buffer> {
  const bytes = await fetchImage(source, PHOTO_LIMITS['2022-09-27'])
  await checkPicture(bytes, { ...PHOTO_LIMITS['2022-09-27'], maxSide: Number.MAX_SAFE_INTEGER, minSide: 0 })
  return bytes
}

async function fetchImage (source: PhotoSource, limits: PhotoLimits): Promise<Buffer> {
  return source.url !== undefined && source.url !== '' ? await download(source.url) : decodeBase64(source.image ?? '', limits)
}

function decodeBase64 (image: string, limits: PhotoLimits): Buffer {
  if (image === '') throw new Api3Failure('InvalidParameterValue.ImageEmpty')
  if (image.length > limits.maxBase64Chars) throw new Api3Failure(limits.base64TooLong)
  // No data: prefix and nothing but base64: the upstream fails to decode anything else.
  if (!/^[A-Za-z0-9+/\r\n]+={0,2}$/.test(image)) throw new Api3Failure('FailedOperation.ImageDecodeFailed')
  return Buffer.from(image, 'base64')
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]'])

async function download (url: string): Promise<Buffer> {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new Api3Failure('InvalidParameterValue.UrlIllegal')
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Api3Failure('InvalidParameterValue.UrlIllegal')
  // The emulator's credentials are public, so it must not fetch arbitrary addresses for whoever signs with them:
  // only this machine's, which is all a test or a local demo needs.
  if (!LOOPBACK_HOSTS.has(parsed.hostname)) throw new Api3Failure('FailedOperation.ImageDownloadError')
  try {
    const response = await request(parsed, { headersTimeout: DOWNLOAD_TIMEOUT_MS, bodyTimeout: DOWNLOAD_TIMEOUT_MS })
    if (response.statusCode !== 200) {
      await response.body.dump()
      throw new Error(`HTTP ${response.statusCode}`)
    }
    const chunks: Buffer[] = []
    let length = 0
    for await (const chunk of response.body) {
      length += (chunk as Buffer).length
      if (length > URL_IMAGE_LIMIT_BYTES) {
        response.body.destroy()
        throw new Api3Failure('FailedOperation.ImageSizeExceed')
      }
      chunks.push(chunk as Buffer)
    }
    if (length === 0) throw new Api3Failure('InvalidParameterValue.ImageEmpty')
    return Buffer.concat(chunks)
  } catch (error) {
    if (error instanceof Api3Failure) throw error
    throw new Api3Failure('FailedOperation.ImageDownloadError')
  }
}

async function checkPicture (bytes: Buffer, limits: PhotoLimits): Promise<void> {
  let width: number
  let height: number
  try {
    // The header alone, without the pixel limit: a decompression bomb is "too large", not undecodable.
    const metadata = await sharp(bytes, { limitInputPixels: false }).metadata()
    if (metadata.format !== 'jpeg' && metadata.format !== 'png') throw new Error('jpg and png only')
    width = metadata.width ?? 0
    height = metadata.height ?? 0
  } catch {
    throw new Api3Failure('FailedOperation.ImageDecodeFailed')
  }
  if (width > limits.maxSide || height > limits.maxSide) throw new Api3Failure('FailedOperation.ImageResolutionExceed')
  if (width <= limits.minSide || height <= limits.minSide) throw new Api3Failure('FailedOperation.ImageResolutionTooSmall')
  try {
    // The header alone says nothing of a truncated file: decode the pixels.
    await sharp(bytes).stats()
  } catch {
    throw new Api3Failure('FailedOperation.ImageDecodeFailed')
  }
}

/** The face the caller pointed at (InputImageFaceRect), or the whole photo; refuses a photo without a face. */
export async function faceOf (photo: Buffer, rect: FaceRect | undefined, limits: PhotoLimits): Promise<Buffer> {
  let face = photo
  if (rect !== undefined) {
    const { width = 0, height = 0 } = await sharp(photo).metadata()
    if (rect.X + rect.Width > width || rect.Y + rect.Height > height) {
      throw new Api3Failure('InvalidParameterValue.FaceRectParameterValueError', 'InputImageFaceRect lies outside the photo.')
    }
    face = await sharp(photo).extract({ left: rect.X, top: rect.Y, width: rect.Width, height: rect.Height }).png().toBuffer()
  }
  if (await looksFaceless(face)) throw new Api3Failure(limits.noFace)
  return face
}
