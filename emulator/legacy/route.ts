import type { FastifyInstance, FastifyReply } from 'fastify'
import { EMULATOR_ACCOUNT } from '../shared/accounts.js'
import { blendIntoTemplate, looksFaceless } from '../shared/blend.js'
import { forcedRet } from '../shared/forced.js'
import { frequencyControl } from '../shared/frequency-control.js'
import { emulatorUrl } from '../shared/http.js'
import { checkPhoto, decodeBase64Photo, PhotoRefused, type PhotoFault, type PhotoRules } from '../shared/photo.js'
import type { ResultStore } from '../shared/result-store.js'
import { findLegacyProject, findTemplate, modelExists, type FaceSlot, type Template } from '../shared/templates.js'
import type { EmulatorOptions } from '../options.js'
import { RET_MESSAGES } from './ret-codes.js'
import { verifyLegacySignature } from './verify-signature.js'

/**
 * A stand-in for `POST aiconsole.cloud.tencent.com/fuseapi/face`, faithful to
 * the documented protocol: signature checked, fields and limits enforced,
 * documented `ret` codes and messages, results served at the URLs it returns.
 */
export const LEGACY_BODY_LIMIT_BYTES = 6 * 1024 * 1024
export const LEGACY_IMAGE_LIMIT_BYTES = 500 * 1024
export const LEGACY_IMAGE_MAX_SIDE = 1080

/** The photo as the legacy upstream takes it: ≤ 500 KB decoded, JPEG, PNG or a still WebP, ≤ 1080 × 1080. */
const LEGACY_PHOTO: PhotoRules = {
  maxBytes: LEGACY_IMAGE_LIMIT_BYTES,
  formats: ['jpeg', 'png', 'webp'],
  singleFrame: true,
  maxSide: LEGACY_IMAGE_MAX_SIDE,
  minSide: 0
}

/** The shared checker's refusals as `ret` codes: a picture too large in bytes or sides is -3, anything unreadable -1001. */
const PHOTO_RET: Readonly<Record<PhotoFault, number>> = {
  empty: -20009,
  'too-long': -3,
  'too-large': -3,
  undecodable: -1001,
  'too-small': -1001
}

const accounts = [EMULATOR_ACCOUNT.credentials]

/**
 * Registers `POST /fuseapi/face`. It also sets the plugin's error handler,
 * which answers in `ret` codes (API 3.0's route sets its own).
 */
export function registerLegacy (app: FastifyInstance, options: EmulatorOptions, results: ResultStore): void {
  const retType = options.retType ?? 'string'
  const base64Field = options.base64Field ?? 'img_base64'
  const clock = options.clock ?? Date.now
  const overQps = frequencyControl(options.qps ?? 0, clock)

  const answer = (reply: FastifyReply, ret: number, extra: Record<string, unknown> = {}, status = 200): FastifyReply => {
    options.onAnswer?.(ret)
    return reply.code(status).type('application/json').send({
      ret: retType === 'string' ? String(ret) : ret,
      msg: RET_MESSAGES[ret] ?? '未知错误',
      ...extra
    })
  }

  app.setErrorHandler(async (error: Error & { statusCode?: number, code?: string }, _request, reply) => {
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return answer(reply, -3, {}, 413)
    if ((error.statusCode ?? 500) < 500) return answer(reply, -20006, {}, 400)
    app.log.error({ err: error }, 'emulator fault')
    return answer(reply, -20005, {}, 500)
  })

  app.post('/fuseapi/face', async (request, reply) => {
    const verdict = verifyLegacySignature(
      typeof request.headers.authorization === 'string' ? request.headers.authorization : undefined,
      (secretId) => accounts.find((account) => account.secretId === secretId)?.secretKey,
      Math.floor(clock() / 1000)
    )
    if (!verdict.ok) return answer(reply, verdict.ret)

    const contentType = String(request.headers['content-type'] ?? '')
    if (!/^application\/json\b/i.test(contentType)) return answer(reply, -2100)

    let body: unknown
    try {
      body = JSON.parse(Buffer.isBuffer(request.body) ? request.body.toString('utf8') : '')
    } catch {
      return answer(reply, -20006)
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return answer(reply, -1009)
    const fields = body as Record<string, unknown>
    const text = (name: string): string => (
      typeof fields[name] === 'string'
        ? (fields[name] as string)
        : fields[name] === undefined || fields[name] === null ? '' : String(fields[name])
    )

    const required: Array<[string, number]> = [
      ['appid', -20011], ['uin', -20012], ['project_id', -20008], ['model_id', -20007], ['img_data', -20009], ['rsp_img_type', -20010]
    ]
    for (const [name, ret] of required) {
      if (text(name).trim() === '') return answer(reply, ret)
    }
    const account = accounts.find((candidate) => candidate.secretId === verdict.secretId)
    if (account === undefined || text('appid') !== verdict.appId || text('appid') !== account.appId || text('uin') !== account.uin) {
      return answer(reply, -1)
    }
    const rspImgType = text('rsp_img_type')
    if (rspImgType !== 'url' && rspImgType !== 'base64') return answer(reply, -6)

    const projectId = text('project_id')
    const modelId = text('model_id')
    const project = findLegacyProject(projectId)
    if (project === undefined) return answer(reply, -2103)
    // Counted per known activity only, so random ids cannot grow the counters.
    if (overQps(`${verdict.appId}/${projectId}`)) return answer(reply, -20004)
    if (project.requiresApi3) return answer(reply, -20013)

    const forced = options.faults === true ? forcedRet(modelId) : undefined
    if (forced !== undefined) return answer(reply, forced)

    const template = findTemplate(projectId, modelId)
    if (template === undefined) return answer(reply, modelExists(modelId) ? -2103 : -2102)

    const checked = await checkLegacyPhoto(text('img_data'))
    if (typeof checked === 'number') return answer(reply, checked)
    options.onPhoto?.(checked)
    if (await looksFaceless(checked)) return answer(reply, 1000)
    if (template.slot === undefined) return answer(reply, -8)

    const fused = await blendIntoTemplate(checked, template as Template & { slot: FaceSlot })
    if (rspImgType === 'base64') return answer(reply, 0, { [base64Field]: fused.toString('base64') })

    return answer(reply, 0, { img_url: emulatorUrl(app, request, `/results/${results.put(fused)}.jpg`) })
  })
}

/** Decodes and checks the photo as the upstream does. Returns the bytes, or the ret code refusing them. */
async function checkLegacyPhoto (imgData: string): Promise<Buffer | number> {
  try {
    // The docs forbid a data: prefix; anything but plain base64 fails to decode upstream.
    return (await checkPhoto(decodeBase64Photo(imgData, LEGACY_PHOTO), LEGACY_PHOTO)).bytes
  } catch (error) {
    if (error instanceof PhotoRefused) return PHOTO_RET[error.fault]
    throw error
  }
}
