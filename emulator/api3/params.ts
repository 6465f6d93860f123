import { Api3Failure } from './errors.js'

/**
 * The parameters of each API 3.0 action and version, as the official SDK
 * models declare them, and the generic checks API 3.0 applies before any
 * product logic: unknown names (UnknownParameter), then absent required ones
 * (MissingParameter), then wrong JSON types (InvalidParameterValue).
 * A JSON null counts as absent: the SDKs omit unset fields, never send null.
 */
export type ParamKind = 'string' | 'integer' | 'object' | 'array'
export interface Param { kind: ParamKind, required?: boolean }
export type ParamSpec = Readonly<Record<string, Param>>
export type Fields = Record<string, unknown>

const string = (required = false): Param => ({ kind: 'string', required })
const integer = (required = false): Param => ({ kind: 'integer', required })
const object = (required = false): Param => ({ kind: 'object', required })
const array = (required = false): Param => ({ kind: 'array', required })

const FACE_RECT: ParamSpec = { X: integer(true), Y: integer(true), Width: integer(true), Height: integer(true) }
const FUSE_PARAM: ParamSpec = { ImageCodecParam: object() }
const IMAGE_CODEC_PARAM: ParamSpec = { MetaData: array() }
const META_DATA: ParamSpec = { MetaKey: string(), MetaValue: string() }
export const LOGO_PARAM: ParamSpec = { LogoRect: object(), LogoUrl: string(), LogoImage: string() }

const FUSION_COMMON: ParamSpec = { ProjectId: string(true), ModelId: string(true), RspImgType: string(true), FuseParam: object() }

export const MERGE_INFO: Readonly<Record<Api3Version, ParamSpec>> = {
  '2018-12-01': { Image: string(), Url: string(), InputImageFaceRect: object(), TemplateFaceID: string() },
  '2022-09-27': { Image: string(), Url: string(), InputImageFaceRect: object(), TemplateFaceID: string(), TemplateFaceRect: object() }
}

export const API3_VERSIONS = ['2018-12-01', '2022-09-27'] as const
export type Api3Version = typeof API3_VERSIONS[number]
export const API3_ACTIONS = ['FaceFusion', 'FuseFace', 'DescribeMaterialList'] as const
export type Api3Action = typeof API3_ACTIONS[number]

/** undefined: the action does not exist in that version. */
export const ACTION_PARAMS: Readonly<Record<Api3Action, Partial<Record<Api3Version, ParamSpec>>>> = {
  FaceFusion: {
    '2018-12-01': { ...FUSION_COMMON, Image: string(), Url: string(), PornDetect: integer(), CelebrityIdentify: integer() }
  },
  FuseFace: {
    '2018-12-01': {
      ...FUSION_COMMON,
      MergeInfos: array(true),
      FuseProfileDegree: integer(),
      FuseFaceDegree: integer(),
      CelebrityIdentify: integer()
    },
    '2022-09-27': {
      ...FUSION_COMMON,
      MergeInfos: array(true),
      FuseProfileDegree: integer(),
      FuseFaceDegree: integer(),
      LogoAdd: integer(),
      LogoParam: object()
    }
  },
  DescribeMaterialList: {
    '2018-12-01': { ActivityId: integer(true), MaterialId: string(), Limit: integer(), Offset: integer() },
    '2022-09-27': { ActivityId: string(true), MaterialId: string(), Limit: integer(), Offset: integer() }
  }
}

function hasKind (value: unknown, kind: ParamKind): boolean {
  switch (kind) {
    case 'string': return typeof value === 'string'
    case 'integer': return Number.isSafeInteger(value)
    case 'object': return isObject(value)
    case 'array': return Array.isArray(value)
  }
}

export function isObject (value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

const present = (value: unknown): boolean => value !== undefined && value !== null

/** Throws the first problem, in the order API 3.0 reports them. `path` prefixes names in messages (e.g. `MergeInfos.0.`). */
export function checkParams (fields: Fields, spec: ParamSpec, path = ''): void {
  const unknown = Object.keys(fields).find((name) => !Object.hasOwn(spec, name))
  if (unknown !== undefined) throw new Api3Failure('UnknownParameter', `The parameter \`${path}${unknown}\` is not recognized.`)
  for (const [name, param] of Object.entries(spec)) {
    if (param.required === true && !present(fields[name])) {
      throw new Api3Failure('MissingParameter', `The request is missing the required parameter \`${path}${name}\`.`)
    }
  }
  for (const [name, param] of Object.entries(spec)) {
    const value = fields[name]
    if (present(value) && !hasKind(value, param.kind)) {
      throw new Api3Failure('InvalidParameterValue', `The value type of parameter \`${path}${name}\` is not valid: expected ${param.kind}.`)
    }
  }
}

/** Read after checkParams: the value is of the declared kind or absent. */
export function text (fields: Fields, name: string): string | undefined {
  const value = fields[name]
  return typeof value === 'string' ? value : undefined
}

export function int (fields: Fields, name: string): number | undefined {
  const value = fields[name]
  return typeof value === 'number' ? value : undefined
}

export function child (fields: Fields, name: string): Fields | undefined {
  const value = fields[name]
  return isObject(value) ? value : undefined
}

export function list (fields: Fields, name: string): unknown[] | undefined {
  const value = fields[name]
  return Array.isArray(value) ? value : undefined
}

/** An integer within [min, max], or absent; anything else is InvalidParameterValue. */
export function intInRange (fields: Fields, name: string, min: number, max: number): number | undefined {
  const value = int(fields, name)
  if (value !== undefined && (value < min || value > max)) {
    throw new Api3Failure('InvalidParameterValue', `The value of parameter \`${name}\` must be between ${min} and ${max}.`)
  }
  return value
}

export interface FaceRect { X: number, Y: number, Width: number, Height: number }

/** A FaceRect: four integers, width and height at least `minSide` (and at most `maxSide`). */
export function faceRect (
  fields: Fields | undefined, path: string, minSide: number, maxSide = Number.MAX_SAFE_INTEGER
): FaceRect | undefined {
  if (fields === undefined) return undefined
  checkParams(fields, FACE_RECT, `${path}.`)
  const rect = { X: int(fields, 'X')!, Y: int(fields, 'Y')!, Width: int(fields, 'Width')!, Height: int(fields, 'Height')! }
  if (rect.X < 0 || rect.Y < 0 || rect.Width < minSide || rect.Height < minSide || rect.Width > maxSide || rect.Height > maxSide) {
    throw new Api3Failure(
      'InvalidParameterValue.FaceRectParameterValueError',
      `\`${path}\` must lie in the image, each side between ${minSide} and ${Math.min(maxSide, 99999)}.`
    )
  }
  return rect
}

/** FuseParam: at most one MetaData entry, MetaKey ≤ 32 and MetaValue ≤ 256 characters. */
export function checkFuseParam (fields: Fields | undefined): void {
  if (fields === undefined) return
  checkParams(fields, FUSE_PARAM, 'FuseParam.')
  const codec = child(fields, 'ImageCodecParam')
  if (codec === undefined) return
  checkParams(codec, IMAGE_CODEC_PARAM, 'FuseParam.ImageCodecParam.')
  const entries = list(codec, 'MetaData') ?? []
  if (entries.length > 1) throw new Api3Failure('InvalidParameterValue', 'FuseParam.ImageCodecParam.MetaData holds at most one entry.')
  for (const entry of entries) {
    if (!isObject(entry)) throw new Api3Failure('InvalidParameterValue', 'FuseParam.ImageCodecParam.MetaData entries are objects.')
    checkParams(entry, META_DATA, 'FuseParam.ImageCodecParam.MetaData.0.')
    if ((text(entry, 'MetaKey') ?? '').length > 32 || (text(entry, 'MetaValue') ?? '').length > 256) {
      throw new Api3Failure('InvalidParameterValue', 'MetaKey is at most 32 characters and MetaValue at most 256.')
    }
  }
}
