import t from 'tap'
import { EMULATOR_ACCOUNT } from '../../emulator/shared/accounts.js'
import { signLegacyNow } from '../../src/upstream/legacy/sign.js'
import { fixture, post, runOnFreePort } from '../helper.js'

t.test('`npm run emulator` serves the legacy endpoint on its own', async (t) => {
  const { process: emulator, port } = await runOnFreePort(t, 'emulator/server.ts', { EMULATOR_RET_TYPE: 'number', LOG_LEVEL: 'info' }, /Server listening/,
    { portVariable: 'EMULATOR_PORT' })

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

  emulator.kill('SIGTERM')
  t.equal(await emulator.exited, 0, 'exits cleanly on SIGTERM')
})
