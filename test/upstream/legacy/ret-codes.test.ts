import t from 'tap'
import { ERROR_CATALOGUE } from '../../../src/errors.js'
import { DOCUMENTED_RET_CODES } from '../../../emulator/legacy/ret-codes.js'
import { LEGACY_RET_CODES, parseRet } from '../../../src/upstream/legacy/ret-codes.js'
import { fixture, fuseForm, startEmulator, startService } from '../../helper.js'

const ONE_CALL_PER_REQUEST = { UPSTREAM_RETRIES: '0', UPSTREAM_BREAKER_MIN_CALLS: '10000', UPSTREAM_BREAKER_WINDOW: '10000' }

t.test('the table covers every documented code', async (t) => {
  const documented = DOCUMENTED_RET_CODES.filter((ret) => ret !== 0).sort((a, b) => a - b)
  t.same([...LEGACY_RET_CODES.keys()].sort((a, b) => a - b), documented)
  for (const required of [-9, -20006, -20007, -20008, -20009, -20010, -20011, -20012, -20013]) {
    t.ok(LEGACY_RET_CODES.has(required), `ret ${required}`)
  }
})

t.test('ret arrives as a number or a numeric string', async (t) => {
  t.equal(parseRet(0), 0)
  t.equal(parseRet('0'), 0)
  t.equal(parseRet('-2012'), -2012)
  t.equal(parseRet(-2012), -2012)
  t.equal(parseRet(' 1000 '), 1000)
  t.equal(parseRet('ok'), undefined)
  t.equal(parseRet(1.5), undefined)
  t.equal(parseRet(null), undefined)
})

t.test('every row of the table, end to end over HTTP', async (t) => {
  // Each row must reach the upstream once: no pause after frequency control, no retries, no breaker in the way.
  const { url } = await startService(t, { UPSTREAM_BACKOFF_MS: '0', ...ONE_CALL_PER_REQUEST })
  const photo = fixture('face.jpg')
  for (const [ret, rule] of LEGACY_RET_CODES) {
    const reply = await fuseForm(url, photo, { model_id: `emulator_ret_${ret}` })
    const answer = reply.json()
    const status = ERROR_CATALOGUE[rule.code].status
    t.equal(reply.status, status, `ret ${ret} → ${status}`)
    t.match(answer, { statusCode: status, code: rule.code, upstreamCode: String(ret), requestId: String, message: String, error: String })
    if (status === 429) {
      t.equal(reply.headers['retry-after'], '1', `ret ${ret} carries Retry-After in seconds`)
    } else {
      t.notOk(reply.headers['retry-after'], `ret ${ret} has no Retry-After`)
    }
    if (status >= 500) t.equal(answer.message, ERROR_CATALOGUE[rule.code].message, 'a 5xx says only the public message')
  }
})

t.test('client faults are 4xx; ours and the upstream\'s are 5xx; unknown codes are 502', async (t) => {
  const { url } = await startService(t, { UPSTREAM_BACKOFF_MS: '0', ...ONE_CALL_PER_REQUEST })
  const photo = fixture('face.jpg')
  const expectations: Array<[number, number, string]> = [
    [1000, 422, 'FUSION_NO_FACE'],
    [-2102, 404, 'FUSION_TEMPLATE_NOT_FOUND'],
    [-3, 413, 'FUSION_IMAGE_TOO_LARGE'],
    [-2012, 429, 'FUSION_RATE_LIMITED'],
    [-20004, 429, 'FUSION_RATE_LIMITED'],
    [-20003, 502, 'FUSION_UPSTREAM_AUTH_FAILED'],
    [-5, 502, 'FUSION_UPSTREAM_FAILED'],
    [4242, 502, 'FUSION_UPSTREAM_UNKNOWN_CODE'],
    [-1006, 502, 'FUSION_UPSTREAM_UNKNOWN_CODE']
  ]
  for (const [ret, status, code] of expectations) {
    const reply = await fuseForm(url, photo, { model_id: `emulator_ret_${ret}` })
    t.match({ status: reply.status, code: reply.json().code, upstreamCode: reply.json().upstreamCode }, { status, code, upstreamCode: String(ret) })
  }
})

t.test('natural upstream answers, not forced ones', async (t) => {
  const emulator = await startEmulator(t, { retType: 'number' })
  const { url } = await startService(t, { TENCENT_LEGACY_URL: emulator.legacyUrl })
  const cases: Array<[Buffer, Record<string, string>, number, string, string]> = [
    [fixture('blank.jpg'), {}, 422, 'FUSION_NO_FACE', '1000'],
    [fixture('face.jpg'), { model_id: 'qc_100307_152854_3' }, 422, 'FUSION_TEMPLATE_NO_FACE', '-8'],
    [fixture('face.jpg'), { model_id: 'qc_999999_000000_0' }, 404, 'FUSION_TEMPLATE_NOT_FOUND', '-2102'],
    [fixture('face.jpg'), { project_id: '999999' }, 403, 'FUSION_TEMPLATE_FORBIDDEN', '-2103'],
    [fixture('face.jpg'), { project_id: '300001', model_id: 'qc_300001_000001_1' }, 400, 'FUSION_PROJECT_REQUIRES_API3', '-20013']
  ]
  for (const [photo, fields, status, code, upstreamCode] of cases) {
    const reply = await fuseForm(url, photo, fields)
    t.match({ status: reply.status, ...reply.json() }, { status, code, upstreamCode })
  }
  const ok = await fuseForm(url, fixture('face.jpg'))
  t.equal(ok.status, 200, 'a numeric ret 0 is success too')
})

t.test('the upstream\'s frequency control becomes 429 with Retry-After', async (t) => {
  // A frozen clock: all three calls fall in the same second however slow the machine is.
  const frozen = Date.now()
  const emulator = await startEmulator(t, { qps: 1, clock: () => frozen })
  // A budget above the emulator's quota, so the upstream's own frequency control is what answers.
  const { url } = await startService(t, { TENCENT_LEGACY_URL: emulator.legacyUrl, UPSTREAM_QPS: '1000', UPSTREAM_BACKOFF_MS: '0' })
  const photo = fixture('face.jpg')
  const replies = await Promise.all([0, 1, 2].map(async () => await fuseForm(url, photo)))
  const statuses = replies.map((reply) => reply.status).sort()
  t.same(statuses, [200, 429, 429], 'one call per second gets through')
  for (const reply of replies.filter((r) => r.status === 429)) {
    t.equal(reply.headers['retry-after'], '1')
    t.match(reply.json(), { code: 'FUSION_RATE_LIMITED', upstreamCode: '-20004' })
  }
})

t.test('a base64 result in img_url (the older tables) is read as well', async (t) => {
  const emulator = await startEmulator(t, { base64Field: 'img_url' })
  const { url } = await startService(t, { TENCENT_LEGACY_URL: emulator.legacyUrl })
  const reply = await fuseForm(url, fixture('face.jpg'), { rsp_img_type: 'base64' })
  t.equal(reply.status, 200)
  t.ok(Buffer.from(reply.json().imageBase64, 'base64').subarray(0, 2).equals(Buffer.from([0xff, 0xd8])), 'JPEG bytes')
})
