import t from 'tap'
import { createHmac } from 'node:crypto'
import { buildOriginal, signLegacy, signLegacyNow, signOriginal } from '../../../src/upstream/legacy/sign.js'
import { verifyLegacySignature } from '../../../emulator/legacy/verify-signature.js'

// Published vector: COS 3.0 / 万象优图 multi-use signature, same algorithm, no `u` field
// (the COS 3.0 document's published example).
const COS_KEY = 'bLcPnl88WU30VY57ipRhSePfPdOfSruK'
const COS_ORIGINAL = 'a=200001&b=newbucket&k=AKIDUfLUEUigQiXqm7CVSspKJnuaiIKtxqAv&e=1470737000&t=1470736940&r=490258943&f='
const COS_SIGNATURE = 'v6+um3VE3lxGz97PmnSg6+/V9PZhPTIwMDAwMSZiPW5ld2J1Y2tldCZrPUFLSURVZkxVRVVpZ1FpWHFtN0NWU3NwS0pudWFpSUt0eHFBdiZlPTE0NzA3MzcwMDAmdD0xNDcwNzM2OTQwJnI9NDkwMjU4OTQzJmY9'

t.test('the published multi-use vector', async (t) => {
  const original = buildOriginal({
    appId: '200001', bucket: 'newbucket', secretId: 'AKIDUfLUEUigQiXqm7CVSspKJnuaiIKtxqAv', secretKey: COS_KEY,
    expiresAt: 1470737000, now: 1470736940, nonce: 490258943
  })
  t.equal(original, COS_ORIGINAL, 'the original string follows the documented field order')
  t.equal(createHmac('sha1', COS_KEY).update(original).digest('hex'), 'bfafae9b7544de5c46cfdecf9a74a0ebefd5f4f6')
  t.equal(signOriginal(original, COS_KEY), COS_SIGNATURE)
})

t.test('the published single-use vector (f bound to a file)', async (t) => {
  const signature = signLegacy({
    appId: '200001', bucket: 'newbucket', secretId: 'AKIDUfLUEUigQiXqm7CVSspKJnuaiIKtxqAv', secretKey: COS_KEY,
    expiresAt: 0, now: 1470736940, nonce: 490258943, fileId: '/200001/newbucket/tencent_test.jpg'
  })
  t.equal(signature, 'CkZ0/gWkHy3f76ER7k6yXgzq7w1hPTIwMDAwMSZiPW5ld2J1Y2tldCZrPUFLSURVZkxVRVVpZ1FpWHFtN0NWU3NwS0pudWFpSUt0eHFBdiZlPTAmdD0xNDcwNzM2OTQwJnI9NDkwMjU4OTQzJmY9LzIwMDAwMS9uZXdidWNrZXQvdGVuY2VudF90ZXN0LmpwZw==')
})

t.test('the face-fusion-shaped vector (b empty, u=0)', async (t) => {
  const signature = signLegacy({
    appId: '1250000000', secretId: 'AKIDEXAMPLE0000000000000000000000000', secretKey: 'EXAMPLEKEY0000000000000000000000',
    expiresAt: 1700002592, now: 1700000000, nonce: 123456789, u: '0'
  })
  t.equal(signature, 'aaA0fW3GxykGtJ5uapC5RgHQfmlhPTEyNTAwMDAwMDAmYj0maz1BS0lERVhBTVBMRTAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAmZT0xNzAwMDAyNTkyJnQ9MTcwMDAwMDAwMCZyPTEyMzQ1Njc4OSZ1PTAmZj0=')
  t.match(signature, /^[A-Za-z0-9+/]+={0,2}$/, 'standard base64, no line breaks')
})

t.test('a fresh signature verifies with the emulator, and only with the right key', async (t) => {
  const credentials = { appId: '1250000000', secretId: 'dev-id', secretKey: 'dev-key' }
  const at = 1_800_000_000_000
  const signature = signLegacyNow(credentials, 300, () => at)
  const original = Buffer.from(signature, 'base64').subarray(20).toString()
  t.match(original, /^a=1250000000&b=&k=dev-id&e=1800000300&t=1800000000&r=\d{1,10}&u=0&f=$/)

  const keys = (id: string): string | undefined => (id === 'dev-id' ? 'dev-key' : undefined)
  t.match(verifyLegacySignature(signature, keys, 1_800_000_000), { ok: true, appId: '1250000000', expiresAt: 1800000300 })
  t.match(verifyLegacySignature(signature, () => 'another-key', 1_800_000_000), { ok: false, ret: -20003 })
  t.match(verifyLegacySignature(signature, () => undefined, 1_800_000_000), { ok: false, ret: -20003 })
  t.match(verifyLegacySignature(signature, keys, 1_800_000_300), { ok: false, ret: -7 }, 'expired once e is reached')
})

t.test('the emulator reads fields in any order, as official SDKs send them', async (t) => {
  // The YouTu SDK order (a,k,e,t,r,u) with no b and no f.
  const signature = signOriginal('a=1250000000&k=dev-id&e=1800000300&t=1800000000&r=42&u=0', 'dev-key')
  t.match(verifyLegacySignature(signature, () => 'dev-key', 1_800_000_000), { ok: true })
  // The Java SDK order (t before e).
  const javaOrder = signOriginal('a=1250000000&b=&k=dev-id&t=1800000000&e=1800000300&r=42', 'dev-key')
  t.match(verifyLegacySignature(javaOrder, () => 'dev-key', 1_800_000_000), { ok: true })
})

t.test('malformed Authorization values', async (t) => {
  const keys = (): string => 'dev-key'
  t.match(verifyLegacySignature(undefined, keys, 0), { ok: false, ret: -20001 })
  t.match(verifyLegacySignature('   ', keys, 0), { ok: false, ret: -20001 })
  t.match(verifyLegacySignature('not base64 !!', keys, 0), { ok: false, ret: -20002 })
  t.match(verifyLegacySignature(Buffer.from('short').toString('base64'), keys, 0), { ok: false, ret: -20002 })
  const noPairs = Buffer.concat([Buffer.alloc(20), Buffer.from('garbage')]).toString('base64')
  t.match(verifyLegacySignature(noPairs, keys, 0), { ok: false, ret: -20002 })
  const missingExpiry = signOriginal('a=1&k=dev-id&t=1&r=1', 'dev-key')
  t.match(verifyLegacySignature(missingExpiry, keys, 0), { ok: false, ret: -20002 })
})
