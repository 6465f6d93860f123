import sharp from 'sharp'
import { MAX_INPUT_PIXELS } from './photo.js'
import { renderTemplate, type Template, type FaceSlot } from './templates.js'

/**
 * The emulator's "fusion": the most salient region of the user's photo (sharp's
 * attention strategy, which favours skin tones and contrast — a face, usually)
 * cut to the template's oval face slot with a feathered edge, and composited
 * into the template. Not Tencent's algorithm, but a real picture made from the
 * user's photo, so a developer sees their own face come back.
 */
export async function blendIntoTemplate (photo: Buffer, template: Template & { slot: FaceSlot }): Promise<Buffer> {
  const { slot } = template
  const width = slot.rx * 2
  const height = slot.ry * 2
  const feather = Math.round(Math.min(width, height) * 0.06)

  const mask = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
    `<defs><filter id="f"><feGaussianBlur stdDeviation="${feather}"/></filter></defs>` +
    `<ellipse cx="${slot.rx}" cy="${slot.ry}" rx="${slot.rx - feather * 1.5}" ry="${slot.ry - feather * 1.5}" ` +
    'fill="#fff" filter="url(#f)"/>' +
    '</svg>'
  )

  const face = await sharp(photo, { limitInputPixels: MAX_INPUT_PIXELS })
    .resize({ width, height, fit: 'cover', position: sharp.strategy.attention })
    // A warm tint so the face sits in the scene's light instead of looking pasted.
    .modulate({ saturation: 1.05, brightness: 1.02 })
    .ensureAlpha()
    .composite([{ input: mask, blend: 'dest-in' }])
    .png()
    .toBuffer()

  return await sharp(await renderTemplate(template))
    .composite([{ input: face, left: slot.cx - slot.rx, top: slot.cy - slot.ry }])
    .jpeg({ quality: 88 })
    .toBuffer()
}

/**
 * A photo with almost no variation (a blank wall, a solid colour) has no face
 * to find: the upstream answers such photos with ret 1000.
 */
export async function looksFaceless (photo: Buffer): Promise<boolean> {
  const stats = await sharp(photo, { limitInputPixels: MAX_INPUT_PIXELS }).greyscale().resize(64, 64, { fit: 'inside' }).stats()
  const deviation = stats.channels[0]?.stdev ?? 0
  return deviation < 6
}
