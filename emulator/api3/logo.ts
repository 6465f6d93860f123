import sharp from 'sharp'
import { Api3Failure } from './errors.js'
import type { FaceRect } from './params.js'
import { MAX_INPUT_PIXELS } from '../shared/photo.js'

/**
 * FuseFace 2022-09-27 marks its results as AI-made ("本图片为AI合成图片",
 * bottom-right) unless LogoAdd is 0. The emulator draws a badge of shapes in
 * that corner instead of the text, so nothing depends on installed fonts and a
 * test can still see whether the mark is there.
 */
export const BADGE = { width: 236, height: 56, margin: 16 } as const

function badgeSvg (): Buffer {
  const { width, height } = BADGE
  const bars = [0, 1, 2, 3, 4].map((i) =>
    `<rect x="${64 + i * 32}" y="${height / 2 - 5}" width="24" height="10" rx="3" fill="#ffffff"/>`).join('')
  return Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
    `<rect width="${width}" height="${height}" rx="12" fill="#101820" fill-opacity="0.78"/>` +
    `<circle cx="32" cy="${height / 2}" r="16" fill="none" stroke="#ffffff" stroke-width="4"/>` +
    `<path d="M25 ${height / 2 + 7} L32 ${height / 2 - 9} L39 ${height / 2 + 7}" fill="none" stroke="#ffffff" stroke-width="3"/>` +
    `${bars}</svg>`
  )
}

/** LogoParam: the caller's logo (else the badge), in the caller's rect (else bottom-right, at the badge's size). */
export interface LogoChoice { image: Buffer | undefined, rect: FaceRect | undefined }

export async function addLogo (picture: Buffer, choice: LogoChoice = { image: undefined, rect: undefined }): Promise<Buffer> {
  const { width = 0, height = 0 } = await sharp(picture, { limitInputPixels: MAX_INPUT_PIXELS }).metadata()
  const { rect } = choice
  if (rect !== undefined && (rect.X >= width || rect.Y >= height)) {
    throw new Api3Failure('InvalidParameterValue', 'LogoParam.LogoRect lies outside the result.')
  }
  const overlay = await fitLogo(choice.image ?? badgeSvg(), rect, width, height)
  const size = await sharp(overlay, { limitInputPixels: MAX_INPUT_PIXELS }).metadata()
  const left = rect?.X ?? width - (size.width ?? 0) - BADGE.margin
  const top = rect?.Y ?? height - (size.height ?? 0) - BADGE.margin
  return await sharp(picture, { limitInputPixels: MAX_INPUT_PIXELS })
    .composite([{ input: overlay, left: Math.max(0, left), top: Math.max(0, top) }])
    .jpeg({ quality: 88 })
    .toBuffer()
}

/** The logo scaled into its box, and never beyond the picture's edges. */
async function fitLogo (image: Buffer, rect: FaceRect | undefined, width: number, height: number): Promise<Buffer> {
  const boxWidth = Math.min(rect?.Width ?? BADGE.width, width - (rect?.X ?? 0))
  const boxHeight = Math.min(rect?.Height ?? BADGE.height, height - (rect?.Y ?? 0))
  return await sharp(image, { limitInputPixels: MAX_INPUT_PIXELS })
    .resize({ width: Math.max(1, boxWidth), height: Math.max(1, boxHeight), fit: 'inside' })
    .png()
    .toBuffer()
}
