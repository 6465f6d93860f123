import t from 'tap'
import sharp from 'sharp'
import { request } from 'undici'
import { startEmulator, startService, stubUpstream, upstreamEnv, stubEnv } from '../helper.js'

async function getJson (url: string): Promise<{ status: number, body: any }> {
  const response = await request(url, { headersTimeout: 15_000, bodyTimeout: 15_000 })
  return { status: response.statusCode, body: await response.body.json() }
}

t.test('legacy on the built-in emulator: the emulator\'s templates, with faces and previews', async (t) => {
  const { url } = await startService(t)
  const { status, body } = await getJson(`${url}/templates`)
  t.equal(status, 200)
  t.equal(body.source, 'emulator')
  const astronaut = body.templates.find((template: { modelId: string }) => template.modelId === 'qc_100307_152854_1')
  t.match(astronaut, { projectId: '100307', name: String, previewUrl: /^http:\/\/127\.0\.0\.1:\d+\/materials\/qc_100307_152854_1\.jpg$/, faces: [{ faceId: '1', width: Number, height: Number }] })
  t.notOk(body.templates.some((template: { projectId: string }) => template.projectId === '300001'), 'an activity the legacy API refuses is not offered')
  t.notOk(body.templates.some((template: { faces: unknown[] }) => template.faces.length === 0), 'nor a material without a face')

  t.equal(new URL(astronaut.previewUrl).origin, url, 'served through the service\'s own port')
  const preview = await request(astronaut.previewUrl as string)
  t.equal(preview.statusCode, 200)
  t.match(await sharp(Buffer.from(await preview.body.arrayBuffer())).metadata(), { format: 'jpeg', width: 720, height: 960 })

  const filtered = await getJson(`${url}/templates?project_id=100646`)
  t.ok(filtered.body.templates.length > 0)
  t.ok(filtered.body.templates.every((template: { projectId: string }) => template.projectId === '100646'), 'project_id filters')
})

t.test('FUSION_TEMPLATES is listed as declared, whatever the provider', async (t) => {
  for (const provider of ['legacy', 'v3']) {
    const { url } = await startService(t, { FUSION_PROVIDER: provider, FUSION_TEMPLATES: '100307:qc_100307_152854_1=Astronaut,100646:qc_100646_154021_9' })
    const all = await getJson(`${url}/templates`)
    t.same(all.body, {
      templates: [
        { projectId: '100307', modelId: 'qc_100307_152854_1', name: 'Astronaut' },
        { projectId: '100646', modelId: 'qc_100646_154021_9' }
      ],
      source: 'config'
    }, provider)
    t.same((await getJson(`${url}/templates?project_id=100646`)).body.templates, [{ projectId: '100646', modelId: 'qc_100646_154021_9' }])
  }
})

t.test('legacy with real credentials and nothing declared: an empty list, and no upstream call', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => { response.writeHead(500).end() })
  const { url } = await startService(t, {
    TENCENT_APPID: '1250000001', TENCENT_UIN: '100000000002', TENCENT_SECRET_ID: 'operator-id', TENCENT_SECRET_KEY: 'operator-key', TENCENT_LEGACY_URL: upstream.url
  })
  t.same((await getJson(`${url}/templates`)).body, { templates: [], source: 'none' })
  t.equal(upstream.calls.length, 0)
})

t.test('API 3.0: the activity\'s materials through DescribeMaterialList, cached', async (t) => {
  const actions: string[] = []
  const emulator = await startEmulator(t, { onV3Request: ({ headers }) => { actions.push(String(headers['x-tc-action'])) } })
  const { url } = await startService(t, upstreamEnv('v3', emulator))

  const missing = await getJson(`${url}/templates`)
  t.match(missing, { status: 400, body: { code: 'FUSION_MISSING_FIELD', message: /project_id/ } })

  const first = await getJson(`${url}/templates?project_id=100307`)
  t.equal(first.status, 200)
  t.equal(first.body.source, 'upstream')
  t.match(first.body.templates.find((template: { modelId: string }) => template.modelId === 'qc_100307_152854_1'), {
    projectId: '100307', faces: [{ faceId: '1', x: Number, y: Number, width: Number, height: Number }]
  })
  const second = await getJson(`${url}/templates?project_id=100307`)
  t.same(second.body, first.body)
  t.same(actions, ['DescribeMaterialList'], 'the second list came from the cache')

  const fresh = await getJson(`${url}/templates?project_id=${'at_1603326187690926080'}`)
  t.match(fresh.body.templates, [{ modelId: 'mt_1603586676924403712' }], 'an activity of the 2022 console')

  const unknown = await getJson(`${url}/templates?project_id=999999`)
  t.match(unknown, { status: 404, body: { code: 'FUSION_TEMPLATE_NOT_FOUND', upstreamCode: 'InvalidParameterValue.ActivityIdNotFound', message: /No such activity/ } })
  const again = await getJson(`${url}/templates?project_id=999999`)
  t.equal(again.status, 404)
  t.equal(actions.filter((action) => action === 'DescribeMaterialList').length, 3, '"no such activity" is kept too: made-up ids cost one call each')
})

t.test('API 3.0: other failures are not cached, and a malformed list is a 502, not a crash', async (t) => {
  const answers = [
    { Response: { Error: { Code: 'InternalError', Message: '内部错误' }, RequestId: 'r1' } },
    { Response: { MaterialInfos: [null, 'x', { MaterialId: 'mt_1', MaterialStatus: 1, MaterialFaceList: [null, { FaceId: '1', FaceInfo: null }] }], Count: 3, RequestId: 'r2' } }
  ]
  const upstream = await stubUpstream(t, ({ number }, response) => { response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answers[number - 1] ?? answers[1])) })
  // Listings go through the upstream's retries like fusions (test/upstream/chain.test.ts); none here, to see the failure.
  const { url } = await startService(t, { ...stubEnv('v3', upstream.url), UPSTREAM_RETRIES: '0' })
  t.match(await getJson(`${url}/templates?project_id=at_1`), { status: 502, body: { code: 'FUSION_UPSTREAM_FAILED' } })
  const listed = await getJson(`${url}/templates?project_id=at_1`)
  t.equal(listed.status, 200, 'asked again after a transient failure')
  t.same(listed.body.templates, [{ projectId: 'at_1', modelId: 'mt_1', faces: [{ faceId: '1' }] }], 'what could not be read was skipped')
  t.equal(upstream.calls.length, 2)
})

t.test('API 3.0 with TEMPLATES_CACHE_SECONDS=0 asks every time; concurrent asks share one call', async (t) => {
  let calls = 0
  const emulator = await startEmulator(t, { onV3Request: () => { calls++ } })
  const { url: uncachedUrl } = await startService(t, { ...upstreamEnv('v3', emulator), TEMPLATES_CACHE_SECONDS: '0' })
  await getJson(`${uncachedUrl}/templates?project_id=100307`)
  await getJson(`${uncachedUrl}/templates?project_id=100307`)
  t.equal(calls, 2)

  // A slow upstream, so all five requests arrive while the first listing is in flight.
  const slow = await stubUpstream(t, (_call, response) => {
    setTimeout(() => { response.writeHead(200, { 'content-type': 'application/json' }).end('{"Response":{"MaterialInfos":[],"Count":0,"RequestId":"r"}}') }, 300)
  })
  const { url } = await startService(t, { ...stubEnv('v3', slow.url), TEMPLATES_CACHE_SECONDS: '0' })
  const answers = await Promise.all(Array.from({ length: 5 }, async () => await getJson(`${url}/templates?project_id=at_2`)))
  t.ok(answers.every((answer) => answer.status === 200))
  t.equal(slow.calls.length, 1, 'five concurrent requests, one upstream call, even with nothing cached')
})

t.test('a bad project_id is refused before any call', async (t) => {
  const { url } = await startService(t, { FUSION_PROVIDER: 'v3' })
  const bad = await getJson(`${url}/templates?project_id=${encodeURIComponent('../etc/passwd')}`)
  t.match(bad, { status: 400, body: { code: 'FUSION_INVALID_FIELD' } })
  const twice = await getJson(`${url}/templates?project_id=100307&project_id=100646`)
  t.match(twice, { status: 400, body: { code: 'FUSION_INVALID_FIELD' } }, 'a repeated project_id is refused, not a 500')
  const tooLong = await getJson(`${url}/templates?project_id=${'a'.repeat(65)}`)
  t.match(tooLong, { status: 400, body: { code: 'FUSION_INVALID_FIELD' } })
})

t.test('the project_id query follows the same id rule as POST /fuse, checked by Fastify and answered in our words', async (t) => {
  const { url } = await startService(t, {})
  for (const bad of ['..%2Fx', 'x'.repeat(65), 'a&project_id=b']) {
    const reply = await getJson(`${url}/templates?project_id=${bad}`)
    t.match(reply, { status: 400, body: { code: 'FUSION_INVALID_FIELD', message: 'The query parameter `project_id` must be 1–64 letters, digits, `_` or `-`.' } }, bad)
  }
  t.equal((await getJson(`${url}/templates?project_id=`)).status, 200, 'an empty value means none')
})
