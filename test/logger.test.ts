import t from 'tap'
import { Redis } from 'ioredis'
import { pino, type LoggerOptions } from 'pino'
import { fusionError } from '../src/errors.js'
import { loggerOptions } from '../src/logger.js'
import { answerJson, captureLogs, fixture, fuseForm, redisPrefix, sharedRedisUrl, startService, stubEnv, stubUpstream } from './helper.js'

t.test('no secret, signature, API key or image data reaches a log line', async (t) => {
  // An upstream of the test's own records exactly what the service signed and sent.
  let authorization = ''
  let imgData = ''
  const upstream = await stubUpstream(t, ({ request, body }, response) => {
    authorization = String(request.headers.authorization)
    imgData = JSON.parse(body.toString()).img_data
    answerJson(response, { ret: 0, img_base64: Buffer.from('fused picture bytes').toString('base64') })
  })

  const secretKey = 'sEcReT-kEy-that-must-never-be-logged'
  const logs = captureLogs()
  const { url } = await startService(t, {
    LOG_LEVEL: 'trace',
    TENCENT_APPID: '1250000001',
    TENCENT_UIN: '100000000002',
    TENCENT_SECRET_ID: 'secret-id-of-the-operator',
    TENCENT_SECRET_KEY: secretKey,
    TENCENT_LEGACY_URL: upstream.url
  }, { logStream: logs.stream })

  const photo = fixture('face.jpg')
  const reply = await fuseForm(url, photo, { rsp_img_type: 'base64' }, {
    authorization: 'Bearer client-bearer-token-123',
    'x-api-key': 'client-api-key-456',
    cookie: 'session=client-cookie-789'
  })
  t.equal(reply.status, 200)
  t.ok(authorization.length > 40 && imgData.length > 1000, 'the upstream saw a signed request with a photo')

  const text = logs.text()
  t.ok(logs.lines().some((line) => line.msg === 'upstream call'), 'the request was logged in detail')
  t.ok(text.includes('[redacted]'), 'trace-level library logs were redacted, not dropped')
  const forbidden: Record<string, string> = {
    'the secret key': secretKey,
    'the upstream Authorization header': authorization,
    'the client bearer token': 'client-bearer-token-123',
    'the client API key': 'client-api-key-456',
    'the client cookie': 'client-cookie-789',
    'the uploaded photo': photo.subarray(0, 300).toString('base64'),
    'the normalised photo sent upstream': imgData.slice(0, 400),
    'the fused result': reply.json().imageBase64
  }
  for (const [name, value] of Object.entries(forbidden)) {
    t.notOk(text.includes(value), `${name} is not in the logs`)
  }
})

t.test('API 3.0: no secret, session token, signature or image data reaches a log line', async (t) => {
  let authorization = ''
  let image = ''
  const upstream = await stubUpstream(t, ({ number, request, body }, response) => {
    authorization = String(request.headers.authorization)
    image = JSON.parse(body.toString()).MergeInfos[0].Image
    // The first answer says the signature expired, so the re-signing path logs too.
    if (number === 1) {
      answerJson(response, { Response: { Error: { Code: 'AuthFailure.SignatureExpire', Message: '签名过期' }, RequestId: 'r1' } })
      return
    }
    answerJson(response, { Response: { FusedImage: Buffer.from('fused picture bytes').toString('base64'), RequestId: 'r2' } })
  })
  const secretKey = 'v3-sEcReT-kEy-that-must-never-be-logged'
  const sessionToken = 'v3-session-token-that-must-never-be-logged'
  const logs = captureLogs()
  const { url } = await startService(t, {
    LOG_LEVEL: 'trace',
    ...stubEnv('v3', upstream.url),
    TENCENT_SECRET_ID: 'AKIDoperator',
    TENCENT_SECRET_KEY: secretKey,
    TENCENT_SESSION_TOKEN: sessionToken
  }, { logStream: logs.stream })

  const photo = fixture('face.jpg')
  const reply = await fuseForm(url, photo, { rsp_img_type: 'base64' }, { 'x-tc-token': 'client-sent-token-999' })
  t.equal(reply.status, 200)
  t.equal(upstream.calls.length, 2, 'signed twice')
  const text = logs.text()
  t.ok(logs.lines().some((line) => line.msg === 'upstream call'))
  const signature = /Signature=([0-9a-f]{64})/.exec(authorization)?.[1] ?? 'no signature seen'
  const forbidden: Record<string, string> = {
    'the secret key': secretKey,
    'the session token': sessionToken,
    'a token a client sent': 'client-sent-token-999',
    'the TC3 signature': signature,
    'the normalised photo sent upstream': image.slice(0, 400),
    'the uploaded photo': photo.subarray(0, 300).toString('base64'),
    'the fused result': reply.json().imageBase64
  }
  for (const [name, value] of Object.entries(forbidden)) {
    t.notOk(text.includes(value), `${name} is not in the logs`)
  }
})

t.test('every line carries the request id', async (t) => {
  const logs = captureLogs()
  const { url } = await startService(t, { LOG_LEVEL: 'info' }, { logStream: logs.stream })
  const reply = await fuseForm(url, fixture('face.jpg'), {}, { 'x-request-id': 'trace-me-1' })
  t.equal(reply.status, 200)
  const mine = logs.lines().filter((line) => line.reqId === 'trace-me-1')
  t.ok(mine.some((line) => line.msg === 'image normalised'))
  t.ok(mine.some((line) => line.msg === 'upstream call'))
  t.ok(mine.some((line) => line.msg === 'request completed'))
})

t.test('a Redis command\'s arguments, which carry the line\'s keys (and their job ids), are redacted from errors', async (t) => {
  const redis = new Redis(sharedRedisUrl())
  t.teardown(() => redis.disconnect())
  const key = `${redisPrefix()}jobs:sent:a-job-id-that-must-not-be-logged`
  await redis.set(key, '1', 'PX', 60_000)
  const error = await redis.lpush(key, 'x').catch((caught: unknown) => caught) as Error & { command?: { args?: unknown } }
  t.match(error.command?.args, [key], 'ioredis puts the arguments on its error')
  const logs = captureLogs()
  const log = pino(loggerOptions('info', logs.stream) as LoggerOptions, logs.stream)
  log.error({ err: error }, 'job failed')
  log.warn({ cause: error, err: fusionError('FUSION_QUEUE_UNAVAILABLE', { cause: error }) }, 'line failed')
  t.match(logs.text(), /WRONGTYPE/, 'the error itself is logged')
  t.notOk(logs.text().includes('a-job-id-that-must-not-be-logged'), 'its arguments are not')
})
