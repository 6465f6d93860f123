import t from 'tap'
import { fixture, multipart, post, startService } from '../helper.js'

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
