import t, { type Test } from 'tap'
import sharp from 'sharp'
import Fastify from 'fastify'
import { request } from 'undici'
import { EMULATOR_ACCOUNT, EMULATOR_TEMPORARY_CREDENTIAL } from '../../../emulator/shared/accounts.js'
import { API3_BODY_LIMIT_BYTES } from '../../../emulator/api3/route.js'
import { DOCUMENTED_V3_ERROR_CODES, LEGACY_RET_TO_V3, V3_ERROR_MESSAGES } from '../../../emulator/api3/errors.js'
import { BADGE } from '../../../emulator/api3/logo.js'
import { DOCUMENTED_RET_CODES } from '../../../emulator/legacy/ret-codes.js'
import { emulatorPlugin, type EmulatorOptions } from '../../../emulator/plugin.js'
import { API3_ONLY_MODEL_ID, API3_ONLY_PROJECT_ID } from '../../../emulator/shared/templates.js'
import { signLegacyNow } from '../../../src/upstream/legacy/sign.js'
import { tc3Sign } from '../../../src/upstream/v3/tc3-sign.js'
import { fixture, post, startEmulator, stubUpstream, type Reply } from '../../helper.js'
import { pngDeclaring } from '../declared-png.js'

const permanent = { secretId: EMULATOR_ACCOUNT.credentials.secretId, secretKey: EMULATOR_ACCOUNT.credentials.secretKey }
const photo = fixture('face.jpg').toString('base64')
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

interface CallOptions {
  action?: string
  version?: string
  /** null: the header is not sent. */
  region?: string | null
  timestamp?: number
  credential?: { secretId: string, secretKey: string }
  token?: string
  /** What is signed; also what is sent unless `sentContentType` says otherwise. */
  contentType?: string
  sentContentType?: string
  /** Headers left out after signing. */
  omit?: string[]
  /** A body other than the JSON of `params`. */
  raw?: string | Buffer
}

/** A request as Tencent's SDKs send it: TC3-signed over content-type and host, to POST `${base}/`. */
async function call (base: string, params: unknown, options: CallOptions = {}): Promise<Reply> {
  const body = options.raw ?? JSON.stringify(params)
  const host = new URL(base).host
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000)
  const contentType = options.contentType ?? 'application/json'
  const credential = options.credential ?? permanent
  const signature = tc3Sign({ ...credential, service: 'facefusion', host, timestamp, contentType, payload: body })
  const headers: Record<string, string> = {
    authorization: signature.authorization,
    'content-type': options.sentContentType ?? contentType,
    'x-tc-action': options.action ?? 'FuseFace',
    'x-tc-version': options.version ?? '2022-09-27',
    'x-tc-timestamp': String(timestamp),
    ...(options.region === null ? {} : { 'x-tc-region': options.region ?? 'ap-guangzhou' }),
    ...(options.token === undefined ? {} : { 'x-tc-token': options.token })
  }
  for (const name of options.omit ?? []) delete headers[name]
  return await post(`${base}/`, body, headers)
}

/** Every answer is HTTP 200 with a RequestId; the outcome is Response.Error.Code, or 'OK'. */
function outcome (t: Test, reply: Reply): string {
  t.equal(reply.status, 200, 'HTTP 200')
  const { Response: response } = reply.json()
  t.match(response.RequestId, UUID, 'a RequestId')
  if (response.Error === undefined) return 'OK'
  t.type(response.Error.Message, 'string')
  return response.Error.Code
}

const fuseFace = (overrides: Record<string, unknown> = {}, mergeInfo: Record<string, unknown> = {}): Record<string, unknown> => ({
  ProjectId: '100307',
  ModelId: 'qc_100307_152854_1',
  RspImgType: 'url',
  MergeInfos: [{ Image: photo, ...mergeInfo }],
  ...overrides
})

const faceFusion = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  ProjectId: '100646', ModelId: 'qc_100646_154021_9', RspImgType: 'url', Image: photo, ...overrides
})

const v2018 = { version: '2018-12-01' }

async function fetchImage (url: string): Promise<{ status: number, type: unknown, bytes: Buffer }> {
  const reply = await request(url)
  return { status: reply.statusCode, type: reply.headers['content-type'], bytes: Buffer.from(await reply.body.arrayBuffer()) }
}

t.test('FaceFusion 2018-12-01: a URL to a 720×960 JPEG, served by the emulator; Date follows the clock', async (t) => {
  const answers: string[] = []
  const now = Date.parse('2030-01-02T03:04:05Z')
  const { url } = await startEmulator(t, { clock: () => now, onV3Answer: (code) => answers.push(code) })
  const reply = await call(url, faceFusion(), { ...v2018, action: 'FaceFusion', timestamp: now / 1000 })
  t.equal(outcome(t, reply), 'OK')
  t.equal(reply.headers.date, 'Wed, 02 Jan 2030 03:04:05 GMT', 'the server time a client can learn')
  const { Response: response } = reply.json()
  t.match(response.Image, new RegExp(`^${url}/results/[0-9a-f-]+\\.jpg$`))
  t.same(response.ReviewResultSet, [], 'no review asked for')
  const image = await fetchImage(response.Image)
  t.equal(image.status, 200)
  t.equal(image.type, 'image/jpeg')
  t.match(await sharp(image.bytes).metadata(), { format: 'jpeg', width: 720, height: 960 })
  t.same(answers, ['OK'])
})

t.test('FaceFusion with RspImgType base64, and a review when CelebrityIdentify is 1', async (t) => {
  const { url } = await startEmulator(t)
  const reply = await call(url, faceFusion({ RspImgType: 'base64', CelebrityIdentify: 1 }), { ...v2018, action: 'FaceFusion' })
  t.equal(outcome(t, reply), 'OK')
  const { Response: response } = reply.json()
  t.match(await sharp(Buffer.from(response.Image, 'base64')).metadata(), { format: 'jpeg', width: 720, height: 960 })
  t.match(response.ReviewResultSet, [{ Category: 'Politics', Code: '0', Suggestion: 'PASS' }])
})

t.test('FuseFace 2018-12-01: FusedImage and one review per MergeInfo', async (t) => {
  const { url } = await startEmulator(t)
  const reply = await call(url, fuseFace({ CelebrityIdentify: 1, FuseFaceDegree: 50, FuseProfileDegree: 0 }, { TemplateFaceID: '1' }), v2018)
  t.equal(outcome(t, reply), 'OK')
  const { Response: response } = reply.json()
  t.equal(response.ReviewResultSet.length, 1)
  const image = await fetchImage(response.FusedImage)
  t.match(await sharp(image.bytes).metadata(), { format: 'jpeg', width: 720, height: 960 })
  // The user's face is really in it: the bare template's visor is near-black (#222831).
  // stats() measures its input, not the extract: the region is cut out first.
  const visor = await sharp(await sharp(image.bytes).extract({ left: 310, top: 330, width: 100, height: 100 }).toBuffer()).stats()
  t.ok(visor.channels[0]!.mean > 100, 'the visor area holds the photo')
})

t.test('FuseFace 2022-09-27: the AI mark bottom-right unless LogoAdd is 0; no ReviewResultSet', async (t) => {
  const { url } = await startEmulator(t)
  const corner = { left: 720 - BADGE.width - BADGE.margin, top: 960 - BADGE.height - BADGE.margin, width: BADGE.width, height: BADGE.height }
  const pixels = async (logoAdd: number | undefined): Promise<{ corner: Buffer, face: Buffer }> => {
    const reply = await call(url, fuseFace({ RspImgType: 'base64', ...(logoAdd === undefined ? {} : { LogoAdd: logoAdd }) }))
    t.equal(outcome(t, reply), 'OK', `LogoAdd ${String(logoAdd)}`)
    t.notOk('ReviewResultSet' in reply.json().Response)
    const bytes = Buffer.from(reply.json().Response.FusedImage, 'base64')
    return {
      corner: await sharp(bytes).extract(corner).raw().toBuffer(),
      face: await sharp(bytes).extract({ left: 310, top: 330, width: 100, height: 100 }).raw().toBuffer()
    }
  }
  const difference = (a: Buffer, b: Buffer): number => a.reduce((sum, value, i) => sum + Math.abs(value - b[i]!), 0) / a.length
  const marked = await pixels(undefined)
  const plain = await pixels(0)
  const other = await pixels(7)
  t.ok(difference(marked.corner, plain.corner) > 20, `the corner differs (${difference(marked.corner, plain.corner).toFixed(1)})`)
  t.ok(difference(marked.face, plain.face) < 3, 'the rest of the picture does not')
  t.ok(difference(marked.corner, other.corner) < 3, 'any LogoAdd other than 0 means 1')
})

t.test('every activity is reachable, including those the legacy domain refuses or does not know', async (t) => {
  const { url, legacyUrl } = await startEmulator(t)
  const cases: Array<[string, string, string]> = [
    ['100307', 'qc_100307_152854_2', '2018-12-01'],
    ['100646', 'qc_100646_154021_9', '2022-09-27'],
    ['300001', 'qc_300001_000001_1', '2022-09-27'],
    [API3_ONLY_PROJECT_ID, API3_ONLY_MODEL_ID, '2022-09-27'],
    [API3_ONLY_PROJECT_ID, API3_ONLY_MODEL_ID, '2018-12-01']
  ]
  for (const [ProjectId, ModelId, version] of cases) {
    t.equal(outcome(t, await call(url, fuseFace({ ProjectId, ModelId, RspImgType: 'base64', LogoAdd: version === '2022-09-27' ? 0 : undefined }), { version })), 'OK', `${ProjectId}/${ModelId} in ${version}`)
  }
  const legacy = await post(legacyUrl, JSON.stringify({
    appid: EMULATOR_ACCOUNT.credentials.appId,
    uin: EMULATOR_ACCOUNT.credentials.uin,
    project_id: API3_ONLY_PROJECT_ID,
    model_id: API3_ONLY_MODEL_ID,
    img_data: photo,
    rsp_img_type: 'url'
  }), { 'content-type': 'application/json', authorization: signLegacyNow(EMULATOR_ACCOUNT.credentials, 300) })
  t.equal(legacy.json().ret, '-2103', 'the legacy route answers the 2022 activity as any unknown one')
})

t.test('mounted under a prefix, the canonical URI is still "/"', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(emulatorPlugin, { prefix: '/emulator' })
  t.teardown(async () => await app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const base = `http://127.0.0.1:${port}/emulator`
  const reply = await call(base, { ActivityId: '100307' }, { action: 'DescribeMaterialList' })
  t.equal(outcome(t, reply), 'OK')
  t.equal(outcome(t, await post(`http://127.0.0.1:${port}/emulator`, '{}', { 'content-type': 'application/json' })), 'AuthFailure.InvalidAuthorization', 'without the trailing slash too')
})

t.test('signature failures over HTTP', async (t) => {
  const { url } = await startEmulator(t)
  const params = { ActivityId: '100307' }
  const describe = { action: 'DescribeMaterialList' }
  const cases: Array<[string, CallOptions, string]> = [
    ['no Authorization', { omit: ['authorization'] }, 'AuthFailure.InvalidAuthorization'],
    ['no X-TC-Timestamp', { omit: ['x-tc-timestamp'] }, 'MissingParameter'],
    ['unknown SecretId', { credential: { secretId: 'AKIDnobody', secretKey: 'x' } }, 'AuthFailure.SecretIdNotFound'],
    ['wrong key', { credential: { ...permanent, secretKey: 'wrong' } }, 'AuthFailure.SignatureFailure'],
    ['charset added after signing', { contentType: 'application/json', sentContentType: 'application/json; charset=utf-8' }, 'AuthFailure.SignatureFailure'],
    ['charset signed and sent', { contentType: 'application/json; charset=utf-8' }, 'OK'],
    ['an hour early', { timestamp: Math.floor(Date.now() / 1000) - 3600 }, 'AuthFailure.SignatureExpire']
  ]
  for (const [name, options, code] of cases) {
    t.equal(outcome(t, await call(url, params, { ...describe, ...options })), code, name)
  }
  const signedForOther = signedHeadersFor(url, JSON.stringify(params))
  const tampered = await post(`${url}/`, JSON.stringify({ ActivityId: '100646' }), { ...signedForOther, 'x-tc-action': 'DescribeMaterialList' })
  t.equal(outcome(t, tampered), 'AuthFailure.SignatureFailure', 'a body other than the one signed')
})

/** Headers signed for `body`, for sending with another one. */
function signedHeadersFor (base: string, body: string): Record<string, string> {
  const timestamp = Math.floor(Date.now() / 1000)
  const signature = tc3Sign({ ...permanent, service: 'facefusion', host: new URL(base).host, timestamp, contentType: 'application/json', payload: body })
  return {
    authorization: signature.authorization,
    'content-type': 'application/json',
    'x-tc-version': '2022-09-27',
    'x-tc-timestamp': String(timestamp),
    'x-tc-region': 'ap-guangzhou'
  }
}

t.test('the five-minute window follows the clock option', async (t) => {
  const now = Date.parse('2031-06-01T00:00:00Z')
  const { url } = await startEmulator(t, { clock: () => now })
  const server = now / 1000
  const describe = { action: 'DescribeMaterialList' }
  for (const [offset, code] of [[-300, 'OK'], [300, 'OK'], [-301, 'AuthFailure.SignatureExpire'], [301, 'AuthFailure.SignatureExpire']] as const) {
    t.equal(outcome(t, await call(url, { ActivityId: '100307' }, { ...describe, timestamp: server + offset })), code, `timestamp ${offset} s from the server's clock`)
  }
})

t.test('the temporary credential works only with its session token', async (t) => {
  const { url } = await startEmulator(t)
  const credential = { secretId: EMULATOR_TEMPORARY_CREDENTIAL.secretId, secretKey: EMULATOR_TEMPORARY_CREDENTIAL.secretKey }
  const describe = { action: 'DescribeMaterialList', credential }
  t.equal(outcome(t, await call(url, { ActivityId: '100307' }, { ...describe, token: EMULATOR_TEMPORARY_CREDENTIAL.sessionToken })), 'OK')
  t.equal(outcome(t, await call(url, { ActivityId: '100307' }, describe)), 'AuthFailure.TokenFailure', 'without the token')
  t.equal(outcome(t, await call(url, { ActivityId: '100307' }, { ...describe, token: 'stolen' })), 'AuthFailure.TokenFailure', 'with another token')
})

t.test('onV3Request sees the exact signed request before any check', async (t) => {
  const seen: Array<{ headers: Record<string, string | string[] | undefined>, body: Buffer }> = []
  const { url } = await startEmulator(t, { onV3Request: (request) => seen.push(request) })
  const params = { ActivityId: '100307' }
  await call(url, params, { action: 'DescribeMaterialList' })
  await call(url, params, { action: 'DescribeMaterialList', omit: ['authorization'] })
  t.equal(seen.length, 2)
  const [first] = seen
  t.equal(first!.body.toString(), JSON.stringify(params))
  const recomputed = tc3Sign({
    ...permanent,
    service: 'facefusion',
    host: String(first!.headers.host),
    timestamp: Number(first!.headers['x-tc-timestamp']),
    contentType: String(first!.headers['content-type']),
    payload: first!.body
  })
  t.equal(first!.headers.authorization, recomputed.authorization)
})

t.test('protocol checks, in order', async (t) => {
  const { url } = await startEmulator(t)
  const describe = { ActivityId: '100307' }
  const cases: Array<[string, unknown, CallOptions, string]> = [
    ['Content-Type not JSON', describe, { action: 'DescribeMaterialList', contentType: 'text/plain' }, 'InvalidRequest'],
    ['Content-Type checked before the signature', describe, { action: 'DescribeMaterialList', contentType: 'text/plain', omit: ['authorization'] }, 'InvalidRequest'],
    ['the signature before the action', describe, { action: 'Nope', omit: ['authorization'] }, 'AuthFailure.InvalidAuthorization'],
    ['no X-TC-Action', describe, { omit: ['x-tc-action'] }, 'MissingParameter'],
    ['an unknown action', describe, { action: 'FuseFaceUltra' }, 'InvalidAction'],
    ['no X-TC-Version', describe, { action: 'DescribeMaterialList', omit: ['x-tc-version'] }, 'MissingParameter'],
    ['an unknown version', describe, { action: 'DescribeMaterialList', version: '2017-03-12' }, 'NoSuchVersion'],
    ['FaceFusion in 2022-09-27', faceFusion(), { action: 'FaceFusion' }, 'InvalidAction'],
    ['no X-TC-Region', describe, { action: 'DescribeMaterialList', region: null }, 'MissingParameter'],
    ['an unsupported region', describe, { action: 'DescribeMaterialList', region: 'ap-hongkong' }, 'UnsupportedRegion'],
    ['a body that is not JSON', undefined, { action: 'DescribeMaterialList', raw: 'ActivityId=1' }, 'InvalidParameter'],
    ['a body that is not an object', undefined, { action: 'DescribeMaterialList', raw: '[1]' }, 'InvalidParameter'],
    ['an empty body', undefined, { action: 'DescribeMaterialList', raw: '' }, 'InvalidParameter'],
    ['an unknown parameter', { ...describe, Foo: 1 }, { action: 'DescribeMaterialList' }, 'UnknownParameter'],
    ['a missing parameter', {}, { action: 'DescribeMaterialList' }, 'MissingParameter'],
    ['a parameter of the wrong type', { ActivityId: 100307 }, { action: 'DescribeMaterialList' }, 'InvalidParameterValue']
  ]
  for (const [name, params, options, code] of cases) {
    t.equal(outcome(t, await call(url, params, options)), code, name)
  }
})

t.test('FaceFusion and FuseFace parameter and value checks', async (t) => {
  const { url } = await startEmulator(t)
  const ff = { ...v2018, action: 'FaceFusion' }
  const cases: Array<[string, Record<string, unknown>, CallOptions, string]> = [
    ['FaceFusion without ModelId', faceFusion({ ModelId: undefined }), ff, 'MissingParameter'],
    ['FaceFusion without Image or Url', faceFusion({ Image: undefined }), ff, 'MissingParameter'],
    ['FaceFusion with an unknown parameter', faceFusion({ MergeInfos: [] }), ff, 'UnknownParameter'],
    ['RspImgType neither url nor base64', faceFusion({ RspImgType: 'file' }), ff, 'InvalidParameterValue'],
    ['CelebrityIdentify 2', faceFusion({ CelebrityIdentify: 2 }), ff, 'InvalidParameterValue'],
    ['FuseParam with two MetaData entries', faceFusion({ FuseParam: { ImageCodecParam: { MetaData: [{ MetaKey: 'a', MetaValue: 'b' }, { MetaKey: 'c', MetaValue: 'd' }] } } }), ff, 'InvalidParameterValue'],
    ['FuseFace without MergeInfos', fuseFace({ MergeInfos: undefined }), {}, 'MissingParameter'],
    ['MergeInfos empty', fuseFace({ MergeInfos: [] }), {}, 'InvalidParameterValue'],
    ['seven MergeInfos', fuseFace({ MergeInfos: Array.from({ length: 7 }, () => ({ Image: photo })) }), {}, 'InvalidParameterValue'],
    ['a MergeInfo that is not an object', fuseFace({ MergeInfos: ['x'] }), {}, 'InvalidParameterValue'],
    ['a MergeInfo with neither Image nor Url', fuseFace({ MergeInfos: [{}] }), {}, 'InvalidParameterValue.ImageEmpty'],
    ['FuseFaceDegree 101', fuseFace({ FuseFaceDegree: 101 }), {}, 'InvalidParameterValue'],
    ['FuseProfileDegree 1.5', fuseFace({ FuseProfileDegree: 1.5 }), {}, 'InvalidParameterValue'],
    ['LogoAdd in 2018-12-01', fuseFace({ LogoAdd: 0 }), v2018, 'UnknownParameter'],
    ['TemplateFaceRect in 2018-12-01', fuseFace({}, { TemplateFaceRect: { X: 0, Y: 0, Width: 40, Height: 40 } }), v2018, 'UnknownParameter'],
    ['CelebrityIdentify in 2022-09-27', fuseFace({ CelebrityIdentify: 0 }), {}, 'UnknownParameter'],
    ['LogoParam with an unknown field', fuseFace({ LogoParam: { Logo: 'x' } }), {}, 'UnknownParameter'],
    ['an InputImageFaceRect under 30 px', fuseFace({}, { InputImageFaceRect: { X: 0, Y: 0, Width: 20, Height: 200 } }), {}, 'InvalidParameterValue.FaceRectParameterValueError'],
    ['an InputImageFaceRect outside the photo', fuseFace({}, { InputImageFaceRect: { X: 500, Y: 0, Width: 200, Height: 200 } }), {}, 'InvalidParameterValue.FaceRectParameterValueError'],
    ['an unknown activity', fuseFace({ ProjectId: '999999' }), {}, 'InvalidParameterValue.ActivityIdNotFound'],
    ['an unknown material', fuseFace({ ModelId: 'qc_100307_000000_0' }), {}, 'InvalidParameterValue.MaterialIdNotFound'],
    ['a material of another activity', fuseFace({ ModelId: 'qc_100646_154021_9' }), {}, 'InvalidParameterValue.MaterialIdNotFound'],
    ['a TemplateFaceID the material lacks', fuseFace({}, { TemplateFaceID: '2' }), {}, 'FailedOperation.TemplateFaceIDNotExist'],
    ['a material without a face', fuseFace({ ModelId: 'qc_100307_152854_3' }), {}, 'FailedOperation.TemplateFaceIDNotExist'],
    ['FaceFusion on a material without a face', faceFusion({ ProjectId: '100307', ModelId: 'qc_100307_152854_3' }), ff, 'FailedOperation.TemplateFaceIDNotExist'],
    ['a Url that is not http(s)', fuseFace({}, { Url: 'ftp://example.com/a.jpg' }), {}, 'InvalidParameterValue.UrlIllegal'],
    ['a Url to a result the emulator does not hold', fuseFace({}, { Url: `${url}/results/00000000-0000-0000-0000-000000000000.jpg` }), {}, 'FailedOperation.ImageDownloadError'],
    ['a Url to a material that does not exist', fuseFace({}, { Url: `${url}/materials/nothing.jpg` }), {}, 'FailedOperation.ImageDownloadError']
  ]
  for (const [name, params, options, code] of cases) {
    t.equal(outcome(t, await call(url, params, options)), code, name)
  }
})

t.test('a Url may name the emulator\'s own results and materials, read from memory', async (t) => {
  const { url } = await startEmulator(t)
  const material = await call(url, fuseFace({ RspImgType: 'base64', LogoAdd: 0 }, { Image: undefined, Url: `${url}/materials/qc_100646_154021_9.jpg` }))
  t.equal(outcome(t, material), 'OK', 'a material\'s picture as the photo')

  const first = await call(url, fuseFace({ LogoAdd: 0 }))
  t.equal(outcome(t, first), 'OK')
  const resultUrl: string = first.json().Response.FusedImage
  t.match(resultUrl, new RegExp(`^${url}/results/[0-9a-f-]{36}\\.jpg$`))
  t.equal(outcome(t, await call(url, fuseFace({ RspImgType: 'base64', LogoAdd: 0 }, { Image: undefined, Url: resultUrl }))), 'OK', 'a result as the photo')
  t.equal(outcome(t, await call(url, faceFusion({ Image: undefined, Url: resultUrl }), { ...v2018, action: 'FaceFusion' })), 'OK', 'FaceFusion\'s Url too')
  const logo = await call(url, fuseFace({ RspImgType: 'base64', LogoParam: { LogoUrl: `${url}/materials/qc_100307_152854_2.jpg`, LogoRect: { X: 0, Y: 0, Width: 100, Height: 100 } } }))
  t.equal(outcome(t, logo), 'OK', 'a material\'s picture as LogoUrl')

  // The same paths under the plugin's prefix, on the host the request came in on.
  const app = Fastify({ logger: false })
  await app.register(emulatorPlugin, { prefix: '/emulator' })
  t.teardown(async () => await app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/emulator`
  const prefixed = (path: string): Promise<Reply> => call(base, fuseFace({ RspImgType: 'base64', LogoAdd: 0 }, { Image: undefined, Url: `${base}${path}` }))
  t.equal(outcome(t, await prefixed('/materials/qc_100646_154021_9.jpg')), 'OK', 'under a prefix')
  t.equal(outcome(t, await call(base, fuseFace({ RspImgType: 'base64', LogoAdd: 0 }, { Image: undefined, Url: `${url}/materials/qc_100646_154021_9.jpg` }))), 'FailedOperation.ImageDownloadError', 'not another emulator\'s')
  t.equal(outcome(t, await call(base, fuseFace({ RspImgType: 'base64', LogoAdd: 0 }, { Image: undefined, Url: base.replace('/emulator', '') + '/materials/qc_100646_154021_9.jpg' }))), 'FailedOperation.ImageDownloadError', 'not outside the prefix')
})

t.test('a Url is never fetched: any other address, local ports included, is ImageDownloadError without a request', async (t) => {
  const { url } = await startEmulator(t)
  const elsewhere = await stubUpstream(t, (_call, response) => {
    response.writeHead(200, { 'content-type': 'image/jpeg' }).end(fixture('face.jpg'))
  })
  const origin = new URL(elsewhere.url).origin
  const first = await call(url, fuseFace({ LogoAdd: 0 }))
  const resultPath = new URL(first.json().Response.FusedImage as string).pathname
  const emulatorPort = new URL(url).port
  const byUrl = (address: string): Record<string, unknown> => fuseFace({ LogoAdd: 0 }, { Image: undefined, Url: address })
  const refused: Array<[string, Record<string, unknown>, CallOptions]> = [
    ['a photo on another local port', byUrl(`${origin}/face.jpg`), {}],
    ['a result\'s path on another local port', byUrl(`${origin}${resultPath}`), {}],
    ['a LogoUrl on another local port', fuseFace({ LogoParam: { LogoUrl: `${origin}/logo.png` } }), {}],
    ['FaceFusion\'s Url on another local port', faceFusion({ Image: undefined, Url: `${origin}/face.jpg` }), { ...v2018, action: 'FaceFusion' }],
    ['the emulator\'s own port under another name', byUrl(`http://localhost:${emulatorPort}${resultPath}`), {}],
    ['another route of the emulator', byUrl(`${url}/fuseapi/face`), {}],
    ['credentials in the URL', byUrl(`http://user:pass@127.0.0.1:${emulatorPort}${resultPath}`), {}],
    ['an address off this machine', byUrl('http://192.0.2.1/a.jpg'), {}]
  ]
  for (const [name, params, options] of refused) {
    t.equal(outcome(t, await call(url, params, options)), 'FailedOperation.ImageDownloadError', name)
  }
  t.equal(elsewhere.calls.length, 0, 'the other server saw no request')
  t.equal(outcome(t, await call(url, fuseFace({}, { Image: undefined, Url: `ftp://127.0.0.1:${new URL(origin).port}/a.jpg` }))), 'InvalidParameterValue.UrlIllegal', 'not http(s)')
  t.equal(elsewhere.calls.length, 0)
})

t.test('decompression bombs are refused from their header, quickly', async (t) => {
  const { url } = await startEmulator(t)
  const bomb = pngDeclaring(16_000, 16_000).toString('base64')
  const cases: Array<[string, Record<string, unknown>, CallOptions, string]> = [
    ['LogoImage declaring 16000×16000', fuseFace({ LogoParam: { LogoImage: bomb } }), {}, 'FailedOperation.ImageResolutionExceed'],
    ['LogoImage declaring 4097×64', fuseFace({ LogoParam: { LogoImage: pngDeclaring(4097, 64).toString('base64') } }), {}, 'FailedOperation.ImageResolutionExceed'],
    ['an Image declaring 16000×16000', fuseFace({}, { Image: bomb }), {}, 'FailedOperation.ImageResolutionExceed'],
    ['an Image declaring 16000×16000 in 2018-12-01', fuseFace({}, { Image: bomb }), v2018, 'FailedOperation.ImageResolutionExceed'],
    ['FaceFusion\'s Image declaring 16000×16000', faceFusion({ Image: bomb }), { ...v2018, action: 'FaceFusion' }, 'FailedOperation.ImageResolutionExceed'],
    ['a later MergeInfo declaring 16000×16000', fuseFace({ MergeInfos: [{ Image: photo }, { Image: photo }, { Image: bomb }] }), {}, 'FailedOperation.ImageResolutionExceed']
  ]
  for (const [name, params, options, code] of cases) {
    const started = performance.now()
    t.equal(outcome(t, await call(url, params, options)), code, name)
    const elapsed = performance.now() - started
    t.ok(elapsed < 1500, `${name}: answered in ${elapsed.toFixed(0)} ms`)
  }
  // A logo within 4096 px is still accepted.
  const logo = (await sharp({ create: { width: 400, height: 100, channels: 3, background: '#36c' } }).png().toBuffer()).toString('base64')
  t.equal(outcome(t, await call(url, fuseFace({ RspImgType: 'base64', LogoParam: { LogoImage: logo } }))), 'OK', 'an ordinary logo')
})

t.test('of several MergeInfos only the first photo is decoded; the others\' headers and rects are checked', async (t) => {
  const photos: Buffer[] = []
  const { url } = await startEmulator(t, { onPhoto: (bytes) => photos.push(bytes) })
  const truncated = fixture('truncated.jpg').toString('base64')
  const six = fuseFace({ RspImgType: 'base64', LogoAdd: 0, MergeInfos: [{ Image: photo }, ...Array.from({ length: 5 }, () => ({ Image: truncated }))] })
  t.equal(outcome(t, await call(url, six)), 'OK', 'five unused truncated photos are never decoded')
  t.equal(photos.length, 1, 'one photo fused')
  t.equal(outcome(t, await call(url, fuseFace({ MergeInfos: [{ Image: truncated }, { Image: photo }] }))), 'FailedOperation.ImageDecodeFailed', 'the first is')
  const checks: Array<[string, Record<string, unknown>, string]> = [
    ['a later MergeInfo that is not an image', { Image: fixture('not-an-image.jpg').toString('base64') }, 'FailedOperation.ImageDecodeFailed'],
    ['a later MergeInfo that is too small', { Image: fixture('tiny.png').toString('base64') }, 'FailedOperation.ImageResolutionTooSmall'],
    ['a later MergeInfo with a rect outside its photo', { Image: photo, InputImageFaceRect: { X: 500, Y: 0, Width: 200, Height: 200 } }, 'InvalidParameterValue.FaceRectParameterValueError'],
    ['a later MergeInfo with a Url elsewhere', { Url: 'http://127.0.0.1:1/a.jpg' }, 'FailedOperation.ImageDownloadError']
  ]
  for (const [name, info, code] of checks) {
    t.equal(outcome(t, await call(url, fuseFace({ MergeInfos: [{ Image: photo }, info] }))), code, name)
  }
})

t.test('photo checks, per version', async (t) => {
  const { url } = await startEmulator(t)
  const b64 = (name: string): string => fixture(name).toString('base64')
  const wide1200 = (await sharp({ create: { width: 1200, height: 900, channels: 3, background: '#7a8' } }).jpeg().toBuffer()).toString('base64')
  const wide4096 = (await sharp({ create: { width: 4096, height: 100, channels: 3, background: '#7a8' } }).jpeg().toBuffer()).toString('base64')
  const cases: Array<[string, string, string, string]> = [
    ['empty', '', '2022-09-27', 'InvalidParameterValue.ImageEmpty'],
    ['over 500 KB of base64 in 2018-12-01', b64('face-alpha.png'), '2018-12-01', 'FailedOperation.ImageSizeExceedFiveHundredKB'],
    ['over 5 MB of base64 in 2022-09-27', 'A'.repeat(5 * 1024 * 1024 + 4), '2022-09-27', 'FailedOperation.ImageSizeExceed'],
    ['a side over 1080 in 2018-12-01', wide1200, '2018-12-01', 'FailedOperation.ImageResolutionExceed'],
    ['a side of 4096 in 2022-09-27', wide4096, '2022-09-27', 'FailedOperation.ImageResolutionExceed'],
    ['a pixel bomb', b64('pixel-bomb.png'), '2022-09-27', 'FailedOperation.ImageResolutionExceed'],
    ['a side of 64 or less', b64('tiny.png'), '2022-09-27', 'FailedOperation.ImageResolutionTooSmall'],
    ['a GIF', b64('still.gif'), '2022-09-27', 'FailedOperation.ImageDecodeFailed'],
    ['a WebP', b64('face.webp'), '2018-12-01', 'FailedOperation.ImageDecodeFailed'],
    ['not an image', b64('not-an-image.jpg'), '2022-09-27', 'FailedOperation.ImageDecodeFailed'],
    ['a truncated JPEG', b64('truncated.jpg'), '2022-09-27', 'FailedOperation.ImageDecodeFailed'],
    ['a data: prefix', `data:image/jpeg;base64,${photo}`, '2022-09-27', 'FailedOperation.ImageDecodeFailed'],
    ['no face, 2022-09-27', b64('blank.jpg'), '2022-09-27', 'FailedOperation.NoFaceDetected'],
    ['no face, 2018-12-01', b64('blank.jpg'), '2018-12-01', 'FailedOperation.FuseDetectNoFace']
  ]
  for (const [name, image, version, code] of cases) {
    t.equal(outcome(t, await call(url, fuseFace({}, { Image: image }), { version })), code, name)
  }
  t.equal(outcome(t, await call(url, faceFusion({ Image: b64('blank.jpg') }), { ...v2018, action: 'FaceFusion' })), 'FailedOperation.FuseDetectNoFace', 'FaceFusion, no face')
  t.equal(outcome(t, await call(url, fuseFace({ RspImgType: 'base64' }, { Image: b64('face-alpha.png') }))), 'OK', 'the 2018 size limit does not apply in 2022-09-27')
})

t.test('a body over 10 MB is RequestSizeLimitExceeded, still HTTP 200', async (t) => {
  const answers: string[] = []
  const { url } = await startEmulator(t, { onV3Answer: (code) => answers.push(code) })
  const reply = await call(url, undefined, { raw: `{"x":"${'A'.repeat(API3_BODY_LIMIT_BYTES)}"}` })
  t.equal(outcome(t, reply), 'RequestSizeLimitExceeded')
  t.same(answers, ['RequestSizeLimitExceeded'])
})

t.test('DescribeMaterialList pages through an activity, in each version\'s shape', async (t) => {
  const { url } = await startEmulator(t)
  const list = async (params: Record<string, unknown>, version: string): Promise<any> => {
    const reply = await call(url, params, { action: 'DescribeMaterialList', version })
    t.equal(outcome(t, reply), 'OK')
    return reply.json().Response
  }
  const first = await list({ ActivityId: 100307, Limit: 2 }, '2018-12-01')
  t.equal(first.Count, 3)
  t.same(first.MaterialInfos.map((info: { MaterialId: string }) => info.MaterialId), ['qc_100307_152854_1', 'qc_100307_152854_2'])
  t.match(first.MaterialInfos[0], {
    MaterialStatus: 1,
    Url: `${url}/materials/qc_100307_152854_1.jpg`,
    CreateTime: String,
    UpdateTime: String,
    MaterialFaceList: [{ FaceId: '1', FaceInfo: { X: 235, Y: 220, Width: 250, Height: 320 } }]
  })
  t.notOk('MaterialName' in first.MaterialInfos[0])
  const second = await list({ ActivityId: 100307, Limit: 2, Offset: 2 }, '2018-12-01')
  t.same(second.MaterialInfos.map((info: { MaterialId: string }) => info.MaterialId), ['qc_100307_152854_3'])
  t.same(second.MaterialInfos[0].MaterialFaceList, [], 'the material without a face lists none')
  t.equal((await list({ ActivityId: 100307, Limit: 100 }, '2018-12-01')).MaterialInfos.length, 3, 'up to 100 per page in 2018-12-01')

  const preview = await fetchImage(first.MaterialInfos[0].Url)
  t.equal(preview.type, 'image/jpeg')
  t.match(await sharp(preview.bytes).metadata(), { format: 'jpeg', width: 720, height: 960 })

  const current = await list({ ActivityId: API3_ONLY_PROJECT_ID }, '2022-09-27')
  t.equal(current.Count, 1)
  t.match(current.MaterialInfos[0], { MaterialId: API3_ONLY_MODEL_ID, MaterialStatus: 1, MaterialName: String, MaterialFaceList: [{ FaceId: '1' }] })
  t.notOk('Url' in current.MaterialInfos[0])
  const paged = await list({ ActivityId: '100307', Limit: 1, Offset: 1 }, '2022-09-27')
  t.same({ count: paged.Count, ids: paged.MaterialInfos.map((info: { MaterialId: string }) => info.MaterialId) }, { count: 3, ids: ['qc_100307_152854_2'] })
  const one = await list({ ActivityId: '100307', MaterialId: 'qc_100307_152854_3' }, '2022-09-27')
  t.equal(one.Count, 1, 'MaterialId filters')

  const refusals: Array<[Record<string, unknown>, string, string]> = [
    [{ ActivityId: '100307' }, '2018-12-01', 'InvalidParameterValue'],
    [{ ActivityId: 100307 }, '2022-09-27', 'InvalidParameterValue'],
    [{ ActivityId: '100307', Limit: 21 }, '2022-09-27', 'InvalidParameterValue'],
    [{ ActivityId: 100307, Limit: 101 }, '2018-12-01', 'InvalidParameterValue'],
    [{ ActivityId: 100307, Offset: -1 }, '2018-12-01', 'InvalidParameterValue'],
    [{ ActivityId: '999999' }, '2022-09-27', 'InvalidParameterValue.ActivityIdNotFound'],
    [{ ActivityId: 999999 }, '2018-12-01', 'InvalidParameterValue.ActivityIdNotFound']
  ]
  for (const [params, version, code] of refusals) {
    t.equal(outcome(t, await call(url, params, { action: 'DescribeMaterialList', version })), code, `${JSON.stringify(params)} in ${version}`)
  }
  const missing = await request(`${url}/materials/nothing.jpg`)
  t.equal(missing.statusCode, 404)
  await missing.body.dump()
})

t.test('frequency control per SecretId and activity, fusion actions only', async (t) => {
  let now = 1_800_000_000_000
  const answers: string[] = []
  const { url } = await startEmulator(t, { qps: 2, clock: () => now, onV3Answer: (code) => answers.push(code) })
  const at = (): number => Math.floor(now / 1000)
  const forced = fuseFace({ ModelId: 'emulator_error_FailedOperation-RpcFail' })
  const codes: string[] = []
  for (let i = 0; i < 3; i++) codes.push(outcome(t, await call(url, forced, { timestamp: at() })))
  t.same(codes, ['FailedOperation.RpcFail', 'FailedOperation.RpcFail', 'RequestLimitExceeded'], 'the third call within one second is refused')
  t.equal(outcome(t, await call(url, { ActivityId: '100307' }, { action: 'DescribeMaterialList', timestamp: at() })), 'OK', 'DescribeMaterialList is not counted')
  t.equal(outcome(t, await call(url, { ...forced, ProjectId: '100646' }, { timestamp: at() })), 'FailedOperation.RpcFail', 'another activity has its own quota')
  const temporary = { credential: { secretId: EMULATOR_TEMPORARY_CREDENTIAL.secretId, secretKey: EMULATOR_TEMPORARY_CREDENTIAL.secretKey }, token: EMULATOR_TEMPORARY_CREDENTIAL.sessionToken }
  t.equal(outcome(t, await call(url, forced, { ...temporary, timestamp: at() })), 'FailedOperation.RpcFail', 'another SecretId has its own quota')
  now += 1000
  t.equal(outcome(t, await call(url, forced, { timestamp: at() })), 'FailedOperation.RpcFail', 'a second later it is allowed again')
  t.equal(answers.filter((code) => code === 'RequestLimitExceeded').length, 1)
})

t.test('fault injection: emulator_ret_<legacy ret> and emulator_error_<Code>', async (t) => {
  const { url } = await startEmulator(t)
  for (const [ret, code] of LEGACY_RET_TO_V3) {
    const reply = await call(url, fuseFace({ ModelId: `emulator_ret_${ret}`, RspImgType: 'base64', LogoAdd: 0 }))
    t.equal(outcome(t, reply), code ?? 'OK', `ret ${ret}`)
    if (code !== null) t.equal(reply.json().Response.Error.Message, V3_ERROR_MESSAGES[code], `ret ${ret}: the upstream's message`)
  }
  t.equal(outcome(t, await call(url, fuseFace({ ModelId: 'emulator_ret_4242' }))), 'FailedOperation.UnKnowError', 'an undocumented ret')
  t.equal(outcome(t, await call(url, faceFusion({ ModelId: 'emulator_ret_-2012' }), { ...v2018, action: 'FaceFusion' })), 'RequestLimitExceeded', 'FaceFusion too')

  const rpc = await call(url, fuseFace({ ModelId: 'emulator_error_FailedOperation-RpcFail' }))
  t.same(rpc.json().Response.Error, { Code: 'FailedOperation.RpcFail', Message: V3_ERROR_MESSAGES['FailedOperation.RpcFail'] })
  t.equal(outcome(t, await call(url, fuseFace({ ModelId: 'emulator_error_Made-Up-Code' }))), 'Made.Up.Code', 'any code, known or not')
  t.equal(outcome(t, await call(url, { ActivityId: '100307', MaterialId: 'emulator_error_ResourceUnavailable-InArrears' }, { action: 'DescribeMaterialList' })), 'ResourceUnavailable.InArrears', 'DescribeMaterialList through MaterialId')
  t.equal(outcome(t, await call(url, fuseFace({ ModelId: 'emulator_error_FailedOperation-RpcFail' }), { omit: ['authorization'] })), 'AuthFailure.InvalidAuthorization', 'still behind the signature')
  t.equal(outcome(t, await call(url, fuseFace({ ProjectId: '999999', ModelId: 'emulator_error_FailedOperation-RpcFail' }))), 'InvalidParameterValue.ActivityIdNotFound', 'in a known activity only')
})

t.test('the code tables', async (t) => {
  t.same([...LEGACY_RET_TO_V3.keys()].sort((a, b) => a - b), [...DOCUMENTED_RET_CODES].sort((a, b) => a - b), 'every documented legacy ret has its API 3.0 code')
  for (const code of LEGACY_RET_TO_V3.values()) {
    if (code !== null) t.ok(DOCUMENTED_V3_ERROR_CODES.includes(code), `${code} has a message`)
  }
  const required = [
    'AuthFailure.InvalidAuthorization', 'AuthFailure.SecretIdNotFound', 'AuthFailure.SignatureExpire', 'AuthFailure.SignatureFailure',
    'AuthFailure.TokenFailure', 'InvalidAction', 'NoSuchVersion', 'UnsupportedRegion', 'MissingParameter', 'UnknownParameter',
    'InvalidParameter', 'InvalidParameterValue', 'InvalidRequest', 'RequestSizeLimitExceeded', 'RequestLimitExceeded', 'InternalError',
    'FailedOperation.ImageSizeExceedFiveHundredKB', 'FailedOperation.ImageSizeExceed', 'FailedOperation.ImageResolutionExceed',
    'FailedOperation.ImageResolutionTooSmall', 'FailedOperation.ImageDecodeFailed', 'InvalidParameterValue.ImageEmpty',
    'FailedOperation.NoFaceDetected', 'FailedOperation.FuseDetectNoFace', 'FailedOperation.TemplateFaceIDNotExist',
    'InvalidParameterValue.ActivityIdNotFound', 'InvalidParameterValue.MaterialIdNotFound', 'FailedOperation.ProjectNotAuth',
    'FailedOperation.RpcFail', 'FailedOperation.RequestTimeout', 'FailedOperation.FuseInnerError', 'ResourceUnavailable.InArrears',
    'ResourcesSoldOut.ChargeStatusException', 'FailedOperation.ModerationFailed', 'InvalidParameterValue.UrlIllegal'
  ]
  for (const code of required) t.ok(DOCUMENTED_V3_ERROR_CODES.includes(code), code)
})

t.test('options: onPhoto sees each checked photo that is fused', async (t) => {
  const photos: Buffer[] = []
  const options: EmulatorOptions = { onPhoto: (bytes) => photos.push(bytes) }
  const { url } = await startEmulator(t, options)
  t.equal(outcome(t, await call(url, fuseFace({ RspImgType: 'base64', LogoAdd: 0 }))), 'OK')
  t.equal(photos.length, 1)
  t.ok(photos[0]!.equals(fixture('face.jpg')), 'the bytes as received')
})
