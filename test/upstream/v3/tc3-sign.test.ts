import t from 'tap'
import { signingKey, tc3Sign, utcDate } from '../../../src/upstream/v3/tc3-sign.js'

// The official worked example (cloud.tencent.com/document/api/213/30654). The payload's \u escapes are literal backslash sequences.
const PAYLOAD = '{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
const official = {
  secretId: 'AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE',
  secretKey: 'Gu5t9xGARNpq86cd98joQYCN3EXAMPLE',
  service: 'cvm',
  host: 'cvm.tencentcloudapi.com',
  timestamp: 1551113065,
  contentType: 'application/json; charset=utf-8',
  payload: PAYLOAD
}

t.test('the official worked example, every intermediate value', async (t) => {
  const signed = tc3Sign(official)
  t.equal(signed.hashedPayload, '35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064')
  t.equal(signed.canonicalRequest, 'POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064')
  t.equal(signed.hashedCanonicalRequest, '5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031')
  t.equal(signed.stringToSign, 'TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031')
  t.equal(signingKey(official.secretKey, '2019-02-25', 'cvm').toString('hex'), 'ac658d5dde49e9bfdd14e04e062f66b05d9f637d44b8a8d845327d4a77f666b1')
  t.equal(signed.signature, '72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168')
  t.equal(signed.authorization, 'TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168')
})

t.test('the current doc variant: x-tc-action signed too, lowercased', async (t) => {
  const signed = tc3Sign({ ...official, secretKey: '*'.repeat(32), extraSignedHeaders: { 'X-TC-Action': 'DescribeInstances' } })
  t.equal(signed.signedHeaders, 'content-type;host;x-tc-action')
  t.match(signed.canonicalRequest, /\nx-tc-action:describeinstances\n/)
  t.equal(signed.hashedCanonicalRequest, '7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84')
  t.equal(signingKey('*'.repeat(32), '2019-02-25', 'cvm').toString('hex'), 'b596b923aad85185e2d1f6659d2a062e0a86731226e021e61bfe06f7ed05f5af')
  t.equal(signed.signature, '10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f')
  const exampleKey = tc3Sign({ ...official, extraSignedHeaders: { 'X-TC-Action': 'DescribeInstances' } })
  t.equal(exampleKey.signature, '644be983de9a8a3f00db8eadaba61467c3b429e2215758ba897b738ca469fd26', 'the same variant with the EXAMPLE key')
})

t.test('the masked-key variant later copies of the doc carry', async (t) => {
  t.equal(tc3Sign({ ...official, secretKey: 'Gu5t9xGARNpq86cd98joQYCN3*******' }).signature, '2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c')
})

t.test('a face-fusion-shaped request', async (t) => {
  const signed = tc3Sign({
    secretId: 'AKIDEXAMPLE0000000000000000000000000',
    secretKey: 'EXAMPLEKEY0000000000000000000000',
    service: 'facefusion',
    host: 'facefusion.tencentcloudapi.com',
    timestamp: 1700000000,
    contentType: 'application/json; charset=utf-8',
    payload: '{"ProjectId":"100646","ModelId":"qc_100646_154021_9","RspImgType":"url","Image":"aGVsbG8="}',
    extraSignedHeaders: { 'x-tc-action': 'FaceFusion' }
  })
  t.equal(signed.hashedPayload, '9f488f15a6fa247de1612c34ff140513168b7ec63327aa3fa04cb435bea9a31b')
  t.equal(signed.hashedCanonicalRequest, '217070b93a765afb2e617045c489ca643317effec4b5a8ccdcedc59e8a11170f')
  t.equal(signed.signature, '03923d67bf9f0674674aabf3fe684f3cc0ce3e375d6e61b9a61147779447b7ff')
  t.equal(signed.date, '2023-11-14')
})

t.test('the credential date is the UTC date, and the content type is signed exactly', async (t) => {
  t.equal(utcDate(1551113065), '2019-02-25', '2019-02-26 in UTC+8, still the 25th in UTC')
  t.equal(utcDate(1551139199), '2019-02-25')
  t.equal(utcDate(1551139200), '2019-02-26')
  const plain = tc3Sign({ ...official, contentType: 'application/json' })
  t.not(plain.signature, tc3Sign(official).signature, 'a charset suffix changes the signature')
})
