import t from 'tap'
import { request } from 'undici'
import { fixture, fuseForm, multipart, post, startService } from '../helper.js'

/**
 * Refusals that tell the user what to do: each names what was wrong and what the service expects, over real HTTP.
 */

const ids = [{ name: 'project_id', value: '100307' }, { name: 'model_id', value: 'qc_100307_152854_1' }]

t.test('a photo under another field name (curl -F file=@photo.jpg) names the field expected and the one received', async (t) => {
  const { url } = await startService(t)
  const { body, contentType } = multipart([...ids, { name: 'file', value: fixture('face.jpg'), filename: 'photo.jpg', contentType: 'image/jpeg' }])
  const reply = await post(`${url}/fuse`, body, { 'content-type': contentType })
  t.equal(reply.status, 400)
  t.equal(reply.json().code, 'FUSION_UNKNOWN_FIELD', 'not a second photo: a field this API does not know')
  t.match(reply.json().message, /`file`/, 'names the field received')
  t.match(reply.json().message, /`image`/, 'names the field expected')

  const { body: two, contentType: twoType } = multipart([...ids, ...['a.jpg', 'b.jpg'].map((filename) =>
    ({ name: 'image', value: fixture('face.jpg'), filename, contentType: 'image/jpeg' }))])
  const second = await post(`${url}/fuse`, two, { 'content-type': twoType })
  t.equal(second.json().code, 'FUSION_TOO_MANY_FILES', 'two photos are still too many files')
})

t.test('an upload over the limit is told the limit, in MiB', async (t) => {
  const { url } = await startService(t)
  // A JPEG's first bytes, so the format passes, then past the default 10 MiB.
  const large = Buffer.concat([fixture('face.jpg'), Buffer.alloc(10 * 1024 * 1024)])
  const form = await fuseForm(url, large)
  t.equal(form.status, 413)
  t.match(form.json(), { code: 'FUSION_FILE_TOO_LARGE', message: /upload limit of 10 MiB\b/ })

  const json = await post(`${url}/fuse`, JSON.stringify({ project_id: '100307', model_id: 'qc_100307_152854_1', image: Buffer.alloc(12 * 1024 * 1024).toString('base64') }),
    { 'content-type': 'application/json' })
  t.equal(json.status, 413)
  t.match(json.json(), { code: 'FUSION_BODY_TOO_LARGE', message: /at most 10 MiB, about 13\.33 MiB as base64/ })

  const small = await startService(t, { MAX_UPLOAD_BYTES: '300000' })
  const decoded = await post(`${small.url}/fuse`,
    JSON.stringify({ project_id: '100307', model_id: 'qc_100307_152854_1', image: Buffer.alloc(300_003).toString('base64') }),
    { 'content-type': 'application/json' })
  t.match(decoded.json(), { code: 'FUSION_FILE_TOO_LARGE', message: /upload limit of 0\.29 MiB \(300000 bytes\)/ },
    'base64 that decodes past a limit of no whole MiB')
})

t.test('a known path with another method is 405 with Allow; an unknown path stays 404', async (t) => {
  const { url } = await startService(t)
  const cases: Array<[string, string, string]> = [
    ['GET', '/fuse', 'POST'],
    ['DELETE', '/templates', 'GET, HEAD'],
    ['POST', '/fuse/jobs/some-job-id', 'GET, HEAD, DELETE'],
    ['PUT', '/healthz', 'GET, HEAD']
  ]
  for (const [method, path, allow] of cases) {
    const reply = await request(`${url}${path}?x=1`, { method: method as 'GET' })
    t.equal(reply.statusCode, 405, `${method} ${path}`)
    t.equal(reply.headers.allow, allow, `${method} ${path}: Allow`)
    const answer = await reply.body.json() as Record<string, unknown>
    t.match(answer, { statusCode: 405, code: 'FUSION_METHOD_NOT_ALLOWED', error: 'Method Not Allowed', requestId: String })
    t.equal(answer.message, `${path} does not take ${method}: use ${allow.replace(/, (\w+)$/, ' or $1')}.`)
  }
  for (const [method, path] of [['GET', '/nope'], ['POST', '/fuse/jobs'], ['GET', '/fuse/jobs/id/events/more'], ['GET', '/fuse/']]) {
    const reply = await request(`${url}${path}`, { method: method as 'GET' })
    t.equal(reply.statusCode, 404, `${method} ${path}`)
    t.equal(reply.headers.allow, undefined)
    t.match(await reply.body.json(), { code: 'FUSION_NOT_FOUND' })
  }
})

t.test('broken JSON, a form without its boundary and a form sent as JSON each get their own message', async (t) => {
  const { url } = await startService(t)
  const form = multipart([...ids, { name: 'image', value: fixture('face.jpg'), filename: 'photo.jpg', contentType: 'image/jpeg' }])
  const cases: Array<[string, Buffer | string, string, RegExp]> = [
    ['broken JSON', '{"project_id":', 'application/json', /^The request body is not valid JSON\.$/],
    ['a prototype member', '{"__proto__":{"x":1}}', 'application/json', /`__proto__`/],
    ['no boundary parameter', form.body, 'multipart/form-data', /has no boundary parameter: let the client set that header/],
    ['a boundary the body does not use', form.body, 'multipart/form-data; boundary=another-boundary', /ended before its closing boundary/],
    ['a form sent as JSON (curl -H \'Content-Type: application/json\' -F ...)', form.body, 'application/json',
      /is a multipart form, but its Content-Type says application\/json/]
  ]
  const messages = new Set<string>()
  for (const [name, body, contentType, message] of cases) {
    const reply = await post(`${url}/fuse`, body, { 'content-type': contentType })
    t.equal(reply.status, 400, name)
    t.match(reply.json(), { code: 'FUSION_MALFORMED_BODY', message }, name)
    messages.add(reply.json().message)
  }
  t.equal(messages.size, cases.length, 'no two share a sentence')
})
