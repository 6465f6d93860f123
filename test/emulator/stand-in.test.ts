import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { EMULATOR_ACCOUNT } from '../../emulator/shared/accounts.js'
import { completeWithStandIn, startStandIn } from '../../emulator/stand-in.js'
import { loadConfig } from '../../src/config/load.js'

const root = new URL('../../', import.meta.url).pathname

function sources (dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => join(entry.parentPath, entry.name))
}

t.test('the stand-in listens on a loopback port of its own, and yields what the service needs', async (t) => {
  const legacy = await startStandIn({ provider: 'legacy' })
  t.teardown(legacy.close)
  t.match(legacy.origin, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.equal(legacy.url, `${legacy.origin}/fuseapi/face`)
  t.same(legacy.credentials, EMULATOR_ACCOUNT.credentials)
  const astronaut = legacy.templates.find((template) => template.modelId === 'qc_100307_152854_1')
  t.match(astronaut, { projectId: '100307', name: String, previewUrl: `${legacy.origin}/materials/qc_100307_152854_1.jpg`, faces: [{ faceId: '1' }] })
  t.equal((await request(astronaut!.previewUrl)).statusCode, 200, 'its previews are served')

  const v3 = await startStandIn({ provider: 'v3' })
  t.equal(v3.url, `${v3.origin}/`)
  t.same(v3.credentials, { secretId: EMULATOR_ACCOUNT.credentials.secretId, secretKey: EMULATOR_ACCOUNT.credentials.secretKey })
  t.not(v3.origin, legacy.origin)
  await v3.close()
  await t.rejects(request(v3.url), 'closed: nothing listens any more')
})

t.test('completeWithStandIn: what the entry point and startService do with the loaded configuration', async (t) => {
  const withCredentials = loadConfig({ FUSION_PROVIDER: 'v3', TENCENT_SECRET_ID: 'operator-id', TENCENT_SECRET_KEY: 'operator-key' })
  const kept = await completeWithStandIn(withCredentials)
  t.equal(kept.config, withCredentials, 'with credentials, the configuration as it is')
  await kept.close()

  const legacy = await completeWithStandIn(loadConfig({}))
  t.teardown(legacy.close)
  t.match(legacy.config.upstream, { provider: 'legacy', mode: 'emulator', url: /^http:\/\/127\.0\.0\.1:\d+\/fuseapi\/face$/ })
  t.equal(legacy.config.templates?.source, 'emulator', 'legacy: the emulator\'s templates are the list')
  t.ok(legacy.config.templates!.templates.length > 0)

  const v3 = await completeWithStandIn(loadConfig({ FUSION_PROVIDER: 'v3' }))
  t.teardown(v3.close)
  t.equal(v3.config.templates, undefined, 'API 3.0 lists the upstream\'s materials itself')

  const declared = await completeWithStandIn(loadConfig({ FUSION_TEMPLATES: '100307:qc_100307_152854_1=Astronaut' }))
  t.teardown(declared.close)
  t.equal(declared.config.templates?.source, 'config', 'FUSION_TEMPLATES wins')

  const elsewhere = await completeWithStandIn(loadConfig({ TENCENT_LEGACY_URL: 'http://127.0.0.1:8090/fuseapi/face' }))
  t.equal(elsewhere.config.upstream.url, 'http://127.0.0.1:8090/fuseapi/face', 'an emulator elsewhere: its URL, no stand-in')
  t.same(elsewhere.config.upstream.credentials, EMULATOR_ACCOUNT.credentials)
  t.match(elsewhere.config.templates?.templates[0], { previewUrl: /^http:\/\/127\.0\.0\.1:8090\/materials\// })
  await elsewhere.close()
})

t.test('the emulator imports nothing from src/, and src/ reaches it only from the entry point', async (t) => {
  for (const file of sources('emulator')) {
    t.notMatch(readFileSync(file, 'utf8'), /from '(\.\.\/)+src\/|import\('(\.\.\/)+src\//, file.slice(root.length))
  }
  for (const file of sources('src')) {
    const text = readFileSync(file, 'utf8')
    const importsEmulator = /from '(\.\.\/)+emulator\/|import\('(\.\.\/)+emulator\//.test(text)
    if (file.endsWith('/src/server.ts')) t.ok(importsEmulator, 'server.ts loads the stand-in')
    else t.notOk(importsEmulator, file.slice(root.length))
  }
})
