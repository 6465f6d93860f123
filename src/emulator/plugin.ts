import sharp from 'sharp'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify'
import { EMULATOR_ACCOUNT } from './accounts.js'
import { registerApi3 } from './api3.js'
import { frequencyControl } from './frequency-control.js'
import { emulatorUrl, ResultStore } from './result-store.js'
import { verifyLegacySignature } from './verify-signature.js'
import { findLegacyProject, findTemplate, modelExists, type FaceSlot, type Template } from './templates.js'
import { blendIntoTemplate, looksFaceless } from './blend.js'
import { BASE64_TEXT } from './shared.js'

/**
 * A stand-in for `POST aiconsole.cloud.tencent.com/fuseapi/face`, faithful to
 * the documented protocol: signature checked, fields and limits enforced,
 * documented `ret` codes and messages, results served at the URLs it returns.
 * It also speaks API 3.0 at `POST /` (api3.ts).
 *
 * Tests reach every other code through the material id `emulator_ret_<code>`
 * (in any known activity), and the frequency control through `qps`.
 */
export interface EmulatorOptions {
  /** How `ret` is written: the docs show both "0" and 0. Default 'string'. */
  retType?: 'string' | 'number'
  /** Where a base64 result goes: the 2018-11 example uses img_base64, older tables img_url. Default 'img_base64'. */
  base64Field?: 'img_base64' | 'img_url'
  /**
   * Requests per second allowed per activity and caller (appid on the legacy route, SecretId on
   * API 3.0's fusion actions); 0 turns frequency control off. Default 0.
   */
  qps?: number
  /** Milliseconds; injectable for tests. */
  clock?: () => number
  /** How many results are kept for their URLs (oldest dropped first). Default 256. */
  maxStoredResults?: number
  /**
   * Sees every photo that passed the upstream's checks and is fused, as received: lets tests inspect what
   * was sent. (Of several FuseFace MergeInfos only the first is fused; the others are not passed here.)
   */
  onPhoto?: (photo: Buffer) => void
  /** Sees every `ret` the emulator answers with: lets tests count frequency-control rejections. */
  onAnswer?: (ret: number) => void
  /** Sees every API 3.0 request before any check, with the exact body bytes: lets tests compare signatures. */
  onV3Request?: (request: { headers: Record<string, string | string[] | undefined>, body: Buffer }) => void
  /** Sees every API 3.0 answer: `Response.Error.Code`, or 'OK' for success. */
  onV3Answer?: (code: string) => void
}

export const LEGACY_BODY_LIMIT_BYTES = 6 * 1024 * 1024
export const LEGACY_IMAGE_LIMIT_BYTES = 500 * 1024
export const LEGACY_IMAGE_MAX_SIDE = 1080

/** The upstream's own wording, from the documented error table. */
const RET_MESSAGES: Record<number, string> = {
  0: '成功',
  1000: '无人脸',
  [-1]: '用户身份不合法',
  [-3]: '图片尺寸太大',
  [-4]: '识别人脸出错',
  [-5]: '平台内部错误',
  [-6]: '必填的参数字段或者值有误',
  [-7]: '鉴权信息过期',
  [-8]: '模板无人脸',
  [-9]: '账号已欠费',
  [-1000]: '必填的参数字段或者值有误',
  [-1001]: '图像处理错误',
  [-1002]: '读写CKV出错',
  [-1003]: '读写REDIS出错',
  [-1004]: '保存结果图片出错',
  [-1005]: '下载用户图片出错',
  [-1007]: '服务器内部逻辑出错',
  [-1008]: '人脸检测失败',
  [-1009]: '请求值不是规范的json格式',
  [-2011]: '访问频率超出限制',
  [-2012]: '访问频率超出限制',
  [-2013]: '访问频率超出限制',
  [-2014]: '访问频率超出限制',
  [-2015]: '访问频率超出限制',
  [-2100]: 'http头错误',
  [-2102]: '图片操作功能不存在',
  [-2103]: '图片操作功能无权限',
  [-20001]: '鉴权信息为空',
  [-20002]: '鉴权信息解析错误',
  [-20003]: '鉴权失败',
  [-20004]: '操作太频繁，触发频控',
  [-20005]: '后端服务故障',
  [-20006]: '包体不是json格式',
  [-20007]: 'model_id为空',
  [-20008]: 'project_id为空',
  [-20009]: 'image_data为空',
  [-20010]: 'rsp_img_type为空',
  [-20011]: 'appid为空',
  [-20012]: 'uin为空',
  [-20013]: '域名无效，2018年12月1日后创建的活动请使用云API 3.0'
}

export const DOCUMENTED_RET_CODES = Object.keys(RET_MESSAGES).map(Number)

const FORCED_RET = /^emulator_ret_(-?\d{1,6})$/

const accounts = [EMULATOR_ACCOUNT.credentials]

export const emulatorPlugin: FastifyPluginAsync<EmulatorOptions> = async (app: FastifyInstance, options) => {
  const retType = options.retType ?? 'string'
  const base64Field = options.base64Field ?? 'img_base64'
  const qps = options.qps ?? 0
  const clock = options.clock ?? Date.now
  const results = new ResultStore(options.maxStoredResults ?? 256)
  const overQps = frequencyControl(qps, clock)

  const answer = (reply: FastifyReply, ret: number, extra: Record<string, unknown> = {}, status = 200): FastifyReply => {
    options.onAnswer?.(ret)
    return reply.code(status).type('application/json').send({
      ret: retType === 'string' ? String(ret) : ret,
      msg: RET_MESSAGES[ret] ?? '未知错误',
      ...extra
    })
  }

  // The upstream reads the raw body itself: a wrong Content-Type is its own
  // code (-2100), not a framework 415, and a non-JSON body is -20006. Bytes,
  // not text: API 3.0 signs the exact body (its route raises the limit to 10 MB).
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: LEGACY_BODY_LIMIT_BYTES }, (_request, body, done) => {
    done(null, body)
  })

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
    const text = (name: string): string => (typeof fields[name] === 'string' ? (fields[name] as string) : fields[name] === undefined || fields[name] === null ? '' : String(fields[name]))

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

    const forced = FORCED_RET.exec(modelId)
    if (forced !== null) return answer(reply, Number(forced[1]))

    const template = findTemplate(projectId, modelId)
    if (template === undefined) return answer(reply, modelExists(modelId) ? -2103 : -2102)

    const checked = await checkPhoto(text('img_data'))
    if (typeof checked === 'number') return answer(reply, checked)
    options.onPhoto?.(checked)
    if (await looksFaceless(checked)) return answer(reply, 1000)
    if (template.slot === undefined) return answer(reply, -8)

    const fused = await blendIntoTemplate(checked, template as Template & { slot: FaceSlot })
    if (rspImgType === 'base64') return answer(reply, 0, { [base64Field]: fused.toString('base64') })

    return answer(reply, 0, { img_url: emulatorUrl(app, request, `/results/${results.put(fused)}.jpg`) })
  })

  registerApi3(app, options, results)

  app.get<{ Params: { id: string } }>('/results/:id', async (request, reply) => {
    const id = request.params.id.replace(/\.jpg$/, '')
    const image = results.get(id)
    if (image === undefined) return await reply.code(404).type('text/plain').send('not found')
    return await reply.type('image/jpeg').header('cache-control', 'private, max-age=3600').send(image)
  })
}

/** Decodes and checks the photo as the upstream does. Returns the bytes, or the ret code refusing them. */
async function checkPhoto (imgData: string): Promise<Buffer | number> {
  // The docs forbid a data: prefix; anything but plain base64 fails to decode upstream.
  if (!BASE64_TEXT.test(imgData)) return -1001
  const bytes = Buffer.from(imgData, 'base64')
  if (bytes.length > LEGACY_IMAGE_LIMIT_BYTES) return -3
  try {
    // The header alone (metadata() decodes no pixel): a decompression bomb is "too large" (-3), and is never decoded.
    const metadata = await sharp(bytes, { limitInputPixels: false }).metadata()
    if (metadata.format === 'gif' || (metadata.pages ?? 1) > 1) return -1001
    if (!['jpeg', 'png', 'webp'].includes(metadata.format ?? '')) return -1001
    if ((metadata.width ?? 0) > LEGACY_IMAGE_MAX_SIDE || (metadata.height ?? 0) > LEGACY_IMAGE_MAX_SIDE) return -3
    await sharp(bytes, { limitInputPixels: LEGACY_IMAGE_MAX_SIDE * LEGACY_IMAGE_MAX_SIDE }).stats()
  } catch {
    return -1001
  }
  return bytes
}
