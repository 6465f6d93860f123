import { randomUUID } from 'node:crypto'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { api3KeyFor } from '../shared/accounts.js'
import { frequencyControl } from '../shared/frequency-control.js'
import { emulatorUrl, header } from '../shared/http.js'
import type { ResultStore } from '../shared/result-store.js'
import { findTemplateByModelId, materialPicture } from '../shared/templates.js'
import type { EmulatorOptions } from '../options.js'
import { Api3Failure } from './errors.js'
import { faceFusion, fuseFace, type FusionContext } from './fusion.js'
import { describeMaterialList } from './materials.js'
import {
  ACTION_PARAMS, API3_ACTIONS, API3_VERSIONS, checkParams, isObject, type Api3Action, type Api3Version, type Fields
} from './params.js'
import type { OwnPicture } from './photo.js'
import { verifyTc3 } from './verify-tc3.js'

/**
 * API 3.0 (`facefusion`, TC3-HMAC-SHA256) at `POST /` under the plugin's
 * prefix, as Tencent's SDKs call it: every answer is HTTP 200 with
 * `{"Response": {…, "RequestId"}}`, failures as `Response.Error`. The checks
 * run in the order the upstream applies them: Content-Type, signature, action,
 * version, region, body, parameters, then the action itself.
 */
export const API3_BODY_LIMIT_BYTES = 10 * 1024 * 1024

const API3_REGIONS = ['ap-beijing', 'ap-guangzhou', 'ap-shanghai', 'ap-chengdu', 'ap-chongqing', 'ap-nanjing'] as const

const API3_SERVICE = 'facefusion'

/** The body is JSON, signed as sent; the charset parameter is allowed (the official signing example uses it). */
function checkContentType (request: FastifyRequest): void {
  const contentType = header(request.headers, 'content-type') ?? ''
  if (!/^application\/json\s*(;|$)/i.test(contentType.trim())) {
    throw new Api3Failure('InvalidRequest', 'Content-Type must be application/json.')
  }
}

function required (request: FastifyRequest, name: string): string {
  const value = header(request.headers, name)?.trim()
  if (value === undefined || value === '') {
    throw new Api3Failure('MissingParameter', `The request is missing the required parameter \`${name}\`.`)
  }
  return value
}

function actionAndVersion (request: FastifyRequest): { action: Api3Action, version: Api3Version } {
  const action = required(request, 'x-tc-action')
  if (!(API3_ACTIONS as readonly string[]).includes(action)) {
    throw new Api3Failure('InvalidAction', `The action \`${action}\` does not exist.`)
  }
  const version = required(request, 'x-tc-version')
  if (!(API3_VERSIONS as readonly string[]).includes(version)) {
    throw new Api3Failure('NoSuchVersion', `The version \`${version}\` does not exist.`)
  }
  const known = { action: action as Api3Action, version: version as Api3Version }
  if (ACTION_PARAMS[known.action][known.version] === undefined) {
    throw new Api3Failure('InvalidAction', `The action \`${action}\` does not exist in version ${version}.`)
  }
  return known
}

function checkRegion (request: FastifyRequest): void {
  const region = required(request, 'x-tc-region')
  if (!(API3_REGIONS as readonly string[]).includes(region)) {
    throw new Api3Failure('UnsupportedRegion', `The region \`${region}\` is not supported.`)
  }
}

function parseBody (body: Buffer): Fields {
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    throw new Api3Failure('InvalidParameter', 'The request body is not valid JSON.')
  }
  if (!isObject(parsed)) throw new Api3Failure('InvalidParameter', 'The request body must be a JSON object.')
  return parsed
}

const OWN_RESULT = /^results\/([0-9a-f-]{36})\.jpg$/
const OWN_MATERIAL = /^materials\/([A-Za-z0-9_]+)\.jpg$/

/**
 * What a `Url` may name: a result or a material's picture of this emulator, at
 * the URL it answers them under (same scheme, host and port as the request,
 * under the plugin's prefix). Their bytes come from memory: nothing is
 * requested, so no URL reaches another service or port, and every other URL is
 * refused alike.
 */
function ownPictures (app: FastifyInstance, request: FastifyRequest, results: ResultStore): OwnPicture {
  return async (url) => {
    let base: URL
    try {
      base = new URL(emulatorUrl(app, request, '/'))
    } catch {
      return undefined
    }
    if (url.origin !== base.origin || url.username !== '' || url.password !== '' || !url.pathname.startsWith(base.pathname)) {
      return undefined
    }
    const path = url.pathname.slice(base.pathname.length)
    const result = OWN_RESULT.exec(path)
    if (result !== null) return results.get(result[1]!)
    const material = OWN_MATERIAL.exec(path)
    const template = material === null ? undefined : findTemplateByModelId(material[1]!)
    return template === undefined ? undefined : await materialPicture(template)
  }
}

export function registerApi3 (app: FastifyInstance, options: EmulatorOptions, results: ResultStore): void {
  const clock = options.clock ?? Date.now
  const overQps = frequencyControl(options.qps ?? 0, clock)
  const faults = options.faults === true

  const send = (reply: FastifyReply, response: Fields, outcome: string): FastifyReply => {
    options.onV3Answer?.(outcome)
    // The client learns the server's time from Date: TC3 refuses a timestamp five minutes off.
    return reply.code(200).header('date', new Date(clock()).toUTCString()).type('application/json')
      .send({ Response: { ...response, RequestId: randomUUID() } })
  }
  const refuse = (reply: FastifyReply, failure: Api3Failure): FastifyReply =>
    send(reply, { Error: { Code: failure.code, Message: failure.message } }, failure.code)

  async function answer (request: FastifyRequest, body: Buffer): Promise<Fields> {
    checkContentType(request)
    const path = (request.raw.url ?? '/').split('?')[0] ?? '/'
    const verdict = verifyTc3({
      headers: request.headers,
      body,
      keyFor: api3KeyFor,
      nowSeconds: Math.floor(clock() / 1000),
      service: API3_SERVICE,
      path
    })
    if (!verdict.ok) throw new Api3Failure(verdict.code, verdict.message)
    const { action, version } = actionAndVersion(request)
    checkRegion(request)
    const params = parseBody(body)
    checkParams(params, ACTION_PARAMS[action][version]!)
    if (action === 'DescribeMaterialList') {
      return describeMaterialList(params, version, (modelId) => emulatorUrl(app, request, `/materials/${modelId}.jpg`), faults)
    }
    const context: FusionContext = {
      version,
      secretId: verdict.secretId,
      overQps,
      faults,
      publish: (image) => emulatorUrl(app, request, `/results/${results.put(image)}.jpg`),
      ownPicture: ownPictures(app, request, results),
      onPhoto: options.onPhoto
    }
    return action === 'FaceFusion' ? await faceFusion(params, context) : await fuseFace(params, context)
  }

  app.post('/', {
    bodyLimit: API3_BODY_LIMIT_BYTES,
    // Failures before the handler (body too large, unreadable body) are API 3.0 answers too.
    errorHandler: (error: FastifyError, request, reply) => {
      if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return refuse(reply, new Api3Failure('RequestSizeLimitExceeded'))
      if ((error.statusCode ?? 500) < 500) return refuse(reply, new Api3Failure('InvalidRequest', error.message))
      request.log.error({ err: error }, 'emulator fault')
      return refuse(reply, new Api3Failure('InternalError'))
    }
  }, async (request, reply) => {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    options.onV3Request?.({ headers: request.headers, body })
    try {
      return send(reply, await answer(request, body), 'OK')
    } catch (error) {
      if (error instanceof Api3Failure) return refuse(reply, error)
      throw error
    }
  })
}
