import t from 'tap'
import sharp from 'sharp'
import { request } from 'undici'
import { UPSTREAM_PROVIDERS, finishedJob, fixture, fuseForm, startEmulator, startService, upstreamEnv } from '../helper.js'

/**
 * The emulator listens on 127.0.0.1 and a port of its own; a phone on the LAN
 * reaches only the service's port, under the address it used. So in emulator
 * mode the picture URLs name the origin the client called, and the service
 * serves the pictures. Another loopback address, 127.0.0.2, plays the LAN's.
 */

async function get (url: string, headers: Record<string, string> = {}): Promise<{ status: number, type: unknown, body: Buffer }> {
  const response = await request(url, { headers, headersTimeout: 15_000, bodyTimeout: 15_000 })
  return { status: response.statusCode, type: response.headers['content-type'], body: Buffer.from(await response.body.arrayBuffer()) }
}

for (const provider of UPSTREAM_PROVIDERS) {
  t.test(`${provider}: a client at another address gets picture URLs at that address, and the pictures load there`, async (t) => {
    // Listening on 127.0.0.2 only: nothing of the emulator (on 127.0.0.1) is reachable through it.
    const { url } = await startService(t, { FUSION_PROVIDER: provider }, { host: '127.0.0.2' })
    const fused = await fuseForm(url, fixture('face.jpg'))
    t.equal(fused.status, 200)
    const { imageUrl } = fused.json()
    t.match(imageUrl, /^http:\/\/127\.0\.0\.2:\d+\/results\/[0-9a-f-]{36}\.jpg$/)
    t.equal(new URL(imageUrl).origin, url, 'the address and port the client called')
    const picture = await get(imageUrl)
    t.equal(picture.status, 200)
    t.equal(picture.type, 'image/jpeg')
    t.match(await sharp(picture.body).metadata(), { format: 'jpeg', width: 720, height: 960 }, 'the fused picture itself')

    const templates = JSON.parse((await get(`${url}/templates?project_id=100307`)).body.toString())
    const withPreview = templates.templates.filter((template: { previewUrl?: string }) => template.previewUrl !== undefined)
    if (provider === 'legacy') t.ok(withPreview.length > 0, 'the emulator\'s templates have previews')
    for (const { previewUrl } of withPreview) {
      t.equal(new URL(previewUrl).origin, url, `a preview at the client's address: ${previewUrl}`)
      t.equal((await get(previewUrl)).status, 200)
    }
  })
}

t.test('the Host a client sends names its pictures; X-Forwarded-Host and -Proto only from a proxy in TRUST_PROXY', async (t) => {
  const forwarded = { 'x-forwarded-host': 'phone.example:8443', 'x-forwarded-proto': 'https' }

  const direct = await startService(t)
  const port = new URL(direct.url).port
  const asked = await fuseForm(direct.url, fixture('face.jpg'), {}, { host: `127.0.0.2:${port}`, ...forwarded })
  t.match(asked.json().imageUrl, new RegExp(`^http://127\\.0\\.0\\.2:${port}/results/`), 'the Host header; forwarded headers from anyone are ignored')

  const proxied = await startService(t, { TRUST_PROXY: '127.0.0.1' })
  const behind = await fuseForm(proxied.url, fixture('face.jpg'), {}, forwarded)
  t.match(behind.json().imageUrl, /^https:\/\/phone\.example:8443\/results\/[0-9a-f-]{36}\.jpg$/, 'the origin the proxy was called at')

  // A job names its picture for whoever reads it, not for whoever queued it.
  const queued = await fuseForm(direct.url, fixture('face.jpg'), {}, { prefer: 'respond-async', host: 'desk.example' })
  t.equal(queued.status, 202)
  const job = await finishedJob(direct.url, `/fuse/jobs/${queued.json().jobId as string}`, { host: `127.0.0.2:${port}` })
  t.equal(job.status, 'succeeded')
  t.match(job.result.imageUrl, new RegExp(`^http://127\\.0\\.0\\.2:${port}/results/`))
})

t.test('only the emulator\'s pictures are served, and unknown ones are 404', async (t) => {
  const { url } = await startService(t)
  for (const path of ['/results/00000000-0000-4000-8000-000000000000.jpg', '/results/..%2Ffuseapi%2Fface', '/materials/nothing.jpg']) {
    const answer = await get(`${url}${path}`)
    t.equal(answer.status, 404, path)
    t.equal(JSON.parse(answer.body.toString()).code, 'FUSION_NOT_FOUND')
  }
})

t.test('with real credentials the upstream\'s URLs are answered as they are, and no picture route exists', async (t) => {
  const emulator = await startEmulator(t)
  const { url } = await startService(t, {
    ...upstreamEnv('legacy', emulator),
    TENCENT_APPID: '1250000000',
    TENCENT_UIN: '100000000001',
    TENCENT_SECRET_ID: 'emulator-dev-secret-id',
    TENCENT_SECRET_KEY: 'emulator-dev-secret-key-not-a-secret'
  })
  const fused = await fuseForm(url, fixture('face.jpg'))
  t.equal(fused.status, 200)
  t.equal(new URL(fused.json().imageUrl).origin, emulator.url, 'the upstream\'s own URL')
  t.equal((await get(`${url}${new URL(fused.json().imageUrl).pathname}`)).status, 404)
})
