import sharp from 'sharp'
import { looksFaceless } from '../shared/blend.js'
import {
  checkPhotoHeader, decodeBase64Photo, decodePhotoPixels, pixelLimit, PhotoRefused,
  type CheckedPhoto, type PhotoFault, type PhotoRules
} from '../shared/photo.js'
import { Api3Failure } from './errors.js'
import type { Api3Version, FaceRect } from './params.js'

export type { CheckedPhoto }

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
 *
 * PhotoLimits are the shared checker's rules (shared/photo.ts) plus the codes that differ by version.
 */
export interface PhotoLimits extends PhotoRules {
  base64TooLong: string
  noFace: string
}

const API3_FORMATS = ['jpeg', 'png'] as const

export const PHOTO_LIMITS: Readonly<Record<Api3Version, PhotoLimits>> = {
  // 2018-12-01: the original "≤ 500 KB, ≤ 1080×1080".
  '2018-12-01': {
    formats: API3_FORMATS,
    maxBase64Chars: 500 * 1024,
    base64TooLong: 'FailedOperation.ImageSizeExceedFiveHundredKB',
    maxSide: 1080,
    minSide: 64,
    noFace: 'FailedOperation.FuseDetectNoFace'
  },
  // 2022-09-27: "> 64×64 and < 4096×4096, base64 ≤ 5 MB".
  '2022-09-27': {
    formats: API3_FORMATS,
    maxBase64Chars: 5 * 1024 * 1024,
    base64TooLong: 'FailedOperation.ImageSizeExceed',
    maxSide: 4095,
    minSide: 64,
    noFace: 'FailedOperation.NoFaceDetected'
  }
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
 * undefined when it names anything else (route.ts decides what is its own).
 */
export type OwnPicture = (url: URL) => Promise<Buffer | undefined>

/** The photo's bytes with its header checked, without decoding a pixel; throws the refusal. */
export async function readPhoto (source: PhotoSource, limits: PhotoLimits, ownPicture: OwnPicture): Promise<CheckedPhoto> {
  const bytes = await fetchImage(source, limits, ownPicture)
  return await refusedAs(limits, async () => await checkPhotoHeader(bytes, limits))
}

/** The photo read and fully decoded, checked up to (not including) face detection; throws the refusal. */
export async function loadPhoto (source: PhotoSource, limits: PhotoLimits, ownPicture: OwnPicture): Promise<CheckedPhoto> {
  const photo = await readPhoto(source, limits, ownPicture)
  await refusedAs(limits, async () => { await decodePhotoPixels(photo.bytes, limits) })
  return photo
}

export async function loadLogo (source: PhotoSource, ownPicture: OwnPicture): Promise<Buffer> {
  return (await loadPhoto(source, LOGO_LIMITS, ownPicture)).bytes
}

async function fetchImage (source: PhotoSource, limits: PhotoLimits, ownPicture: OwnPicture): Promise<Buffer> {
  if (source.url !== undefined && source.url !== '') return await pictureAt(source.url, ownPicture)
  const image = source.image ?? ''
  return await refusedAs(limits, async () => decodeBase64Photo(image, limits))
}

/** The shared checker's refusal as this version's code. */
const FAULT_CODES: Readonly<Record<Exclude<PhotoFault, 'too-long'>, string>> = {
  empty: 'InvalidParameterValue.ImageEmpty',
  undecodable: 'FailedOperation.ImageDecodeFailed',
  'too-large': 'FailedOperation.ImageResolutionExceed',
  'too-small': 'FailedOperation.ImageResolutionTooSmall'
}

async function refusedAs<T> (limits: PhotoLimits, check: () => Promise<T>): Promise<T> {
  try {
    return await check()
  } catch (error) {
    if (!(error instanceof PhotoRefused)) throw error
    throw new Api3Failure(error.fault === 'too-long' ? limits.base64TooLong : FAULT_CODES[error.fault])
  }
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
