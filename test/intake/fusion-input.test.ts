import t from 'tap'
import { checkMultipartBoundary, readJsonInput } from '../../src/intake/fusion-input.js'
import { fixture } from '../helper.js'

const image = fixture('face.jpg').toString('base64')
const read = (fields: Record<string, unknown>): ReturnType<typeof readJsonInput>['input'] =>
  readJsonInput({ project_id: '100307', model_id: 'qc_100307_152854_1', image, ...fields }, 10 * 1024 * 1024).input

t.test('the FuseFace options, from their usual spellings', async (t) => {
  t.same(read({}).options, {}, 'none given, none set')
  t.same(read({ fuse_profile_degree: '0', fuse_face_degree: 100, logo_add: '0', template_face_id: 'face_1' }).options,
    { profileDegree: 0, faceDegree: 100, logoAdd: false, templateFaceId: 'face_1' })
  for (const [value, expected] of [['1', true], ['true', true], [1, true], [true, true], ['false', false], [0, false], [false, false]] as const) {
    t.equal(read({ logo_add: value }).options.logoAdd, expected, `logo_add ${JSON.stringify(value)}`)
  }
  t.same(read({ logo_add: '' }).options, {}, 'an empty form field is absent')
})

t.test('bad option values are 400 FUSION_INVALID_FIELD naming the rule', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ fuse_face_degree: '101' }, /fuse_face_degree.+0 to 100/],
    [{ fuse_face_degree: -1 }, /fuse_face_degree.+0 to 100/],
    [{ fuse_profile_degree: '50.5' }, /fuse_profile_degree.+0 to 100/],
    [{ fuse_profile_degree: 'half' }, /fuse_profile_degree/],
    [{ logo_add: 'maybe' }, /logo_add.+`0`, `1`, `true` or `false`/],
    [{ logo_add: 2 }, /logo_add/],
    [{ template_face_id: '../1' }, /template_face_id/],
    [{ template_face_id: 'x'.repeat(65) }, /template_face_id/]
  ]
  for (const [fields, message] of cases) {
    t.throws(() => read(fields), { code: 'FUSION_INVALID_FIELD', statusCode: 400, message }, JSON.stringify(fields))
  }
})

t.test('a JSON body\'s field names and text values are bounded as a form\'s: 413 FUSION_FIELD_TOO_LARGE', async (t) => {
  t.throws(() => read({ ['n'.repeat(101)]: 1 }), { code: 'FUSION_FIELD_TOO_LARGE', message: /field name `n{40}…` is too long/ })
  t.throws(() => read({ model_id: 'm'.repeat(1025) }), { code: 'FUSION_FIELD_TOO_LARGE', message: /`model_id` is too long: at most 1024 bytes/ })
  t.throws(() => read({ ['n'.repeat(100)]: 1 }), { code: 'FUSION_UNKNOWN_FIELD' }, '100 bytes of name are allowed, and then judged')
  t.throws(() => read({ model_id: 'm'.repeat(1024) }), { code: 'FUSION_INVALID_FIELD' }, 'and so is 1 KiB of value')
})

t.test('a multipart boundary is 1 to 70 characters, however the parameter is written', async (t) => {
  const refused = { code: 'FUSION_MALFORMED_BODY', statusCode: 400 }
  const cases: Array<[string, boolean]> = [
    [`multipart/form-data; boundary=${'b'.repeat(70)}`, true],
    [`multipart/form-data; boundary=${'b'.repeat(71)}`, false],
    [`Multipart/Form-Data;BOUNDARY="${'b'.repeat(70)}"`, true],
    [`multipart/form-data; boundary="${'b'.repeat(71)}"`, false],
    ['multipart/form-data; boundary="a;b=c d"', true],
    [`multipart/form-data; charset=utf-8; boundary=${'b'.repeat(71)}`, false],
    [`multipart/form-data; x="; boundary=short"; boundary=${'b'.repeat(71)}`, false],
    [`multipart/form-data; boundary=short; boundary=${'b'.repeat(71)}`, true],
    ['multipart/form-data', false],
    ['multipart/form-data; boundary=', false],
    ['multipart/form-data; boundary=""', false],
    [`application/json; boundary=${'b'.repeat(300)}`, true],
    [`multipart/form-datax; boundary=${'b'.repeat(300)}`, true]
  ]
  for (const [contentType, accepted] of cases) {
    if (accepted) t.doesNotThrow(() => checkMultipartBoundary(contentType), contentType.slice(0, 80))
    else t.throws(() => checkMultipartBoundary(contentType), refused, contentType.slice(0, 80))
  }
  t.doesNotThrow(() => checkMultipartBoundary(undefined))
})
