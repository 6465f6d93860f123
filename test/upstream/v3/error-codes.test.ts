import t from 'tap'
import sharp from 'sharp'
import { ERROR_CATALOGUE } from '../../../src/errors.js'
import { EMULATOR_TEMPORARY_CREDENTIAL } from '../../../emulator/shared/accounts.js'
import { DOCUMENTED_V3_ERROR_CODES } from '../../../emulator/api3/errors.js'
import { V3_ERROR_CODES, ruleForV3Code } from '../../../src/upstream/v3/error-codes.js'
import { fixture, fuseForm, startEmulator, startService, upstreamEnv } from '../../helper.js'

const V3 = { FUSION_PROVIDER: 'v3' }
const ONE_CALL_PER_REQUEST = { UPSTREAM_RETRIES: '0', UPSTREAM_BREAKER_MIN_CALLS: '10000', UPSTREAM_BREAKER_WINDOW: '10000', UPSTREAM_BACKOFF_MS: '0' }
/** The emulator answers exactly this Error.Code for the material `emulator_error_<code, dots as dashes>`. */
const forcing = (code: string): string => `emulator_error_${code.replace(/\./g, '-')}`

t.test('the table covers every code the API documents', async (t) => {
  for (const code of DOCUMENTED_V3_ERROR_CODES) t.ok(V3_ERROR_CODES.has(code), code)
  for (const [code, rule] of V3_ERROR_CODES) t.ok(Object.hasOwn(ERROR_CATALOGUE, rule.code), `${code} → ${rule.code}`)
})

t.test('codes outside the table are judged by their family, else unknown', async (t) => {
  t.equal(ruleForV3Code('AuthFailure.SomethingNew').code, 'FUSION_UPSTREAM_AUTH_FAILED')
  t.equal(ruleForV3Code('RequestLimitExceeded.SomethingNew').code, 'FUSION_RATE_LIMITED')
  t.equal(ruleForV3Code('ResourceUnavailable.SomethingNew').code, 'FUSION_UPSTREAM_ACCOUNT_SUSPENDED')
  t.equal(ruleForV3Code('InternalError.SomethingNew').code, 'FUSION_UPSTREAM_FAILED')
  t.equal(ruleForV3Code('FailedOperation.SomethingNew').code, 'FUSION_UPSTREAM_UNKNOWN_CODE')
  t.equal(ruleForV3Code('Nonsense').code, 'FUSION_UPSTREAM_UNKNOWN_CODE')
})

t.test('every row of the table, end to end over HTTP', async (t) => {
  const { url } = await startService(t, { ...V3, ...ONE_CALL_PER_REQUEST })
  const photo = fixture('face.jpg')
  for (const [code, rule] of V3_ERROR_CODES) {
    const reply = await fuseForm(url, photo, { model_id: forcing(code) })
    const answer = reply.json()
    const status = ERROR_CATALOGUE[rule.code].status
    t.equal(reply.status, status, `${code} → ${status}`)
    t.match(answer, { statusCode: status, code: rule.code, upstreamCode: code, requestId: String, message: String })
    if (status === 429) t.equal(reply.headers['retry-after'], '1', `${code} carries Retry-After`)
    else t.notOk(reply.headers['retry-after'], `${code} has no Retry-After`)
    if (status >= 500) t.equal(answer.message, ERROR_CATALOGUE[rule.code].message, 'a 5xx says only the public message')
  }
  const unknown = await fuseForm(url, photo, { model_id: forcing('FailedOperation.NeverHeardOf') })
  t.match({ status: unknown.status, ...unknown.json() }, { status: 502, code: 'FUSION_UPSTREAM_UNKNOWN_CODE', upstreamCode: 'FailedOperation.NeverHeardOf' })
})

t.test('transient faults are retried; answers about the photo are not', async (t) => {
  let calls = 0
  const emulator = await startEmulator(t, { onV3Request: () => { calls++ } })
  const { url } = await startService(t, { ...upstreamEnv('v3', emulator), UPSTREAM_RETRIES: '2', UPSTREAM_RETRY_DELAY_MS: '10' })
  const transient = await fuseForm(url, fixture('face.jpg'), { model_id: forcing('FailedOperation.RpcFail') })
  t.equal(transient.status, 502)
  t.equal(calls, 3, 'one call and two retries')
  calls = 0
  const noFace = await fuseForm(url, fixture('blank.jpg'))
  t.match({ status: noFace.status, ...noFace.json() }, { status: 422, code: 'FUSION_NO_FACE', upstreamCode: 'FailedOperation.NoFaceDetected' })
  t.equal(calls, 1)
})

t.test('natural upstream answers, not forced ones', async (t) => {
  const { url } = await startService(t, V3)
  const photo = fixture('face.jpg')
  const cases: Array<[Record<string, string>, number, string, string, RegExp?]> = [
    [{ model_id: 'qc_100307_152854_3' }, 404, 'FUSION_TEMPLATE_FACE_NOT_FOUND', 'FailedOperation.TemplateFaceIDNotExist'],
    [{ template_face_id: '9' }, 404, 'FUSION_TEMPLATE_FACE_NOT_FOUND', 'FailedOperation.TemplateFaceIDNotExist'],
    [{ model_id: 'qc_999999_000000_0' }, 404, 'FUSION_TEMPLATE_NOT_FOUND', 'InvalidParameterValue.MaterialIdNotFound', /^No such template \(model_id\)/],
    // The activity named as what is unknown, as GET /templates words it, not the template.
    [{ project_id: '999999' }, 404, 'FUSION_TEMPLATE_NOT_FOUND', 'InvalidParameterValue.ActivityIdNotFound', /^No such activity \(project_id\)/]
  ]
  for (const [fields, status, code, upstreamCode, message] of cases) {
    const reply = await fuseForm(url, photo, fields)
    t.match({ status: reply.status, ...reply.json() }, { status, code, upstreamCode, ...(message ? { message } : {}) }, JSON.stringify(fields))
  }
  const served: Array<Record<string, string>> = [
    { project_id: '300001', model_id: 'qc_300001_000001_1' },
    { project_id: 'at_1603326187690926080', model_id: 'mt_1603586676924403712' },
    { template_face_id: '1', fuse_profile_degree: '30', fuse_face_degree: '100', logo_add: 'false' }
  ]
  for (const fields of served) t.equal((await fuseForm(url, photo, fields)).status, 200, `served: ${JSON.stringify(fields)}`)
})

t.test('options reach the upstream: logo_add=0 leaves the corner unmarked', async (t) => {
  const { url } = await startService(t, V3)
  const corner = async (fields: Record<string, string>): Promise<Buffer> => {
    const reply = await fuseForm(url, fixture('face.jpg'), fields, { accept: 'image/jpeg' })
    t.equal(reply.status, 200)
    const { width = 0, height = 0 } = await sharp(reply.body).metadata()
    return await sharp(reply.body).extract({ left: width - 160, top: height - 60, width: 160, height: 60 }).raw().toBuffer()
  }
  const marked = await corner({})
  const unmarked = await corner({ logo_add: '0' })
  const difference = marked.reduce((sum, value, index) => sum + Math.abs(value - (unmarked[index] ?? 0)), 0) / marked.length
  t.ok(difference > 10, `the upstream's default mark is there unless logo_add=0 (mean difference ${difference.toFixed(1)})`)
})

t.test('options the configured action cannot honour are refused before any upstream call', async (t) => {
  let calls = 0
  const emulator = await startEmulator(t, { onV3Request: () => { calls++ }, onPhoto: () => { calls++ } })
  const configurations: Array<[Record<string, string>, Record<string, string>, RegExp]> = [
    [{ FUSION_TEMPLATES: '100307:qc_100307_152854_1', TENCENT_LEGACY_URL: emulator.legacyUrl }, { fuse_face_degree: '50' }, /fuse_face_degree.+legacy API/],
    [{ ...upstreamEnv('v3', emulator), FUSION_V3_ACTION: 'FaceFusion' }, { template_face_id: '1' }, /template_face_id.+FaceFusion 2018-12-01/],
    [{ ...upstreamEnv('v3', emulator), FUSION_V3_VERSION: '2018-12-01' }, { logo_add: '0' }, /logo_add.+FuseFace 2018-12-01/]
  ]
  for (const [env, fields, message] of configurations) {
    const { url } = await startService(t, env)
    const reply = await fuseForm(url, fixture('face.jpg'), fields)
    t.match({ status: reply.status, ...reply.json() }, { status: 400, code: 'FUSION_UNSUPPORTED_OPTION', message })
  }
  t.equal(calls, 0)
  const bad = await fuseForm((await startService(t, upstreamEnv('v3', emulator))).url, fixture('face.jpg'), { fuse_face_degree: '101' })
  t.match({ status: bad.status, ...bad.json() }, { status: 400, code: 'FUSION_INVALID_FIELD', message: /fuse_face_degree.+0 to 100/ })
})

t.test('FaceFusion and FuseFace 2018-12-01 work end to end', async (t) => {
  const older: Array<Record<string, string>> = [{ FUSION_V3_ACTION: 'FaceFusion' }, { FUSION_V3_VERSION: '2018-12-01' }]
  for (const env of older) {
    const { url } = await startService(t, { ...V3, ...env })
    const reply = await fuseForm(url, fixture('phone-photo-3000x4000.jpg'), { project_id: '100646', model_id: 'qc_100646_154021_9' })
    t.equal(reply.status, 200, `${JSON.stringify(env)}: the photo was fitted within the 2018 limits`)
  }
})

t.test('the upstream\'s frequency control becomes 429 with Retry-After', async (t) => {
  const frozen = Date.now()
  const emulator = await startEmulator(t, { qps: 1, clock: () => frozen })
  const { url } = await startService(t, { ...upstreamEnv('v3', emulator), UPSTREAM_QPS: '1000', UPSTREAM_BACKOFF_MS: '0' })
  const replies = await Promise.all([0, 1, 2].map(async () => await fuseForm(url, fixture('face.jpg'))))
  t.same(replies.map((reply) => reply.status).sort(), [200, 429, 429])
  for (const reply of replies.filter((r) => r.status === 429)) {
    t.equal(reply.headers['retry-after'], '1')
    t.match(reply.json(), { code: 'FUSION_RATE_LIMITED', upstreamCode: 'RequestLimitExceeded' })
  }
})

t.test('a clock more than five minutes off: re-signed once on the upstream\'s time, then remembered', async (t) => {
  const timestamps: number[] = []
  const ahead = 10 * 60_000
  const emulator = await startEmulator(t, { clock: () => Date.now() + ahead, onV3Request: ({ headers }) => { timestamps.push(Number(headers['x-tc-timestamp'])) } })
  const { url } = await startService(t, upstreamEnv('v3', emulator))
  t.equal((await fuseForm(url, fixture('face.jpg'))).status, 200)
  t.equal(timestamps.length, 2, 'refused once, then accepted')
  t.ok(timestamps[1]! - timestamps[0]! > 500, 'the second signature used the upstream\'s clock')
  t.equal((await fuseForm(url, fixture('face.jpg'))).status, 200)
  t.equal(timestamps.length, 3, 'the offset is kept: the next request signs right the first time')
})

t.test('temporary credentials through the service: accepted with their session token, refused without', async (t) => {
  const emulator = await startEmulator(t)
  const temporary = { ...upstreamEnv('v3', emulator), TENCENT_SECRET_ID: EMULATOR_TEMPORARY_CREDENTIAL.secretId, TENCENT_SECRET_KEY: EMULATOR_TEMPORARY_CREDENTIAL.secretKey }
  const withToken = await startService(t, { ...temporary, TENCENT_SESSION_TOKEN: EMULATOR_TEMPORARY_CREDENTIAL.sessionToken })
  t.equal((await fuseForm(withToken.url, fixture('face.jpg'))).status, 200)
  const withoutToken = await startService(t, temporary)
  const refused = await fuseForm(withoutToken.url, fixture('face.jpg'))
  t.match({ status: refused.status, ...refused.json() }, { status: 502, code: 'FUSION_UPSTREAM_AUTH_FAILED', upstreamCode: 'AuthFailure.TokenFailure' })
})
