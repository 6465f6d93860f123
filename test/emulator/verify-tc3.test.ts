import { createHash, createHmac } from 'node:crypto'
import t from 'tap'
import { api3KeyFor, EMULATOR_ACCOUNT, EMULATOR_TEMPORARY_CREDENTIAL } from '../../src/emulator/accounts.js'
import { parseTc3Authorization, verifyTc3 } from '../../src/emulator/verify-tc3.js'
import { signingKey, tc3Sign } from '../../src/upstream/v3/tc3-sign.js'

const { secretId, secretKey } = EMULATOR_ACCOUNT.credentials
const host = 'facefusion.tencentcloudapi.com'
// 2023-11-14T22:13:20Z: 2023-11-15 already in UTC+8.
const timestamp = 1_700_000_000
const body = Buffer.from('{"ProjectId":"100646","ModelId":"qc_100646_154021_9","RspImgType":"url","Image":"aGVsbG8="}')

interface Signing { secretId?: string, secretKey?: string, timestamp?: number, contentType?: string, service?: string, payload?: Buffer }

/** The headers an SDK sends, signed over content-type, host and x-tc-action. */
function signed (options: Signing = {}): Record<string, string> {
  const at = options.timestamp ?? timestamp
  const contentType = options.contentType ?? 'application/json'
  const signature = tc3Sign({
    secretId: options.secretId ?? secretId,
    secretKey: options.secretKey ?? secretKey,
    service: options.service ?? 'facefusion',
    host,
    timestamp: at,
    contentType,
    payload: options.payload ?? body,
    extraSignedHeaders: { 'x-tc-action': 'FaceFusion' }
  })
  return {
    authorization: signature.authorization,
    'content-type': contentType,
    host,
    'x-tc-action': 'FaceFusion',
    'x-tc-timestamp': String(at),
    'x-tc-version': '2018-12-01',
    'x-tc-region': 'ap-guangzhou'
  }
}

const verify = (headers: Record<string, string | undefined>, nowSeconds = timestamp, payload = body): ReturnType<typeof verifyTc3> =>
  verifyTc3({ headers, body: payload, keyFor: api3KeyFor, nowSeconds })

const codeOf = (verdict: ReturnType<typeof verifyTc3>): string => (verdict.ok ? 'OK' : verdict.code)

const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex')

/**
 * An Authorization signed by hand over exactly `names` (in that order) and the
 * credential date `date`: consistent throughout, so only the verifier's rules
 * can refuse it, never a slip of the signer.
 */
function signOver (headers: Record<string, string>, names: string[], date: string): string {
  const canonical = names.map((name) => `${name}:${headers[name]!.trim().toLowerCase()}\n`).join('')
  const request = ['POST', '/', '', canonical, names.join(';'), sha256Hex(body)].join('\n')
  const scope = `${date}/facefusion/tc3_request`
  const stringToSign = ['TC3-HMAC-SHA256', String(timestamp), scope, sha256Hex(request)].join('\n')
  const signature = createHmac('sha256', signingKey(secretKey, date, 'facefusion')).update(stringToSign).digest('hex')
  return `TC3-HMAC-SHA256 Credential=${secretId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`
}

t.test('a correctly signed request passes and names its SecretId', async (t) => {
  t.same(verify(signed()), { ok: true, secretId })
})

t.test('the official worked example verifies (cvm, charset in the signed Content-Type)', async (t) => {
  const example = {
    authorization: 'TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168',
    'content-type': 'application/json; charset=utf-8',
    host: 'cvm.tencentcloudapi.com',
    'x-tc-timestamp': '1551113065'
  }
  const payload = Buffer.from('{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}')
  const verdict = verifyTc3({
    headers: example,
    body: payload,
    keyFor: (id) => (id === 'AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE' ? { secretKey: 'Gu5t9xGARNpq86cd98joQYCN3EXAMPLE' } : undefined),
    nowSeconds: 1551113065,
    service: 'cvm'
  })
  t.same(verdict, { ok: true, secretId: 'AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE' })
})

t.test('a missing or garbled Authorization is AuthFailure.InvalidAuthorization', async (t) => {
  const good = signed()
  const authorization = good.authorization!
  const garbled = [
    undefined,
    '',
    'Bearer abc',
    authorization.replace('TC3-HMAC-SHA256', 'TC3-HMAC-SHA1'),
    authorization.replace(/Signature=[0-9a-f]+/, 'Signature=xyz'),
    authorization.replace('/tc3_request', '/tc2_request'),
    authorization.replace(/, SignedHeaders=[^,]+/, ''),
    `TC3-HMAC-SHA256 Credential=${secretId}/2023-11-14/facefusion, SignedHeaders=content-type;host, Signature=${'0'.repeat(64)}`
  ]
  for (const value of garbled) {
    t.equal(codeOf(verify({ ...good, authorization: value })), 'AuthFailure.InvalidAuthorization', String(value))
  }
  t.equal(parseTc3Authorization('TC3-HMAC-SHA256 Signature=' + 'a'.repeat(64) + ', Credential=x/2023-11-14/facefusion/tc3_request, SignedHeaders=content-type;host')?.secretId, 'x', 'fields in any order')
})

t.test('X-TC-Timestamp missing is MissingParameter, not an integer InvalidParameter', async (t) => {
  const { 'x-tc-timestamp': _, ...without } = signed()
  t.equal(codeOf(verify(without)), 'MissingParameter')
  t.equal(codeOf(verify({ ...signed(), 'x-tc-timestamp': '1700000000.5' })), 'InvalidParameter')
  t.equal(codeOf(verify({ ...signed(), 'x-tc-timestamp': 'now' })), 'InvalidParameter')
})

t.test('the five-minute window, at its edges, in both directions', async (t) => {
  const headers = signed()
  t.equal(codeOf(verify(headers, timestamp + 300)), 'OK', 'server 300 s ahead')
  t.equal(codeOf(verify(headers, timestamp - 300)), 'OK', 'server 300 s behind')
  t.equal(codeOf(verify(headers, timestamp + 301)), 'AuthFailure.SignatureExpire', 'server 301 s ahead')
  t.equal(codeOf(verify(headers, timestamp - 301)), 'AuthFailure.SignatureExpire', 'server 301 s behind')
})

t.test('an unknown SecretId is AuthFailure.SecretIdNotFound', async (t) => {
  t.equal(codeOf(verify(signed({ secretId: 'AKIDsomebodyelse' }))), 'AuthFailure.SecretIdNotFound')
})

t.test('signature failures', async (t) => {
  t.equal(codeOf(verify(signed({ secretKey: 'wrong' }))), 'AuthFailure.SignatureFailure', 'wrong key')
  t.equal(codeOf(verify(signed(), timestamp, Buffer.from(`${body.toString()} `))), 'AuthFailure.SignatureFailure', 'body changed by one byte')
  t.equal(codeOf(verify({ ...signed(), host: 'evil.example' })), 'AuthFailure.SignatureFailure', 'another host')
  t.equal(codeOf(verify({ ...signed(), 'x-tc-action': 'FuseFace' })), 'AuthFailure.SignatureFailure', 'a signed header changed')
  t.equal(codeOf(verify(signed({ service: 'cvm' }))), 'AuthFailure.SignatureFailure', 'another service')
  const { 'x-tc-action': _, ...withoutAction } = signed()
  t.equal(codeOf(verify(withoutAction)), 'AuthFailure.SignatureFailure', 'a signed header absent')
  t.equal(codeOf(verify({ ...signed(), 'x-tc-timestamp': String(timestamp + 1) })), 'AuthFailure.SignatureFailure', 'another timestamp')
})

t.test('a Content-Type sent with a charset the signer did not sign fails', async (t) => {
  const headers = signed({ contentType: 'application/json' })
  t.equal(codeOf(verify({ ...headers, 'content-type': 'application/json; charset=utf-8' })), 'AuthFailure.SignatureFailure')
  t.equal(codeOf(verify(signed({ contentType: 'application/json; charset=utf-8' }))), 'OK', 'signed as sent, the charset is fine')
  t.equal(codeOf(verify({ ...headers, 'content-type': 'Application/JSON' })), 'OK', 'values are lowercased in the canonical form')
})

t.test('SignedHeaders must include content-type and host', async (t) => {
  const headers = signed()
  t.equal(codeOf(verify({ ...headers, authorization: signOver(headers, ['content-type', 'host', 'x-tc-action'], '2023-11-14') })), 'OK', 'the hand signer agrees with tc3Sign')
  for (const names of [['host', 'x-tc-action'], ['content-type', 'x-tc-action']]) {
    t.equal(codeOf(verify({ ...headers, authorization: signOver(headers, names, '2023-11-14') })), 'AuthFailure.SignatureFailure', names.join(';'))
  }
  const unsorted = signOver(headers, ['host', 'content-type', 'x-tc-action'], '2023-11-14')
  t.equal(codeOf(verify({ ...headers, authorization: unsorted })), 'AuthFailure.SignatureFailure', 'the canonical form sorts the names')
})

t.test('the credential date must be the UTC date of the timestamp', async (t) => {
  const headers = signed()
  t.match(headers.authorization, /\/2023-11-14\/facefusion\//, 'the signer uses the UTC date')
  // A signer that used Beijing time (already 2023-11-15), consistently throughout, is still refused.
  const beijing = signOver(headers, ['content-type', 'host', 'x-tc-action'], '2023-11-15')
  t.equal(codeOf(verify({ ...headers, authorization: beijing })), 'AuthFailure.SignatureFailure')
})

t.test('the temporary credential needs its session token; the permanent one takes none', async (t) => {
  const temporary = signed({ secretId: EMULATOR_TEMPORARY_CREDENTIAL.secretId, secretKey: EMULATOR_TEMPORARY_CREDENTIAL.secretKey })
  t.equal(codeOf(verify({ ...temporary, 'x-tc-token': EMULATOR_TEMPORARY_CREDENTIAL.sessionToken })), 'OK')
  t.equal(codeOf(verify(temporary)), 'AuthFailure.TokenFailure', 'no token')
  t.equal(codeOf(verify({ ...temporary, 'x-tc-token': 'someone-elses-token' })), 'AuthFailure.TokenFailure', 'wrong token')
  t.equal(codeOf(verify({ ...signed(), 'x-tc-token': EMULATOR_TEMPORARY_CREDENTIAL.sessionToken })), 'AuthFailure.TokenFailure', 'a token with a permanent key')
  t.equal(codeOf(verify({ ...temporary, 'x-tc-token': 'x' }, timestamp + 301)), 'AuthFailure.SignatureExpire', 'the clock is checked first')
})

t.test('behind a port or a path prefix: the Host as sent or its name alone, "/" or the path posted to', async (t) => {
  const sign = (signedHost: string, path?: string): string => tc3Sign({
    secretId, secretKey, service: 'facefusion', host: signedHost, ...(path === undefined ? {} : { path }), timestamp, contentType: 'application/json', payload: body
  }).authorization
  const sent = { 'content-type': 'application/json', host: '127.0.0.1:8090', 'x-tc-timestamp': String(timestamp) }
  const check = (authorization: string, path?: string): string =>
    codeOf(verifyTc3({ headers: { ...sent, authorization }, body, keyFor: api3KeyFor, nowSeconds: timestamp, ...(path === undefined ? {} : { path }) }))
  t.equal(check(sign('127.0.0.1:8090')), 'OK', 'the Host header as sent')
  t.equal(check(sign('127.0.0.1')), 'OK', 'the host name without its port, as Tencent\'s Node SDK signs it')
  t.equal(check(sign('127.0.0.2')), 'AuthFailure.SignatureFailure', 'another host name')
  t.equal(check(sign('127.0.0.1:8091')), 'AuthFailure.SignatureFailure', 'another port')
  t.equal(check(sign('127.0.0.1:8090'), '/emulator/'), 'OK', '"/" under a prefix')
  t.equal(check(sign('127.0.0.1:8090', '/emulator/'), '/emulator/'), 'OK', 'the path posted to')
  t.equal(check(sign('127.0.0.1:8090', '/elsewhere/'), '/emulator/'), 'AuthFailure.SignatureFailure', 'a path not posted to')
})
