import t from 'tap'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { EMULATOR_ACCOUNT } from '../../src/emulator/accounts.js'
import { signLegacyNow } from '../../src/upstream/legacy/sign.js'
import { fixture, post } from '../helper.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

t.test('`npm run emulator` serves the legacy endpoint on its own', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number }
      probe.close(() => resolve(port))
    })
  })
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src', 'emulator', 'server.ts')], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', EMULATOR_PORT: String(port), EMULATOR_RET_TYPE: 'number', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(() => child.kill('SIGKILL'))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('emulator did not start')), 20_000)
    child.stdout.on('data', (chunk: Buffer) => { if (String(chunk).includes('Server listening')) { clearTimeout(timer); resolve() } })
  })

  const { credentials } = EMULATOR_ACCOUNT
  const reply = await post(`http://127.0.0.1:${port}/fuseapi/face`, JSON.stringify({
    appid: credentials.appId,
    uin: credentials.uin,
    project_id: '100307',
    model_id: 'qc_100307_152854_1',
    img_data: fixture('face.jpg').toString('base64'),
    rsp_img_type: 'url'
  }), { 'content-type': 'application/json', authorization: signLegacyNow(credentials, 300) })
  t.equal(reply.status, 200)
  t.match(reply.json(), { ret: 0, img_url: new RegExp(`^http://127\\.0\\.0\\.1:${port}/results/`) })

  child.kill('SIGTERM')
  t.equal(await new Promise((resolve) => child.on('exit', resolve)), 0, 'exits cleanly on SIGTERM')
})
