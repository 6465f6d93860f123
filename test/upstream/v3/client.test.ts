import t, { type Test } from 'tap'
import type { ServerResponse } from 'node:http'
import { answerJson, fixture, stubUpstream, type StubCall, TEST_TRANSPORT } from '../../helper.js'
import type { V3Credentials } from '../../../src/upstream/settings.js'
import { isFusionError, type FusionError } from '../../../src/errors.js'
import type { FusionRequest } from '../../../src/upstream/provider.js'
import { createV3Client, signedV3Headers, type V3ClientOptions } from '../../../src/upstream/v3/client.js'
import { V3_IMAGE_LIMITS } from '../../../src/upstream/image-limits.js'
import { tc3Sign } from '../../../src/upstream/v3/tc3-sign.js'
import { createRetrying } from '../../../src/upstream/retrying.js'

/** The one retry the service makes by default (UPSTREAM_RETRIES=1), which is what re-signs an expired signature. */
const oneRetry = createRetrying({ retries: 1, initialDelayMs: 0, maxDelayMs: 0, minRemainingMs: 0 })

type Respond = (call: StubCall, response: ServerResponse) => void

/** The injected clock: a fixed instant with milliseconds, so truncation to whole seconds shows. */
const NOW = 1_700_000_000_750
const NOW_SECONDS = 1_700_000_000
const credentials: V3Credentials = { secretId: 'AKIDTESTCLIENT000000000000000000', secretKey: 'test-secret-key-0000000000000000' }
const photo = fixture('face.jpg')
const request: FusionRequest = { projectId: 'at_1603326187690926080', modelId: 'mt_1603586676924403712', image: photo, resultType: 'url' }
const RESULT_URL = 'https://facefusion-1254418846.cos.ap-guangzhou.myqcloud.com/result.jpg'

/** A stub upstream; `endpoint` is its origin plus `path`, as a v3 endpoint is configured. */
async function upstream (t: Test, respond: Respond, path = '/'): Promise<{ endpoint: string, calls: StubCall[] }> {
  const { url, calls } = await stubUpstream(t, respond)
  return { endpoint: new URL(url).origin + path, calls }
}

function client (t: Test, endpoint: string, overrides: Partial<V3ClientOptions> = {}): ReturnType<typeof createV3Client> {
  const provider = createV3Client({
    url: endpoint,
    mode: 'tencent',
    credentials,
    region: 'ap-guangzhou',
    action: 'FuseFace',
    version: '2022-09-27',
    clock: () => NOW,
    ...TEST_TRANSPORT,
    ...overrides
  })
  t.teardown(async () => await provider.close())
  return provider
}

const ok = (fields: Record<string, unknown>): unknown => ({ Response: { ...fields, RequestId: 'req-ok' } })
const v3Error = (code: string): unknown => ({ Response: { Error: { Code: code, Message: `said ${code}` }, RequestId: 'req-err' } })
const answering = (body: unknown, status = 200, headers: Record<string, string> = {}): Respond =>
  (_call, response) => { answerJson(response, body, status, headers) }

/** The FusionError a call fails with; anything else fails the test. */
async function failure (promise: Promise<unknown>): Promise<FusionError> {
  try {
    await promise
  } catch (error) {
    if (isFusionError(error)) return error
    throw error
  }
  throw new Error('the call succeeded; a FusionError was expected')
}

function nth (calls: StubCall[], index: number): StubCall {
  const call = calls[index]
  if (call === undefined) throw new Error(`no call #${index + 1} (got ${calls.length})`)
  return call
}

const sent = (call: StubCall): any => JSON.parse(call.body.toString('utf8'))
const header = (call: StubCall, name: string): string | undefined => call.request.headers[name] as string | undefined

/** Signs what the stub received, independently of the client, and compares with what it sent. */
function checkSignature (t: Test, call: StubCall, endpoint: string, signer: V3Credentials = credentials): void {
  const url = new URL(endpoint)
  const received = header(call, 'host') ?? ''
  t.equal(received.replace(/:\d+$/, ''), url.hostname, 'Host names the endpoint')
  t.equal(call.request.url, url.pathname, 'POSTed to the endpoint\'s path')
  const timestamp = Number(header(call, 'x-tc-timestamp'))
  t.ok(Number.isInteger(timestamp), 'x-tc-timestamp is whole seconds')
  const { authorization } = tc3Sign({
    secretId: signer.secretId,
    secretKey: signer.secretKey,
    service: 'facefusion',
    host: url.hostname,
    path: url.pathname,
    timestamp,
    contentType: header(call, 'content-type') ?? '',
    payload: call.body
  })
  t.equal(header(call, 'authorization'), authorization, 'Authorization recomputes from the received bytes')
  t.match(authorization, /SignedHeaders=content-type;host, /)
}

t.test('FuseFace 2022-09-27: method, headers and a signature that recomputes from the received bytes', async (t) => {
  for (const path of ['/', '/proxy/facefusion']) {
    const { endpoint, calls } = await upstream(t, answering(ok({ FusedImage: RESULT_URL })), path)
    t.strictSame(await client(t, endpoint).fuse(request), { resultType: 'url', imageUrl: RESULT_URL })
    t.equal(calls.length, 1)
    const call = nth(calls, 0)
    t.equal(call.request.method, 'POST')
    t.equal(header(call, 'content-type'), 'application/json', 'exactly as signed, no charset')
    t.equal(header(call, 'x-tc-action'), 'FuseFace')
    t.equal(header(call, 'x-tc-version'), '2022-09-27')
    t.equal(header(call, 'x-tc-region'), 'ap-guangzhou')
    t.equal(header(call, 'x-tc-timestamp'), String(NOW_SECONDS), 'the injected clock, in whole seconds')
    t.equal(header(call, 'x-tc-token'), undefined, 'no token without a session token')
    checkSignature(t, call, endpoint)
  }
})

t.test('a session token travels as X-TC-Token, outside the signature', async (t) => {
  const withToken = { ...credentials, sessionToken: 'temporary-session-token' }
  const { endpoint, calls } = await upstream(t, answering(ok({ FusedImage: RESULT_URL })))
  await client(t, endpoint, { credentials: withToken }).fuse(request)
  t.equal(header(nth(calls, 0), 'x-tc-token'), 'temporary-session-token')
  checkSignature(t, nth(calls, 0), endpoint, withToken)

  const headers = signedV3Headers({ credentials: withToken, url: new URL(endpoint), action: 'FuseFace', version: '2022-09-27', region: 'ap-beijing', timestamp: NOW_SECONDS, body: Buffer.from('{}') })
  t.equal(headers['x-tc-token'], 'temporary-session-token')
  t.notOk('x-tc-token' in signedV3Headers({ credentials, url: new URL(endpoint), action: 'FuseFace', version: '2022-09-27', region: 'ap-beijing', timestamp: NOW_SECONDS, body: Buffer.from('{}') }))
})

t.test('request bodies: the photo\'s exact base64 and the options, per action and version', async (t) => {
  const image = photo.toString('base64')
  const ids = { ProjectId: request.projectId, ModelId: request.modelId }
  const bodyOf = async (overrides: Partial<V3ClientOptions>, call: Partial<FusionRequest>): Promise<any> => {
    const { endpoint, calls } = await upstream(t, (received, response) => {
      const result = sent(received).RspImgType === 'url' ? RESULT_URL : 'aGVsbG8='
      answerJson(response, ok({ FusedImage: result, Image: result }))
    })
    await client(t, endpoint, overrides).fuse({ ...request, ...call })
    t.equal(header(nth(calls, 0), 'x-tc-action'), overrides.action ?? 'FuseFace')
    t.equal(header(nth(calls, 0), 'x-tc-version'), overrides.version ?? '2022-09-27')
    return sent(nth(calls, 0))
  }
  const all = { profileDegree: 40, faceDegree: 70, logoAdd: false, templateFaceId: 'face_2' }

  t.strictSame(await bodyOf({}, { options: all }), {
    ...ids, RspImgType: 'url', MergeInfos: [{ Image: image, TemplateFaceID: 'face_2' }], FuseProfileDegree: 40, FuseFaceDegree: 70, LogoAdd: 0
  }, 'FuseFace 2022-09-27 with every option, LogoAdd false → 0')
  t.equal((await bodyOf({}, { options: { logoAdd: true } })).LogoAdd, 1, 'LogoAdd true → 1')
  t.strictSame(await bodyOf({}, { resultType: 'base64' }), { ...ids, RspImgType: 'base64', MergeInfos: [{ Image: image }] }, 'no options, no option fields')
  t.strictSame(await bodyOf({ version: '2018-12-01' }, { options: all }), {
    ...ids, RspImgType: 'url', MergeInfos: [{ Image: image, TemplateFaceID: 'face_2' }], FuseProfileDegree: 40, FuseFaceDegree: 70
  }, 'FuseFace 2018-12-01 never sends LogoAdd')
  t.strictSame(await bodyOf({ action: 'FaceFusion', version: '2018-12-01' }, {}), { ...ids, RspImgType: 'url', Image: image }, 'FaceFusion 2018-12-01')
  // Lengths 1 and 2 modulo 3: base64 padding written into the body buffer.
  for (const odd of [Buffer.from([0xff, 0xd8, 0xff, 1]), Buffer.from([0xff, 0xd8, 0xff, 1, 2])]) {
    t.equal((await bodyOf({ action: 'FaceFusion', version: '2018-12-01' }, { image: odd })).Image, odd.toString('base64'))
  }
})

t.test('success: FuseFace reads FusedImage, FaceFusion reads Image; url and base64', async (t) => {
  const fused = Buffer.from('fused jpeg').toString('base64')
  const fuse = async (body: unknown, call: Partial<FusionRequest> = {}, overrides: Partial<V3ClientOptions> = {}): Promise<unknown> =>
    await client(t, (await upstream(t, answering(body))).endpoint, overrides).fuse({ ...request, ...call })
  const faceFusion = { action: 'FaceFusion', version: '2018-12-01' } as const

  t.strictSame(await fuse(ok({ FusedImage: RESULT_URL })), { resultType: 'url', imageUrl: RESULT_URL })
  t.strictSame(await fuse(ok({ Image: RESULT_URL }), {}, faceFusion), { resultType: 'url', imageUrl: RESULT_URL })
  t.strictSame(await fuse(ok({ FusedImage: fused }), { resultType: 'base64' }), { resultType: 'base64', imageBase64: fused })
  t.strictSame(await fuse(ok({ Image: fused }), { resultType: 'base64' }, faceFusion), { resultType: 'base64', imageBase64: fused })
  t.strictSame(await fuse(ok({ FusedImage: `data:image/jpeg;base64,${fused}` }), { resultType: 'base64' }), { resultType: 'base64', imageBase64: fused }, 'data: prefix stripped')

  const bad: Array<[string, unknown, Partial<FusionRequest>, Partial<V3ClientOptions>]> = [
    ['a javascript: URL', ok({ FusedImage: 'javascript:alert(1)' }), {}, {}],
    ['a bare file name', ok({ FusedImage: 'result.jpg' }), {}, {}],
    ['no FusedImage', ok({}), {}, {}],
    ['FaceFusion\'s field in a FuseFace answer', ok({ Image: RESULT_URL }), {}, {}],
    ['FuseFace\'s field in a FaceFusion answer', ok({ FusedImage: RESULT_URL }), {}, faceFusion],
    ['a URL where base64 was asked for', ok({ FusedImage: RESULT_URL }), { resultType: 'base64' }, {}],
    ['empty base64', ok({ FusedImage: '' }), { resultType: 'base64' }, {}]
  ]
  for (const [name, body, call, overrides] of bad) {
    t.match(await failure(fuse(body, call, overrides)), { code: 'FUSION_UPSTREAM_BAD_RESPONSE', statusCode: 502 }, name)
  }
})

t.test('Response.Error codes map through the table, families, or unknown', async (t) => {
  const cases: Array<[string, Record<string, unknown>, boolean]> = [
    ['FailedOperation.NoFaceDetected', { code: 'FUSION_NO_FACE', statusCode: 422 }, false],
    ['RequestLimitExceeded', { code: 'FUSION_RATE_LIMITED', statusCode: 429 }, false],
    ['FailedOperation.RpcFail', { code: 'FUSION_UPSTREAM_FAILED', statusCode: 502 }, true],
    ['AuthFailure.SignatureFailure', { code: 'FUSION_UPSTREAM_AUTH_FAILED', statusCode: 502 }, false],
    ['Foo.Bar', { code: 'FUSION_UPSTREAM_UNKNOWN_CODE', statusCode: 502 }, false],
    ['AuthFailure.Whatever', { code: 'FUSION_UPSTREAM_AUTH_FAILED', statusCode: 502 }, false],
    ['ResourceUnavailable.Whatever', { code: 'FUSION_UPSTREAM_ACCOUNT_SUSPENDED', statusCode: 503 }, false],
    ['RequestLimitExceeded.Whatever', { code: 'FUSION_RATE_LIMITED' }, false]
  ]
  for (const [upstreamCode, expected, retryable] of cases) {
    const { endpoint, calls } = await upstream(t, answering(v3Error(upstreamCode)))
    const error = await failure(client(t, endpoint).fuse(request))
    t.match(error, { ...expected, upstreamCode }, upstreamCode)
    t.equal(error.retryable === true, retryable, `${upstreamCode} retryable: ${String(retryable)}`)
    t.equal(calls.length, 1, `${upstreamCode}: one call, no re-signing`)
    if (error.code === 'FUSION_RATE_LIMITED') t.ok((error.retryAfterSeconds ?? 0) >= 1, 'a delay of at least 1 s')
    else t.equal(error.retryAfterSeconds, undefined)
  }

  const withRetryAfter = await upstream(t, answering(v3Error('RequestLimitExceeded'), 200, { 'retry-after': '5' }))
  t.match(await failure(client(t, withRetryAfter.endpoint).fuse(request)), { code: 'FUSION_RATE_LIMITED', retryAfterSeconds: 5 }, 'Retry-After honoured')
})

t.test('answers without the envelope: judged by HTTP status', async (t) => {
  const cases: Array<[string, Respond, Record<string, unknown>]> = [
    ['JSON without Response', answering({ FusedImage: RESULT_URL }), { code: 'FUSION_UPSTREAM_BAD_RESPONSE' }],
    ['Response not an object', answering({ Response: [RESULT_URL] }), { code: 'FUSION_UPSTREAM_BAD_RESPONSE' }],
    ['an HTML error page', (_call, response) => { response.writeHead(502, { 'content-type': 'text/html' }).end('<html><body>Bad Gateway</body></html>') }, { code: 'FUSION_UPSTREAM_BAD_RESPONSE', statusCode: 502 }],
    ['broken JSON', answering('{"Response":'), { code: 'FUSION_UPSTREAM_BAD_RESPONSE' }],
    ['HTTP 429 without an envelope', (_call, response) => { response.writeHead(429, { 'retry-after': '7' }).end('slow down') }, { code: 'FUSION_RATE_LIMITED', statusCode: 429, retryAfterSeconds: 7 }],
    ['HTTP 429 without Retry-After', (_call, response) => { response.writeHead(429).end() }, { code: 'FUSION_RATE_LIMITED', retryAfterSeconds: 1 }]
  ]
  for (const [name, respond, expected] of cases) {
    const { endpoint, calls } = await upstream(t, respond)
    t.match(await failure(client(t, endpoint).fuse(request)), expected, name)
    t.equal(calls.length, 1, `${name}: one call`)
  }
})

t.test('AuthFailure.SignatureExpire: re-signed once on the upstream\'s clock, which later calls keep', async (t) => {
  const serverNow = NOW + 10 * 60_000
  const { endpoint, calls } = await upstream(t, (call, response) => {
    const skew = Math.abs(Number(header(call, 'x-tc-timestamp')) - serverNow / 1000)
    const headers = { date: new Date(serverNow).toUTCString() }
    answerJson(response, skew > 300 ? v3Error('AuthFailure.SignatureExpire') : ok({ FusedImage: RESULT_URL }), 200, headers)
  })
  const warnings: object[] = []
  const log = { info: () => {}, warn: (fields: object) => { warnings.push(fields) } }
  const provider = client(t, endpoint, { policy: oneRetry })

  t.strictSame(await provider.fuse(request, log), { resultType: 'url', imageUrl: RESULT_URL })
  t.equal(calls.length, 2, 'one re-signed call')
  t.equal(header(nth(calls, 0), 'x-tc-timestamp'), String(NOW_SECONDS), 'first on our clock')
  const resigned = Number(header(nth(calls, 1), 'x-tc-timestamp'))
  t.ok(Math.abs(resigned - serverNow / 1000) <= 2, `then on the upstream's (${resigned})`)
  checkSignature(t, nth(calls, 1), endpoint)
  t.match(warnings, [{ upstream: { provider: 'v3', clockSkewMs: Number } }], 'the skew is logged once')

  t.strictSame(await provider.fuse(request), { resultType: 'url', imageUrl: RESULT_URL })
  t.equal(calls.length, 3, 'the next call is signed on the learnt skew straight away')
  t.ok(Math.abs(Number(header(nth(calls, 2), 'x-tc-timestamp')) - serverNow / 1000) <= 2)
})

t.test('AuthFailure.SignatureExpire twice: gives up after one re-signing', async (t) => {
  const { endpoint, calls } = await upstream(t, answering(v3Error('AuthFailure.SignatureExpire')))
  const error = await failure(client(t, endpoint, { policy: oneRetry }).fuse(request))
  t.match(error, { code: 'FUSION_UPSTREAM_AUTH_FAILED', statusCode: 502, upstreamCode: 'AuthFailure.SignatureExpire' })
  t.equal(calls.length, 2)
})

/** An activity's materials, paged as DescribeMaterialList pages them. */
function materialsUpstream (materials: Array<Record<string, unknown>>): Respond {
  return (call, response) => {
    const { Offset, Limit } = sent(call) as { Offset: number, Limit: number }
    answerJson(response, ok({ MaterialInfos: materials.slice(Offset, Offset + Limit), Count: materials.length }))
  }
}

t.test('listTemplates (2022-09-27): pages of 20, usable materials only, faces and preview URLs', async (t) => {
  const status = (i: number): number => i === 3 ? 2 : i === 25 ? 0 : i === 44 ? 21 : 1
  const materials = Array.from({ length: 45 }, (_, i) => ({
    MaterialId: `mt_${i}`,
    MaterialName: `Material ${i}`,
    MaterialStatus: status(i),
    Url: i === 1 ? 'javascript:alert(1)' : i === 2 ? 'ftp://cdn.example/2.jpg' : `https://cdn.example/${i}.jpg`,
    MaterialFaceList: i === 0 ? [{ FaceId: 'face_1', FaceInfo: { X: 1, Y: 2, Width: 30, Height: 40 } }, { FaceId: 'face_2', FaceInfo: {} }] : []
  }))
  const { endpoint, calls } = await upstream(t, materialsUpstream(materials))
  const templates = await client(t, endpoint).listTemplates!('at_1')

  t.equal(calls.length, 3, '45 materials in three pages')
  t.strictSame(calls.map(sent), [0, 20, 40].map((Offset) => ({ ActivityId: 'at_1', Limit: 20, Offset })), 'ActivityId a string')
  for (const call of calls) {
    t.equal(header(call, 'x-tc-action'), 'DescribeMaterialList')
    checkSignature(t, call, endpoint)
  }
  const expectedIds = materials.map((m) => m.MaterialId).filter((id) => id !== 'mt_3' && id !== 'mt_25')
  t.strictSame(templates.map((template) => template.modelId), expectedIds, 'rejected (2) and reviewing (0) left out')
  t.strictSame(templates[0], {
    projectId: 'at_1',
    modelId: 'mt_0',
    name: 'Material 0',
    previewUrl: 'https://cdn.example/0.jpg',
    faces: [{ faceId: 'face_1', x: 1, y: 2, width: 30, height: 40 }, { faceId: 'face_2' }]
  })
  t.notOk('previewUrl' in (templates[1] ?? {}), 'a javascript: Url is no preview')
  t.notOk('previewUrl' in (templates[2] ?? {}), 'an ftp: Url is no preview')
  t.equal(templates.at(-1)?.modelId, 'mt_44', 'machine-approved (21) kept')
})

t.test('listTemplates stops at Count, even on a full page', async (t) => {
  const { endpoint, calls } = await upstream(t, materialsUpstream(Array.from({ length: 40 }, (_, i) => ({ MaterialId: `mt_${i}`, MaterialStatus: 1 }))))
  t.equal((await client(t, endpoint).listTemplates!('at_1')).length, 40)
  t.equal(calls.length, 2)
})

t.test('listTemplates (2018-12-01): ActivityId a number; a non-numeric project is not found, uncalled', async (t) => {
  const { endpoint, calls } = await upstream(t, materialsUpstream([{ MaterialId: 'qc_100307_152854_1', MaterialStatus: 1 }]))
  const provider = client(t, endpoint, { version: '2018-12-01' })
  t.strictSame(await provider.listTemplates!('100307'), [{ projectId: '100307', modelId: 'qc_100307_152854_1', faces: [] }])
  t.strictSame(sent(nth(calls, 0)), { ActivityId: 100307, Limit: 20, Offset: 0 })
  t.equal(header(nth(calls, 0), 'x-tc-version'), '2018-12-01')

  t.match(await failure(provider.listTemplates!('at_1')), { code: 'FUSION_TEMPLATE_NOT_FOUND', statusCode: 404 })
  t.equal(calls.length, 1, 'no call for a non-numeric activity')
})

t.test('supportedOptions and describe() follow the action and version', async (t) => {
  const endpoint = 'https://facefusion.tencentcloudapi.com/'
  const options = (action: V3ClientOptions['action'], version: V3ClientOptions['version']): string[] =>
    [...client(t, endpoint, { action, version }).supportedOptions].sort()
  t.strictSame(options('FaceFusion', '2018-12-01'), [])
  t.strictSame(options('FuseFace', '2018-12-01'), ['faceDegree', 'profileDegree', 'templateFaceId'])
  t.strictSame(options('FuseFace', '2022-09-27'), ['faceDegree', 'logoAdd', 'profileDegree', 'templateFaceId'])

  t.strictSame(client(t, endpoint, { region: 'ap-shanghai' }).describe(), {
    provider: 'v3', mode: 'tencent', origin: 'https://facefusion.tencentcloudapi.com', action: 'FuseFace', version: '2022-09-27', region: 'ap-shanghai'
  })
  t.match(client(t, endpoint, { url: 'http://127.0.0.1:1/', mode: 'emulator', action: 'FaceFusion', version: '2018-12-01' }).describe(),
    { mode: 'emulator', origin: 'http://127.0.0.1:1', action: 'FaceFusion', version: '2018-12-01' })
})

t.test('a deadline already past: FUSION_UPSTREAM_TIMEOUT without a call', async (t) => {
  const { endpoint, calls } = await upstream(t, answering(ok({ FusedImage: RESULT_URL })))
  const error = await failure(client(t, endpoint).fuse({ ...request, deadline: Date.now() - 1 }))
  t.match(error, { code: 'FUSION_UPSTREAM_TIMEOUT', statusCode: 504, byDeadline: true })
  t.equal(calls.length, 0)
})

t.test('image limits fit each version\'s documented bounds', async (t) => {
  const base64Length = (bytes: number): number => Math.ceil(bytes / 3) * 4
  const current = V3_IMAGE_LIMITS['2022-09-27']
  t.ok(current.maxSide < 4096 && current.maxSide > 64, '2022-09-27: sides under 4096 px')
  t.ok(base64Length(current.maxBytes) <= 5_000_000, '2022-09-27: base64 within 5 MB')
  const old = V3_IMAGE_LIMITS['2018-12-01']
  t.ok(old.maxSide <= 1080, '2018-12-01: 1080 px')
  t.ok(base64Length(old.maxBytes) <= 500_000, '2018-12-01: base64 within 500 KB')
})
