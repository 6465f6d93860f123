import { fusionError, isFusionError, type FusionError } from '../../errors.js'
import type { V3Action, V3Credentials, V3Version } from '../settings.js'
import { NO_SUCH_ACTIVITY, failWithRule } from '../code-rules.js'
import {
  createExchange, failFromHttpStatus, isHttpUrl, jsonObject, retryAfterFrom, type ExchangeOptions, type UpstreamAnswer
} from '../http-exchange.js'
import { jsonWithPhoto } from '../json-body.js'
import type { FusionOption, FusionProvider, FusionRequest, FusionResult, TemplateInfo, UpstreamLogger } from '../provider.js'
import { SIGNATURE_EXPIRED, ruleForV3Code } from './error-codes.js'
import { tc3Sign } from './tc3-sign.js'

/**
 * The API 3.0 client (`facefusion`, TC3-HMAC-SHA256): FuseFace 2022-09-27 by
 * default, FuseFace 2018-12-01 or FaceFusion 2018-12-01 for older activities,
 * and DescribeMaterialList for GET /templates.
 */
export interface V3ClientOptions extends Omit<ExchangeOptions, 'provider'> {
  url: string
  mode: 'tencent' | 'emulator'
  credentials: V3Credentials
  region: string
  action: V3Action
  version: V3Version
  /** Epoch milliseconds; injectable for tests. */
  clock?: () => number
}

const SERVICE = 'facefusion'
/** Exactly as signed: a client that adds "; charset=utf-8" on its own breaks the signature. */
const CONTENT_TYPE = 'application/json'

/** FaceFusion and FuseFace result URLs work for 7 days (30 before mid-2021; FuseFaceUltra's, not used here, for 1). */
const V3_RESULT_URL_LIFETIME_SECONDS = 7 * 86_400

function supportedOptions (action: V3Action, version: V3Version): Set<FusionOption> {
  if (action === 'FaceFusion') return new Set()
  const options = new Set<FusionOption>(['profileDegree', 'faceDegree', 'templateFaceId'])
  if (version === '2022-09-27') options.add('logoAdd')
  return options
}

/** Material states a front-end can use: approved, approved on appeal, approved by machine review. */
const USABLE_MATERIAL_STATES = new Set([1, 11, 21])
const MATERIAL_PAGE_SIZE = 20
const MAX_MATERIALS = 1_000

export interface V3SigningInput {
  credentials: V3Credentials
  url: URL
  action: string
  version: string
  region: string
  /** Unix seconds. */
  timestamp: number
  body: Buffer
}

/**
 * Every header of a signed API 3.0 call. Signs content-type and host (the URL's
 * host name, as Tencent's own SDK does) over the URL's path.
 */
export function signedV3Headers (input: V3SigningInput): Record<string, string> {
  const { authorization } = tc3Sign({
    secretId: input.credentials.secretId,
    secretKey: input.credentials.secretKey,
    service: SERVICE,
    host: input.url.hostname,
    path: input.url.pathname,
    timestamp: input.timestamp,
    contentType: CONTENT_TYPE,
    payload: input.body
  })
  return {
    'content-type': CONTENT_TYPE,
    authorization,
    'x-tc-action': input.action,
    'x-tc-version': input.version,
    'x-tc-timestamp': String(input.timestamp),
    'x-tc-region': input.region,
    ...(input.credentials.sessionToken !== undefined ? { 'x-tc-token': input.credentials.sessionToken } : {})
  }
}

export function createV3Client (options: V3ClientOptions): FusionProvider {
  const exchange = createExchange({ ...options, provider: 'v3' })
  const url = new URL(options.url)
  const clock = options.clock ?? Date.now
  // How far the upstream's clock is ahead of ours, learnt from its Date header when it says our signature expired.
  let skewMs = 0

  async function send<T> (
    action: string,
    projectId: string,
    body: Buffer,
    request: Pick<FusionRequest, 'signal' | 'stop' | 'deadline'>,
    log: UpstreamLogger | undefined,
    read: (response: Record<string, unknown>) => T
  ): Promise<T> {
    return await exchange.call({
      url,
      projectId,
      // Built for every attempt: a retry after an expired signature signs on the clock learnt below.
      headers: () => signedV3Headers({
        credentials: options.credentials,
        url,
        action,
        version: options.version,
        region: options.region,
        timestamp: Math.floor((clock() + skewMs) / 1000),
        body
      }),
      body,
      request,
      log,
      action,
      successCode: 'OK',
      interpret: (answer) => {
        try {
          return read(responseOf(answer))
        } catch (error) {
          if (isFusionError(error) && error.upstreamCode === SIGNATURE_EXPIRED) learnClock(error, answer, log)
          throw error
        }
      }
    })
  }

  /**
   * Our clock is more than five minutes off the upstream's: the next attempt signs on its time, when its Date header
   * told it, and may be sent again (the retries of upstream/retrying.ts, each with a budget slot).
   */
  function learnClock (error: FusionError, answer: UpstreamAnswer, log: UpstreamLogger | undefined): void {
    const serverDate = Date.parse(String(answer.headers.date ?? ''))
    if (!Number.isNaN(serverDate)) skewMs = serverDate - clock()
    error.retryable = true
    log?.warn({ upstream: { provider: 'v3', clockSkewMs: skewMs } }, 'the upstream says our signature expired: re-signing with its clock')
  }

  async function fuse (request: FusionRequest, log?: UpstreamLogger): Promise<FusionResult> {
    const field = options.action === 'FaceFusion' ? 'Image' : 'FusedImage'
    return await send(
      options.action, request.projectId, v3FusionBody(options.action, options.version, request), request, log, (response) => {
        const image = response[field]
        if (request.resultType === 'url') {
          if (typeof image !== 'string' || !isHttpUrl(image)) {
            throw fusionError('FUSION_UPSTREAM_BAD_RESPONSE', { cause: new Error(`success without a ${field} URL`) })
          }
          return { resultType: 'url', imageUrl: image }
        }
        if (typeof image !== 'string' || image === '' || isHttpUrl(image)) {
          throw fusionError('FUSION_UPSTREAM_BAD_RESPONSE', { cause: new Error(`success without base64 ${field}`) })
        }
        return { resultType: 'base64', imageBase64: image.replace(/^data:[^,]*,/, '') }
      }
    )
  }

  /** Every page within one deadline: a listing never outlasts the request that asked for it. */
  async function listTemplates (projectId: string, log?: UpstreamLogger, deadline?: number): Promise<TemplateInfo[]> {
    // 2018-12-01 numbers activities; 2022-09-27 names them with strings.
    if (options.version === '2018-12-01' && !/^\d{1,15}$/.test(projectId)) {
      throw fusionError('FUSION_TEMPLATE_NOT_FOUND', { message: NO_SUCH_ACTIVITY })
    }
    const activityId = options.version === '2018-12-01' ? Number(projectId) : projectId
    const templates: TemplateInfo[] = []
    for (let offset = 0; offset < MAX_MATERIALS; offset += MATERIAL_PAGE_SIZE) {
      const body = Buffer.from(JSON.stringify({ ActivityId: activityId, Limit: MATERIAL_PAGE_SIZE, Offset: offset }))
      const { materials, count, pageLength } = await send(
        'DescribeMaterialList', projectId, body, deadline !== undefined ? { deadline } : {}, log, readMaterials
      ).catch((error: unknown) => {
        // Listing an activity, "not found" is about the activity, not a template.
        if (isFusionError(error) && error.code === 'FUSION_TEMPLATE_NOT_FOUND') {
          throw fusionError('FUSION_TEMPLATE_NOT_FOUND', {
            message: NO_SUCH_ACTIVITY,
            ...(error.upstreamCode !== undefined ? { upstreamCode: error.upstreamCode } : {})
          })
        }
        throw error
      })
      templates.push(...materials.filter((material) => material.usable).map((material) => material.template(projectId)))
      if (pageLength < MATERIAL_PAGE_SIZE || offset + MATERIAL_PAGE_SIZE >= count) break
    }
    return templates
  }

  return {
    fuse,
    listTemplates,
    resultUrlLifetimeSeconds: V3_RESULT_URL_LIFETIME_SECONDS,
    supportedOptions: supportedOptions(options.action, options.version),
    describe: () => ({
      provider: 'v3',
      mode: options.mode,
      origin: url.origin,
      action: options.action,
      version: options.version,
      region: options.region
    }),
    close: exchange.close
  }
}

/**
 * The request body as bytes, the photo's base64 written once. Field order
 * follows Tencent's API reference, which is also what its SDK sends.
 */
export function v3FusionBody (action: V3Action, version: V3Version, request: FusionRequest): Buffer {
  const ids = `{"ProjectId":${JSON.stringify(request.projectId)},"ModelId":${JSON.stringify(request.modelId)},` +
    `"RspImgType":${JSON.stringify(request.resultType)},`
  if (action === 'FaceFusion') return jsonWithPhoto(`${ids}"Image":"`, request.image, '"}')
  const options = request.options ?? {}
  let tail = '"'
  if (options.templateFaceId !== undefined) tail += `,"TemplateFaceID":${JSON.stringify(options.templateFaceId)}`
  tail += '}]'
  if (options.profileDegree !== undefined) tail += `,"FuseProfileDegree":${options.profileDegree}`
  if (options.faceDegree !== undefined) tail += `,"FuseFaceDegree":${options.faceDegree}`
  if (options.logoAdd !== undefined && version === '2022-09-27') tail += `,"LogoAdd":${options.logoAdd ? 1 : 0}`
  return jsonWithPhoto(`${ids}"MergeInfos":[{"Image":"`, request.image, `${tail}}`)
}

/** The `Response` object of an answer; an `Error` in it becomes our error. */
function responseOf (answer: UpstreamAnswer): Record<string, unknown> {
  const response = jsonObject(answer.text)?.Response
  if (typeof response !== 'object' || response === null || Array.isArray(response)) failFromHttpStatus(answer, 'no Response')
  const record = response as Record<string, unknown>
  const error = record.Error as { Code?: unknown } | null | undefined
  if (error !== undefined && error !== null) {
    const raw = typeof error.Code === 'string' || typeof error.Code === 'number' ? String(error.Code) : ''
    const code = raw !== '' ? raw : 'missing'
    failWithRule(ruleForV3Code(code), code, retryAfterFrom(answer.headers))
  }
  return record
}

/** The objects of an array from the answer; anything else in it (null, strings) is skipped. */
function objectsIn (value: unknown): Array<Record<string, unknown>> {
  if (!Array.isArray(value)) return []
  return value.filter((item): item is Record<string, unknown> => typeof item === 'object' && item !== null && !Array.isArray(item))
}

/** A face of a material: its id (a `template_face_id`) and, when given, its box in template pixels. */
function faceOf (face: Record<string, unknown>): NonNullable<TemplateInfo['faces']>[number] {
  const rect = objectsIn([face.FaceInfo])[0] ?? {}
  return {
    faceId: String(face.FaceId),
    ...(typeof rect.X === 'number' ? { x: rect.X } : {}),
    ...(typeof rect.Y === 'number' ? { y: rect.Y } : {}),
    ...(typeof rect.Width === 'number' ? { width: rect.Width } : {}),
    ...(typeof rect.Height === 'number' ? { height: rect.Height } : {})
  }
}

interface Material { usable: boolean, template: (projectId: string) => TemplateInfo }

function readMaterials (response: Record<string, unknown>): { materials: Material[], count: number, pageLength: number } {
  const infos = objectsIn(response.MaterialInfos)
  const materials = infos.filter((info) => typeof info.MaterialId === 'string').map((info): Material => ({
    usable: info.MaterialStatus === undefined || USABLE_MATERIAL_STATES.has(Number(info.MaterialStatus)),
    template: (projectId) => ({
      projectId,
      modelId: info.MaterialId as string,
      ...(typeof info.MaterialName === 'string' && info.MaterialName !== '' ? { name: info.MaterialName } : {}),
      ...(typeof info.Url === 'string' && isHttpUrl(info.Url) ? { previewUrl: info.Url } : {}),
      faces: objectsIn(info.MaterialFaceList)
        .filter((face) => typeof face.FaceId === 'string' || typeof face.FaceId === 'number')
        .map(faceOf)
    })
  }))
  // Without a Count, paging goes on until a page comes back short.
  const count = typeof response.Count === 'number' ? response.Count : Infinity
  return { materials, count, pageLength: infos.length }
}
