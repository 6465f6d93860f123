import { Api3Failure, forcedCode } from './errors.js'
import {
  MERGE_INFO, LOGO_PARAM, checkFuseParam, checkParams, child, faceRect, int, intInRange, isObject, list, text,
  type Api3Version, type FaceRect, type Fields
} from './params.js'
import {
  PHOTO_LIMITS, checkFaceRect, faceOf, loadLogo, loadPhoto, readPhoto, type OwnPicture, type PhotoLimits, type PhotoSource
} from './photo.js'
import { blendIntoTemplate } from '../shared/blend.js'
import { addLogo, type LogoChoice } from './logo.js'
import { findProject, findTemplate, templatesOf, type FaceSlot, type Template } from '../shared/templates.js'

/**
 * FaceFusion (2018-12-01) and FuseFace (2018-12-01, 2022-09-27). Parameter
 * names and kinds are already checked (params.ts); this checks values,
 * then the activity, frequency control, fault injection, the material, the
 * photos, and fuses with the same picture-making as the legacy route.
 */
export interface FusionContext {
  version: Api3Version
  secretId: string
  /** Counts the call against the activity's quota; true when over it. */
  overQps: (key: string) => boolean
  /** Whether fault-injection material ids force their codes (EmulatorOptions.faults). */
  faults: boolean
  /** Stores a result and answers the URL it is served at. */
  publish: (image: Buffer) => string
  /** What a `Url` or `LogoUrl` may name: the emulator's own pictures, never fetched (api3-photo.ts). */
  ownPicture: OwnPicture
  onPhoto: ((photo: Buffer) => void) | undefined
}

type RspImgType = 'url' | 'base64'

const MAX_MERGE_INFOS = 6
/** "InputImageFaceRect: Width, Height ≥ 30". */
const MIN_FACE_RECT_SIDE = 30
const MAX_LOGO_RECT_SIDE = 2160

function rspImgType (params: Fields): RspImgType {
  const value = text(params, 'RspImgType')
  if (value !== 'url' && value !== 'base64') throw new Api3Failure('InvalidParameterValue', 'RspImgType must be url or base64.')
  return value
}

/** The activity and material, after frequency control and fault injection (in that order, as on the legacy side). */
async function material (params: Fields, context: FusionContext): Promise<Template> {
  const projectId = text(params, 'ProjectId')!
  const modelId = text(params, 'ModelId')!
  if (findProject(projectId) === undefined) throw new Api3Failure('InvalidParameterValue.ActivityIdNotFound')
  // Counted per known activity only, so random ids cannot grow the counters.
  if (context.overQps(`${context.secretId}/${projectId}`)) throw new Api3Failure('RequestLimitExceeded')
  const forced = context.faults ? forcedCode(modelId) : undefined
  // A forced code without an API 3.0 equivalent is answered normally, with the activity's first material that has a face.
  if (forced === 'normal') return templatesOf(projectId).find((template) => template.slot !== undefined) ?? templatesOf(projectId)[0]!
  if (forced !== undefined) throw new Api3Failure(forced)
  const template = findTemplate(projectId, modelId)
  if (template === undefined) throw new Api3Failure('InvalidParameterValue.MaterialIdNotFound')
  return template
}

/** The face slot a MergeInfo targets: TemplateFaceID, or the material's largest (only) face. */
function targetSlot (template: Template, templateFaceId: string | undefined): FaceSlot {
  const face = templateFaceId === undefined ? template.faces[0] : template.faces.find((candidate) => candidate.faceId === templateFaceId)
  if (face === undefined || template.slot === undefined) {
    throw new Api3Failure(
      'FailedOperation.TemplateFaceIDNotExist',
      template.faces.length === 0 ? '素材中没有人脸。' : `素材中没有人脸 ${templateFaceId ?? ''}。`
    )
  }
  return template.slot
}

async function userFace (source: PhotoSource, rect: FaceRect | undefined, limits: PhotoLimits, context: FusionContext): Promise<Buffer> {
  const photo = await loadPhoto(source, limits, context.ownPicture)
  context.onPhoto?.(photo.bytes)
  return await faceOf(photo, rect, limits)
}

async function deliver (fused: Buffer, type: RspImgType, context: FusionContext): Promise<string> {
  return type === 'base64' ? fused.toString('base64') : context.publish(fused)
}

/** The content review of each face: the emulator finds nothing to object to. */
function reviewResults (count: number): Fields[] {
  return Array.from({ length: count }, () => ({
    Category: 'Politics',
    Code: '0',
    CodeDescription: 'OK',
    Confidence: 0,
    Suggestion: 'PASS',
    DetailSet: [{ Field: '', Label: '', Confidence: 0, Suggestion: 'PASS' }]
  }))
}

export async function faceFusion (params: Fields, context: FusionContext): Promise<Fields> {
  const type = rspImgType(params)
  const image = text(params, 'Image')
  const url = text(params, 'Url')
  if (image === undefined && url === undefined) {
    throw new Api3Failure('MissingParameter', 'The request is missing the required parameter `Image`.')
  }
  intInRange(params, 'PornDetect', 0, 1)
  const celebrity = intInRange(params, 'CelebrityIdentify', 0, 1) ?? 0
  checkFuseParam(child(params, 'FuseParam'))

  const template = await material(params, context)
  const slot = targetSlot(template, undefined)
  const face = await userFace({ image, url }, undefined, PHOTO_LIMITS[context.version], context)
  const fused = await blendIntoTemplate(face, { ...template, slot })
  return { Image: await deliver(fused, type, context), ReviewResultSet: reviewResults(celebrity) }
}

interface MergeInfo {
  image: string | undefined
  url: string | undefined
  inputRect: FaceRect | undefined
  templateFaceId: string | undefined
}

function mergeInfos (params: Fields, version: Api3Version): MergeInfo[] {
  const entries = list(params, 'MergeInfos')!
  if (entries.length < 1 || entries.length > MAX_MERGE_INFOS) {
    throw new Api3Failure('InvalidParameterValue', `MergeInfos holds 1 to ${MAX_MERGE_INFOS} entries.`)
  }
  return entries.map((entry, index) => {
    const path = `MergeInfos.${index}`
    if (!isObject(entry)) throw new Api3Failure('InvalidParameterValue', `\`${path}\` must be an object.`)
    checkParams(entry, MERGE_INFO[version], `${path}.`)
    faceRect(child(entry, 'TemplateFaceRect'), `${path}.TemplateFaceRect`, MIN_FACE_RECT_SIDE)
    return {
      image: text(entry, 'Image'),
      url: text(entry, 'Url'),
      inputRect: faceRect(child(entry, 'InputImageFaceRect'), `${path}.InputImageFaceRect`, MIN_FACE_RECT_SIDE),
      templateFaceId: text(entry, 'TemplateFaceID')
    }
  })
}

interface LogoRequest { source: PhotoSource | undefined, rect: FaceRect | undefined }

/** LogoAdd: default 1, 0 disables, any other value means 1. Only 2022-09-27 knows it. */
function logoRequest (params: Fields, version: Api3Version): LogoRequest | undefined {
  if (version !== '2022-09-27') return undefined
  const logo = child(params, 'LogoParam')
  if (logo !== undefined) checkParams(logo, LOGO_PARAM, 'LogoParam.')
  const rect = faceRect(logo === undefined ? undefined : child(logo, 'LogoRect'), 'LogoParam.LogoRect', 1, MAX_LOGO_RECT_SIDE)
  if (int(params, 'LogoAdd') === 0) return undefined
  const image = logo === undefined ? undefined : text(logo, 'LogoImage')
  const url = logo === undefined ? undefined : text(logo, 'LogoUrl')
  return { source: image !== undefined || url !== undefined ? { image, url } : undefined, rect }
}

async function markLogo (fused: Buffer, logo: LogoRequest | undefined, ownPicture: OwnPicture): Promise<Buffer> {
  if (logo === undefined) return fused
  const choice: LogoChoice = { image: logo.source === undefined ? undefined : await loadLogo(logo.source, ownPicture), rect: logo.rect }
  return await addLogo(fused, choice)
}

export async function fuseFace (params: Fields, context: FusionContext): Promise<Fields> {
  const { version } = context
  const type = rspImgType(params)
  intInRange(params, 'FuseProfileDegree', 0, 100)
  intInRange(params, 'FuseFaceDegree', 0, 100)
  const celebrity = intInRange(params, 'CelebrityIdentify', 0, 1) ?? 0
  checkFuseParam(child(params, 'FuseParam'))
  const infos = mergeInfos(params, version)
  const logo = logoRequest(params, version)

  const template = await material(params, context)
  const slots = infos.map((info) => targetSlot(template, info.templateFaceId))
  const limits = PHOTO_LIMITS[version]
  // Every material has at most one face: the first MergeInfo aimed at it fills it. Only that photo is
  // decoded (and searched for a face); the others are read and their headers checked, in order.
  let face: Buffer | undefined
  for (const [index, info] of infos.entries()) {
    if (info.url === undefined && info.image === undefined) throw new Api3Failure('InvalidParameterValue.ImageEmpty')
    if (index === 0) {
      face = await userFace(info, info.inputRect, limits, context)
    } else {
      checkFaceRect(await readPhoto(info, limits, context.ownPicture), info.inputRect)
    }
  }
  const fused = await blendIntoTemplate(face!, { ...template, slot: slots[0]! })
  const marked = await markLogo(fused, logo, context.ownPicture)
  const answer: Fields = { FusedImage: await deliver(marked, type, context) }
  if (version === '2018-12-01') answer.ReviewResultSet = reviewResults(celebrity === 1 ? infos.length : 0)
  return answer
}
