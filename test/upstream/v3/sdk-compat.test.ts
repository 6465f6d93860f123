import t, { type Test } from 'tap'
import { Agent } from 'node:http'
import type { LookupFunction } from 'node:net'
import { createRequire } from 'node:module'
import { request } from 'undici'
import { EMULATOR_ACCOUNT, EMULATOR_TEMPORARY_CREDENTIAL } from '../../../emulator/shared/accounts.js'
import { signedV3Headers, v3FusionBody } from '../../../src/upstream/v3/client.js'
import { fixture, startEmulator } from '../../helper.js'

/**
 * Tencent's official Node SDK (tencentcloud-sdk-nodejs) against the emulator:
 * proof that the emulator verifies exactly what Tencent's own client signs, and
 * that our signer produces the SDK's bytes and signature for the same inputs.
 *
 * The SDK derives the credential scope's service from the endpoint's first
 * label, so it is pointed at facefusion.tencentcloudapi.com as in production;
 * its HTTP agent resolves every name to 127.0.0.1, so nothing leaves the machine.
 */
const require = createRequire(import.meta.url)
const { facefusion } = require('tencentcloud-sdk-nodejs/tencentcloud/services/facefusion/index.js') as {
  facefusion: Record<'v20220927' | 'v20181201', { Client: new (config: unknown) => Record<string, (params: unknown) => Promise<Record<string, unknown>>> }>
}

const HOST = 'facefusion.tencentcloudapi.com'
const loopbackOnly: LookupFunction = (_hostname, options, callback) => {
  if (options.all === true) (callback as unknown as (error: null, addresses: Array<{ address: string, family: number }>) => void)(null, [{ address: '127.0.0.1', family: 4 }])
  else callback(null, '127.0.0.1', 4)
}

interface Captured { headers: Record<string, string | string[] | undefined>, body: Buffer }

async function sdkAgainstEmulator (t: Test, version: 'v20220927' | 'v20181201', credential: Record<string, string>): Promise<{ client: Record<string, (params: unknown) => Promise<Record<string, unknown>>>, captured: Captured[], port: string }> {
  const captured: Captured[] = []
  const emulator = await startEmulator(t, { onV3Request: (incoming) => { captured.push(incoming) } })
  const port = new URL(emulator.url).port
  const agent = new Agent({ keepAlive: false, lookup: loopbackOnly })
  t.teardown(() => { agent.destroy() })
  const client = new facefusion[version].Client({
    credential,
    region: 'ap-guangzhou',
    profile: { httpProfile: { endpoint: `${HOST}:${port}`, protocol: 'http://', agent, reqTimeout: 15 } }
  })
  return { client, captured, port }
}

const photo = fixture('face.jpg')
const header = (captured: Captured, name: string): string => String(captured.headers[name])

t.test('the SDK\'s FuseFace (2022-09-27) is accepted, and our signer makes the same request', async (t) => {
  const { secretId, secretKey } = EMULATOR_ACCOUNT.credentials
  const { client, captured, port } = await sdkAgainstEmulator(t, 'v20220927', { secretId, secretKey })
  const answer = await client.FuseFace!({
    ProjectId: '100307',
    ModelId: 'qc_100307_152854_1',
    RspImgType: 'url',
    MergeInfos: [{ Image: photo.toString('base64'), TemplateFaceID: '1' }],
    FuseProfileDegree: 60,
    FuseFaceDegree: 80,
    LogoAdd: 0
  })
  t.match(answer, { FusedImage: /^http:\/\/.+\/results\/.+\.jpg$/, RequestId: String }, 'the emulator accepted the SDK\'s signature')
  const fused = await request(String(answer.FusedImage).replace(`${HOST}:${port}`, `127.0.0.1:${port}`))
  t.equal(fused.statusCode, 200)
  await fused.body.dump()

  const sent = captured[0]!
  const timestamp = Number(header(sent, 'x-tc-timestamp'))
  const ourBody = v3FusionBody('FuseFace', '2022-09-27', {
    projectId: '100307',
    modelId: 'qc_100307_152854_1',
    resultType: 'url',
    image: photo,
    options: { templateFaceId: '1', profileDegree: 60, faceDegree: 80, logoAdd: false }
  })
  t.equal(ourBody.toString(), sent.body.toString(), 'the same body, byte for byte')
  const ours = signedV3Headers({
    credentials: { secretId, secretKey },
    url: new URL(`http://${HOST}:${port}/`),
    action: 'FuseFace',
    version: '2022-09-27',
    region: 'ap-guangzhou',
    timestamp,
    body: ourBody
  })
  t.equal(ours.authorization, header(sent, 'authorization'), 'the same signature for the same inputs and timestamp')
  for (const name of ['content-type', 'x-tc-action', 'x-tc-version', 'x-tc-timestamp', 'x-tc-region']) {
    t.equal(ours[name], header(sent, name), name)
  }
})

t.test('the SDK\'s FaceFusion (2018-12-01) with temporary credentials is accepted, and signed as ours', async (t) => {
  const { secretId, secretKey, sessionToken } = EMULATOR_TEMPORARY_CREDENTIAL
  const { client, captured, port } = await sdkAgainstEmulator(t, 'v20181201', { secretId, secretKey, token: sessionToken })
  const answer = await client.FaceFusion!({ ProjectId: '100646', ModelId: 'qc_100646_154021_9', RspImgType: 'base64', Image: photo.toString('base64') })
  t.type(answer.Image, 'string')
  t.ok(String(answer.Image).length > 1000, 'a base64 picture came back')

  const sent = captured[0]!
  t.equal(header(sent, 'x-tc-token'), sessionToken)
  const ourBody = v3FusionBody('FaceFusion', '2018-12-01', { projectId: '100646', modelId: 'qc_100646_154021_9', resultType: 'base64', image: photo })
  t.equal(ourBody.toString(), sent.body.toString())
  const ours = signedV3Headers({
    credentials: { secretId, secretKey, sessionToken },
    url: new URL(`http://${HOST}:${port}/`),
    action: 'FaceFusion',
    version: '2018-12-01',
    region: 'ap-guangzhou',
    timestamp: Number(header(sent, 'x-tc-timestamp')),
    body: ourBody
  })
  t.equal(ours.authorization, header(sent, 'authorization'))
  t.equal(ours['x-tc-token'], sessionToken)
})

t.test('the emulator refuses the SDK when the key is wrong, as Tencent does', async (t) => {
  const { client } = await sdkAgainstEmulator(t, 'v20220927', { secretId: EMULATOR_ACCOUNT.credentials.secretId, secretKey: 'not-the-key' })
  await t.rejects(client.FuseFace!({
    ProjectId: '100307', ModelId: 'qc_100307_152854_1', RspImgType: 'url', MergeInfos: [{ Image: photo.toString('base64') }]
  }), { code: 'AuthFailure.SignatureFailure' })
})
