import { fusionError } from '../../errors.js'
import type { LegacyCredentials } from '../settings.js'
import { failWithRule } from '../code-rules.js'
import {
  createExchange, failFromHttpStatus, isHttpUrl, jsonObject, retryAfterFrom, type ExchangeOptions, type UpstreamAnswer
} from '../http-exchange.js'
import type { FusionProvider, FusionRequest, FusionResult, UpstreamLogger } from '../provider.js'
import { jsonWithPhoto } from '../json-body.js'
import { signLegacyNow } from './sign.js'
import { LEGACY_RET_CODES, UNKNOWN_RET_CODE, parseRet } from './ret-codes.js'

export interface LegacyClientOptions extends Omit<ExchangeOptions, 'provider'> {
  url: string
  mode: 'tencent' | 'emulator'
  credentials: LegacyCredentials
  signatureTtlSeconds: number
}

/**
 * The legacy API does not document how long its result URLs last; API 3.0's
 * last 7 days. One day is the cautious assumption: a stored idempotent reply
 * is never replayed past it.
 */
const LEGACY_RESULT_URL_LIFETIME_SECONDS = 86_400

export function createLegacyClient (options: LegacyClientOptions): FusionProvider {
  const exchange = createExchange({ ...options, provider: 'legacy' })
  const url = new URL(options.url)

  async function fuse (request: FusionRequest, log?: UpstreamLogger): Promise<FusionResult> {
    return await exchange.call({
      url,
      projectId: request.projectId,
      headers: () => ({
        'content-type': 'application/json',
        authorization: signLegacyNow(options.credentials, options.signatureTtlSeconds)
      }),
      body: legacyBody(options.credentials, request),
      request,
      log,
      action: 'fuse',
      successCode: '0',
      interpret: (answer) => interpret(answer, request.resultType)
    })
  }

  return {
    fuse,
    resultUrlLifetimeSeconds: LEGACY_RESULT_URL_LIFETIME_SECONDS,
    supportedOptions: new Set(),
    describe: () => ({ provider: 'legacy', mode: options.mode, origin: url.origin }),
    close: exchange.close
  }
}

/** The JSON body as bytes, the photo's base64 written once. */
function legacyBody (credentials: LegacyCredentials, request: FusionRequest): Buffer {
  return jsonWithPhoto(
    `{"appid":${JSON.stringify(credentials.appId)},"uin":${JSON.stringify(credentials.uin)},` +
    `"project_id":${JSON.stringify(request.projectId)},"model_id":${JSON.stringify(request.modelId)},` +
    `"rsp_img_type":${JSON.stringify(request.resultType)},"img_data":"`,
    request.image,
    '"}'
  )
}

function interpret (answer: UpstreamAnswer, resultType: FusionRequest['resultType']): FusionResult {
  const record = jsonObject(answer.text)
  const ret = record ? parseRet(record.ret) : undefined
  if (ret === undefined) failFromHttpStatus(answer, 'no ret')
  if (ret !== 0) failWithRule(LEGACY_RET_CODES.get(ret) ?? UNKNOWN_RET_CODE, String(ret), retryAfterFrom(answer.headers))

  if (resultType === 'url') {
    const imageUrl = record?.img_url
    if (typeof imageUrl !== 'string' || !isHttpUrl(imageUrl)) {
      throw fusionError('FUSION_UPSTREAM_BAD_RESPONSE', { cause: new Error('ret 0 without an img_url') })
    }
    return { resultType: 'url', imageUrl }
  }
  // The 2018-11 docs return base64 in img_base64; the older tables put it in img_url.
  const candidate = typeof record?.img_base64 === 'string' && record.img_base64 !== ''
    ? record.img_base64
    : record?.img_url
  if (typeof candidate !== 'string' || candidate === '' || isHttpUrl(candidate)) {
    throw fusionError('FUSION_UPSTREAM_BAD_RESPONSE', { cause: new Error('ret 0 without base64 image data') })
  }
  return { resultType: 'base64', imageBase64: candidate.replace(/^data:[^,]*,/, '') }
}
