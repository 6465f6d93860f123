import { createHash, createHmac } from 'node:crypto'
import t from 'tap'
import { api3KeyFor, EMULATOR_ACCOUNT, EMULATOR_TEMPORARY_CREDENTIAL } from '../../../emulator/shared/accounts.js'
import { computeTc3, deriveSigningKey, scopeDate } from '../../../emulator/api3/tc3.js'
import { parseTc3Authorization, verifyTc3 } from '../../../emulator/api3/verify-tc3.js'
import { signingKey, tc3Sign } from '../../../src/upstream/v3/tc3-sign.js'

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

// The emulator computes signatures with its own code (emulator/api3/tc3.ts), written from the published algorithm:
// these check it against the published vectors, and against the gateway's signer (src/upstream/v3/tc3-sign.ts),
// so that a mistake in either side cannot pass unnoticed by being made on both.
const CVM_PAYLOAD = Buffer.from('{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}')

t.test('the emulator\'s TC3 computation reproduces the official worked example step by step', async (t) => {
  t.equal(sha256Hex(CVM_PAYLOAD), '35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064', 'the payload as published')
  const computed = computeTc3({
    secretKey: 'Gu5t9xGARNpq86cd98joQYCN3EXAMPLE',
    service: 'cvm',
    timestamp: 1551113065,
    path: '/',
    headers: [['content-type', 'application/json; charset=utf-8'], ['host', 'cvm.tencentcloudapi.com']],
    body: CVM_PAYLOAD
  })
  t.equal(computed.canonicalRequest, 'POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064')
  t.equal(sha256Hex(computed.canonicalRequest), '5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031')
  t.equal(computed.stringToSign, 'TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031')
  t.equal(scopeDate(1551113065), '2019-02-25', 'the UTC date, though already the 26th in UTC+8')
  t.equal(deriveSigningKey('Gu5t9xGARNpq86cd98joQYCN3EXAMPLE', '2019-02-25', 'cvm').toString('hex'), 'ac658d5dde49e9bfdd14e04e062f66b05d9f637d44b8a8d845327d4a77f666b1')
  t.equal(computed.signedHeaders, 'content-type;host')
  t.equal(computed.signature, '72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168')
})

t.test('the emulator\'s TC3 computation reproduces the current document\'s variant (x-tc-action signed, masked key)', async (t) => {
  const key = '*'.repeat(32)
  const computed = computeTc3({
    secretKey: key,
    service: 'cvm',
    timestamp: 1551113065,
    path: '/',
    headers: [['content-type', 'application/json; charset=utf-8'], ['host', 'cvm.tencentcloudapi.com'], ['x-tc-action', 'DescribeInstances']],
    body: CVM_PAYLOAD
  })
  t.equal(sha256Hex(computed.canonicalRequest), '7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84')
  t.equal(createHmac('sha256', `TC3${key}`).update('2019-02-25').digest('hex'), 'da98fb70dcf6b112dc21038d1eeeb3a95c74b4dcb12c1131f864f6066bd02be0', 'SecretDate')
  t.equal(deriveSigningKey(key, '2019-02-25', 'cvm').toString('hex'), 'b596b923aad85185e2d1f6659d2a062e0a86731226e021e61bfe06f7ed05f5af', 'SecretSigning')
  t.equal(computed.signature, '10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f')
})

t.test('the emulator\'s TC3 computation gives the face-fusion-shaped vector of the protocol notes', async (t) => {
  const computed = computeTc3({
    secretKey: 'EXAMPLEKEY0000000000000000000000',
    service: 'facefusion',
    timestamp: 1_700_000_000,
    path: '/',
    headers: [['content-type', 'application/json; charset=utf-8'], ['host', 'facefusion.tencentcloudapi.com'], ['x-tc-action', 'FaceFusion']],
    body
  })
  t.equal(sha256Hex(body), '9f488f15a6fa247de1612c34ff140513168b7ec63327aa3fa04cb435bea9a31b')
  t.equal(sha256Hex(computed.canonicalRequest), '217070b93a765afb2e617045c489ca643317effec4b5a8ccdcedc59e8a11170f')
  t.equal(computed.signature, '03923d67bf9f0674674aabf3fe684f3cc0ce3e375d6e61b9a61147779447b7ff')
})

t.test('the emulator and the gateway\'s signer agree, step by step, over varied requests', async (t) => {
  const cases: Array<{ contentType: string, host: string, path: string, extra: Record<string, string>, timestamp: number }> = [
    { contentType: 'application/json', host: 'facefusion.tencentcloudapi.com', path: '/', extra: {}, timestamp: 1_700_000_000 },
    { contentType: 'application/json; charset=utf-8', host: '127.0.0.1:8090', path: '/', extra: { 'x-tc-action': 'FuseFace' }, timestamp: 1_551_113_065 },
    { contentType: ' Application/JSON ', host: 'Facefusion.TencentCloudAPI.com', path: '/prefix/', extra: { 'x-tc-action': 'DescribeMaterialList', 'x-tc-region': 'ap-shanghai' }, timestamp: 1_234_567_890 }
  ]
  for (const [index, example] of cases.entries()) {
    const payload = Buffer.from(JSON.stringify({ index, Image: 'aGVsbG8=', Name: '未命名' }))
    const gateway = tc3Sign({ secretId, secretKey, service: 'facefusion', host: example.host, path: example.path, timestamp: example.timestamp, contentType: example.contentType, payload, extraSignedHeaders: example.extra })
    const emulator = computeTc3({
      secretKey,
      service: 'facefusion',
      timestamp: example.timestamp,
      path: example.path,
      headers: [['content-type', example.contentType], ['host', example.host], ...Object.entries(example.extra)],
      body: payload
    })
    t.equal(emulator.canonicalRequest, gateway.canonicalRequest, `canonical request ${index}`)
    t.equal(emulator.stringToSign, gateway.stringToSign, `string to sign ${index}`)
    t.equal(emulator.signedHeaders, gateway.signedHeaders, `signed headers ${index}`)
    t.equal(emulator.signature, gateway.signature, `signature ${index}`)
    t.equal(deriveSigningKey(secretKey, gateway.date, 'facefusion').toString('hex'), signingKey(secretKey, gateway.date, 'facefusion').toString('hex'), `signing key ${index}`)
  }
})

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
