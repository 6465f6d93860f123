import t from 'tap'
import sharp from 'sharp'
import { request } from 'undici'
import { EMULATOR_ACCOUNT } from '../../../emulator/shared/accounts.js'
import { LEGACY_BODY_LIMIT_BYTES } from '../../../emulator/legacy/route.js'
import { signLegacy, signLegacyNow } from '../../../src/upstream/legacy/sign.js'
import { fixture, post, startEmulator } from '../../helper.js'
import { pngDeclaring } from '../declared-png.js'

const { credentials } = EMULATOR_ACCOUNT
const photo = fixture('face.jpg').toString('base64')

function body (overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    appid: credentials.appId,
    uin: credentials.uin,
    project_id: '100307',
    model_id: 'qc_100307_152854_1',
    img_data: photo,
    rsp_img_type: 'url',
    ...overrides
  })
}

const signed = (): Record<string, string> => ({ 'content-type': 'application/json', authorization: signLegacyNow(credentials, 300) })

t.test('a signed request gets a fused picture at the URL it names', async (t) => {
  const { legacyUrl, url } = await startEmulator(t)
  const reply = await post(legacyUrl, body(), signed())
  t.equal(reply.status, 200)
  const answer = reply.json()
  t.equal(answer.ret, '0', 'ret is a string by default, as in the documented example')
  t.match(answer.img_url, new RegExp(`^${url}/results/[0-9a-f-]+\\.jpg$`))

  const image = await request(answer.img_url)
  t.equal(image.statusCode, 200)
  t.equal(image.headers['content-type'], 'image/jpeg')
  const bytes = Buffer.from(await image.body.arrayBuffer())
  const metadata = await sharp(bytes).metadata()
  t.match(metadata, { format: 'jpeg', width: 720, height: 960 }, 'the template-sized result')

  // The user's face is really in it: the bare template's visor is near-black (#222831).
  const region = { left: 310, top: 330, width: 100, height: 100 }
  const slot = await sharp(await sharp(bytes).extract(region).toBuffer()).stats()
  t.ok(slot.channels[0]!.mean > 100, `the visor area now holds the photo (mean red ${Math.round(slot.channels[0]!.mean)})`)
})

t.test('rsp_img_type=base64 answers in img_base64, or in img_url when so configured; ret may be a number', async (t) => {
  const standard = await startEmulator(t)
  const first = (await post(standard.legacyUrl, body({ rsp_img_type: 'base64' }), signed())).json()
  t.equal((await sharp(Buffer.from(first.img_base64, 'base64')).metadata()).format, 'jpeg')
  t.notOk('img_url' in first)

  const older = await startEmulator(t, { base64Field: 'img_url', retType: 'number' })
  const second = (await post(older.legacyUrl, body({ rsp_img_type: 'base64' }), signed())).json()
  t.equal(second.ret, 0)
  t.equal((await sharp(Buffer.from(second.img_url, 'base64')).metadata()).format, 'jpeg')
})

t.test('signature checks', async (t) => {
  const { legacyUrl } = await startEmulator(t)
  const json = { 'content-type': 'application/json' }
  const now = Math.floor(Date.now() / 1000)
  const cases: Array<[string, Record<string, string>, string]> = [
    ['no Authorization', json, '-20001'],
    ['unparsable Authorization', { ...json, authorization: '%%%' }, '-20002'],
    ['unknown SecretId', { ...json, authorization: signLegacyNow({ ...credentials, secretId: 'someone-else' }, 300) }, '-20003'],
    ['wrong key', { ...json, authorization: signLegacyNow({ ...credentials, secretKey: 'wrong' }, 300) }, '-20003'],
    ['expired', { ...json, authorization: signLegacy({ ...credentials, now: now - 600, expiresAt: now - 1, nonce: 1, u: '0' }) }, '-7'],
    ['signed for another appid', { ...json, authorization: signLegacyNow({ ...credentials, appId: '1250009999' }, 300) }, '-1']
  ]
  for (const [name, headers, ret] of cases) {
    const reply = await post(legacyUrl, body(), headers)
    t.equal(reply.json().ret, ret, name)
  }
  const wrongUin = await post(legacyUrl, body({ uin: '999' }), signed())
  t.equal(wrongUin.json().ret, '-1', 'a uin that is not the key owner\'s')
})

t.test('body and field checks, in the documented codes', async (t) => {
  const { legacyUrl } = await startEmulator(t)
  const cases: Array<[string, string, Record<string, string>, string]> = [
    ['not JSON', 'appid=1', signed(), '-20006'],
    ['JSON but not an object', '[1,2]', signed(), '-1009'],
    ['wrong content type', body(), { ...signed(), 'content-type': 'text/plain' }, '-2100'],
    ['model_id empty', body({ model_id: '' }), signed(), '-20007'],
    ['project_id empty', body({ project_id: '' }), signed(), '-20008'],
    ['img_data empty', body({ img_data: '' }), signed(), '-20009'],
    ['rsp_img_type empty', body({ rsp_img_type: '' }), signed(), '-20010'],
    ['appid empty', body({ appid: '' }), signed(), '-20011'],
    ['uin empty', body({ uin: '' }), signed(), '-20012'],
    ['rsp_img_type neither url nor base64', body({ rsp_img_type: 'file' }), signed(), '-6'],
    ['unknown activity', body({ project_id: '999999' }), signed(), '-2103'],
    ['unknown material', body({ model_id: 'qc_100307_000000_0' }), signed(), '-2102'],
    ['material of another activity', body({ model_id: 'qc_100646_154021_9' }), signed(), '-2103'],
    ['activity created after December 2018', body({ project_id: '300001', model_id: 'qc_300001_000001_1' }), signed(), '-20013'],
    ['material without a face', body({ model_id: 'qc_100307_152854_3' }), signed(), '-8'],
    ['photo without a face', body({ img_data: fixture('blank.jpg').toString('base64') }), signed(), '1000'],
    ['a data: prefix the docs forbid', body({ img_data: `data:image/jpeg;base64,${photo}` }), signed(), '-1001'],
    ['a GIF', body({ img_data: fixture('still.gif').toString('base64') }), signed(), '-1001'],
    ['an animated WebP', body({ img_data: fixture('animated.webp').toString('base64') }), signed(), '-1001'],
    ['not an image', body({ img_data: fixture('not-an-image.jpg').toString('base64') }), signed(), '-1001'],
    ['photo over 500 KB', body({ img_data: fixture('face-alpha.png').toString('base64') }), signed(), '-3']
  ]
  for (const [name, payload, headers, ret] of cases) {
    const reply = await post(legacyUrl, payload, headers)
    t.equal(reply.status, 200, `${name}: HTTP 200`)
    t.equal(reply.json().ret, ret, name)
    t.type(reply.json().msg, 'string')
  }
})

t.test('limits: the 6 MB body and 1080×1080 pixels', async (t) => {
  const { legacyUrl } = await startEmulator(t)
  const large = await sharp({ create: { width: 1200, height: 900, channels: 3, background: '#7a8' } }).jpeg().toBuffer()
  t.equal((await post(legacyUrl, body({ img_data: large.toString('base64') }), signed())).json().ret, '-3')

  // Decompression bombs: refused from the header as too large, never decoded.
  for (const [name, bomb] of [['16000×16000', pngDeclaring(16_000, 16_000)], ['30000×30000', fixture('pixel-bomb.png')]] as const) {
    const started = performance.now()
    t.equal((await post(legacyUrl, body({ img_data: bomb.toString('base64') }), signed())).json().ret, '-3', `a PNG declaring ${name}`)
    t.ok(performance.now() - started < 1500, `${name}: answered quickly`)
  }

  const huge = body({ img_data: 'A'.repeat(LEGACY_BODY_LIMIT_BYTES) })
  const reply = await post(legacyUrl, huge, signed())
  t.equal(reply.status, 413)
  t.equal(reply.json().ret, '-3')
})

t.test('any code can be forced with the material emulator_ret_<code>', async (t) => {
  const { legacyUrl } = await startEmulator(t)
  for (const ret of ['-2012', '-5', '-9', '-20005', '4242']) {
    t.equal((await post(legacyUrl, body({ model_id: `emulator_ret_${ret}` }), signed())).json().ret, ret)
  }
  // Still behind the signature: a forced code never skips authentication.
  t.equal((await post(legacyUrl, body({ model_id: 'emulator_ret_-5' }), { 'content-type': 'application/json' })).json().ret, '-20001')
})

t.test('without faults, a fault-injection id is an unknown material like any other', async (t) => {
  const { legacyUrl } = await startEmulator(t, { faults: false })
  t.equal((await post(legacyUrl, body({ model_id: 'emulator_ret_-5' }), signed())).json().ret, '-2102')
})

t.test('frequency control per activity', async (t) => {
  let now = 1_800_000_000_000
  const { legacyUrl } = await startEmulator(t, { qps: 2, clock: () => now })
  const headers = (): Record<string, string> => ({ 'content-type': 'application/json', authorization: signLegacyNow(credentials, 300, () => now) })
  const rets: string[] = []
  for (let i = 0; i < 3; i++) rets.push((await post(legacyUrl, body({ model_id: 'emulator_ret_0' }), headers())).json().ret)
  t.same(rets, ['0', '0', '-20004'], 'the third call within one second is refused')
  const other = await post(legacyUrl, body({ project_id: '100646', model_id: 'emulator_ret_0' }), headers())
  t.equal(other.json().ret, '0', 'another activity has its own quota')
  now += 1000
  t.equal((await post(legacyUrl, body({ model_id: 'emulator_ret_0' }), headers())).json().ret, '0', 'a second later it is allowed again')
})

t.test('unknown result ids are 404', async (t) => {
  const { url } = await startEmulator(t)
  const reply = await request(`${url}/results/not-there.jpg`)
  t.equal(reply.statusCode, 404)
  await reply.body.dump()
})
