import { randomBytes } from 'node:crypto'
import { PassThrough, Readable } from 'node:stream'
import Fastify from 'fastify'
import t from 'tap'
import { fusionError } from '../../src/errors.js'
import { createUploadBuffers } from '../../src/images/upload-buffers.js'
import { readJsonInput } from '../../src/intake/fusion-input.js'
import { JsonBody, MAX_JSON_DEPTH, NumberText, readJsonBody } from '../../src/intake/json-body.js'

/**
 * The streaming JSON reader against what it replaces: Fastify's JSON parser (secure-json-parse over the whole body)
 * then the intake's checks on the parsed value. Every body, however it is cut into chunks, must get the same answer:
 * the same code and message, or the same fields and the same photo bytes.
 */

const MAX = 4096
const PROJECT = '"project_id":"100307"'
const MODEL = '"model_id":"qc_100307_152854_1"'
const photo = randomBytes(601)
const base64 = photo.toString('base64')
const urlSafe = base64.replace(/\+/g, '-').replace(/\//g, '_')
const ids = `${PROJECT},${MODEL}`
const body = (image: string, extra = ''): string => `{${ids},"image":${image}${extra}}`
const str = (value: string): string => JSON.stringify(value)

// Fastify's own JSON parser, as /fuse used it before.
const fastifyJson = Fastify().getDefaultJsonParser('error', 'error')

type Outcome = { code: string, message: string } | { fields: unknown, photo: string }

function outcomeOf (run: () => ReturnType<typeof readJsonInput>): Outcome {
  try {
    const { input } = run()
    return { fields: { ...input, photo: undefined }, photo: input.photo.toString('hex') }
  } catch (error) {
    const { code, message } = error as { code: string, message: string }
    return { code, message }
  }
}

const PARSE_REFUSAL = '(refused by the parser)'

/** `outcome` as the reference words it: a parser's refusal with the same code stands for any message. */
function asReference (outcome: Outcome, expected: Outcome): Outcome {
  const parseRefused = 'code' in expected && expected.message === PARSE_REFUSAL && 'code' in outcome && outcome.code === expected.code
  return parseRefused ? { code: outcome.code, message: PARSE_REFUSAL } : outcome
}

/** What /fuse answered before: the body parsed whole by Fastify, then checked (its refusals now each in their own words). */
function reference (text: string, max = MAX): Outcome {
  let parsed: unknown
  let failed: unknown
  fastifyJson({} as never, text, (error: unknown, value: unknown) => { failed = error; parsed = value })
  // The parser's refusal: its code; each cause's own message is checked in its own table below.
  if (failed !== null && failed !== undefined) return { code: 'FUSION_MALFORMED_BODY', message: PARSE_REFUSAL }
  return outcomeOf(() => readJsonInput(parsed, max))
}

const buffers = createUploadBuffers({ maxFree: 4, trimIntervalMs: 60_000 })
t.teardown(() => { buffers.close() })

async function streamed (chunks: Buffer[], max = MAX, contentLength?: number): Promise<Outcome> {
  const length = contentLength ?? chunks.reduce((sum, chunk) => sum + chunk.length, 0)
  let read: JsonBody
  try {
    read = await readJsonBody(Readable.from(chunks, { objectMode: false }), {
      contentLength: String(length), bodyLimit: 1024 * 1024, maxImageBytes: max, buffers
    })
  } catch (error) {
    const { code, message } = error as { code: string, message: string }
    return { code, message }
  }
  return outcomeOf(() => {
    const input = readJsonInput(read, max)
    // The photo's buffer may be reused at once: copy what is compared.
    const copy = { ...input, input: { ...input.input, photo: Buffer.from(input.input.photo) } }
    input.release()
    return copy
  })
}

/** Cuts `text` (as UTF-8) into pieces of the given sizes, round and round. */
function cut (text: string, sizes: number[]): Buffer[] {
  const bytes = Buffer.from(text)
  const chunks: Buffer[] = []
  for (let at = 0, index = 0; at < bytes.length; index++) {
    const size = sizes[index % sizes.length]!
    chunks.push(bytes.subarray(at, at + size))
    at += size
  }
  return chunks
}

/** The bodies of the comparison: what callers send, and what they should not. */
function corpus (): Array<[string, string]> {
  const huge = 'x'.repeat(3000)
  const manyUnknown = Array.from({ length: 40 }, (_, index) => `"u${index}":${index}`).join(',')
  return [
    ['plain', body(str(base64))],
    ['a data: URL', body(str(`data:image/jpeg;base64,${base64}`))],
    ['a data: URL with parameters, upper case', body(str(`DATA:image/jpeg;name=a.jpg;charset=x;BASE64,${base64}`))],
    ['a data: URL without ;base64', body(str(`data:image/jpeg,${base64}`))],
    ['a data: URL with a bad character', body(str(`data:image/jp eg;base64,${base64}`))],
    ['a data: URL with / in a parameter', body(str(`data:image/jpeg;a=b/c;base64,${base64}`))],
    ['a data: URL without a comma', body(str('data:image/jpeg;base64'))],
    ['a data: URL and nothing more', body(str('data:image/jpeg;base64,'))],
    ['only data:', body(str('data:'))],
    ['"data" as base64', body(str('data'))],
    ['"dat"', body(str('dat'))],
    ['leading space before data:', body(str(` data:image/jpeg;base64,${base64}`))],
    ['the URL-safe alphabet', body(str(urlSafe))],
    ['MIME line breaks', body(str(base64.replace(/.{76}/g, '$&\r\n')))],
    ['spaces and tabs everywhere', body(str(base64.replace(/(.{5})/g, '$1 \t')))],
    ['escaped slashes (PHP)', body(str(base64).replace(/\//g, '\\/'))],
    ['every character escaped', body(`"${[...base64.slice(0, 400)].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"`)],
    ['non-ASCII whitespace inside (\\u00a0, \\u2028)', body(str(`${base64.slice(0, 100)}\u00a0\u2028${base64.slice(100)}`))],
    ['padding then whitespace', body(str('QUJDRA== \n'))],
    ['padding, whitespace, padding', body(str('QUJDRA= ='))],
    ['three pads', body(str('QUJDRA==='))],
    ['a pad in the middle', body(str('QUJD=RA=='))],
    ['only pads', body(str('=='))],
    ['a pad and data after', body(str('QUJDRA=A'))],
    ['length one past a quartet', body(str('QUJDR'))],
    ['length one past a quartet, padded', body(str('QUJDRA=='.slice(0, 5) + '=='))],
    ['two characters', body(str('QQ'))],
    ['three characters', body(str('QUI'))],
    ['an invalid character', body(str(`${base64.slice(0, 500)}!${base64.slice(500)}`))],
    ['a non-ASCII character', body(str(`${base64.slice(0, 500)}é${base64.slice(500)}`))],
    ['empty', body('""')],
    ['only whitespace', body(str(' \n\t '))],
    ['too large', body(str(randomBytes(MAX + 1).toString('base64')))],
    ['exactly the limit', body(str(randomBytes(MAX).toString('base64')))],
    ['too large and invalid', body(str(`${randomBytes(MAX + 300).toString('base64')}!`))],
    ['image null', body('null')],
    ['image a number', body('42')],
    ['image true', body('true')],
    ['image an object', body('{"data":"QUJD"}')],
    ['image an array', body(`[${str(base64)}]`)],
    ['no image', `{${ids}}`],
    ['image first', `{"image":${str(base64)},${ids}}`],
    ['image twice, the last wins', body(str('QUJD'), `,"image":${str(base64)}`)],
    ['image twice, the last a number', body(str(base64), ',"image":5')],
    ['image twice, the last invalid', body(str(base64), ',"image":"!!"')],
    ['image twice, the first invalid', body(str('!!'), `,"image":${str(base64)}`)],
    ['a field twice, the last wins', body(str(base64), ',"model_id":"other_model"')],
    ['numeric ids', `{"project_id":100307,"model_id":12,"image":${str(base64)}}`],
    ['a negative zero id', `{"project_id":-0,"model_id":"m","image":${str(base64)}}`],
    ['a long number that is an integer', `{"project_id":100307.${'0'.repeat(2000)},"model_id":"m","image":${str(base64)}}`],
    ['a long number that is not', `{"project_id":100307.${'0'.repeat(2000)}1,"model_id":"m","image":${str(base64)}}`],
    ['an unsafe integer id', `{"project_id":9007199254740993,"model_id":"m","image":${str(base64)}}`],
    ['options of every kind', body(str(base64), ',"rsp_img_type":"base64","fuse_face_degree":1e2,"fuse_profile_degree":"0","logo_add":1,' +
      '"template_face_id":"face_1"')],
    ['logo_add 0 and a degree 50.0', body(str(base64), ',"logo_add":0,"fuse_face_degree":50.0')],
    ['a degree out of range', body(str(base64), ',"fuse_face_degree":101')],
    ['a degree 1e400', body(str(base64), ',"fuse_face_degree":1e400')],
    ['an empty option', body(str(base64), ',"template_face_id":""')],
    ['an unknown field', body(str(base64), ',"extra":1')],
    ['an unknown null field (absent, as in a form)', body(str(base64), ',"extra":null')],
    ['an unknown empty field', body(str(base64), ',"extra":""')],
    ['an unknown field with a nested value', body(str(base64), ',"extra":{"a":[1,{"b":2}]}')],
    ['a known field with a nested value', `{"project_id":{"a":1},${MODEL},"image":${str(base64)}}`],
    ['a known field with an array', `{"project_id":["100307"],${MODEL},"image":${str(base64)}}`],
    ['a missing field', `{${PROJECT},"image":${str(base64)}}`],
    ['an invalid field', body(str(base64), ',"rsp_img_type":"file"')],
    ['a name of 101 bytes', body(str(base64), `,"${'n'.repeat(101)}":1`)],
    ['a name of 100 bytes', body(str(base64), `,"${'n'.repeat(100)}":1`)],
    ['a 3000-character name', body(str(base64), `,"${'n'.repeat(3000)}":1`)],
    ['a value of 1025 bytes', body(str(base64), `,"model_id":"${'m'.repeat(1025)}"`)],
    ['a value of 1024 bytes', body(str(base64), `,"model_id":"${'m'.repeat(1024)}"`)],
    ['a value of 513 two-byte characters', body(str(base64), `,"model_id":"${'é'.repeat(513)}"`)],
    ['a long value, then the same field short', body(str(base64), `,"color":"${huge}","color":"red"`)],
    ['an integer-like unknown name after others', body(str(base64), ',"zeta":1,"7":2')],
    ['forty unknown fields', body(str(base64), `,${manyUnknown}`)],
    ['forty unknown fields, then one too long', body(str(base64), `,${manyUnknown},"late":"${huge}"`)],
    ['forty unknown fields, then a known one invalid', body(str(base64), `,${manyUnknown},"rsp_img_type":"file"`)],
    ['a hostile name', body(str(base64), ',"`\\\\\\"\\u202e\\u0007<script>":1')],
    ['unicode names and escapes in keys', body(str(base64), ',"\\u00e9t\\u00e9\\n":1')],
    ['a key spelled with escapes', `{"\\u0070roject_id":"100307",${MODEL},"image":${str(base64)}}`],
    ['__proto__', body(str(base64), ',"__proto__":{"x":1}')],
    ['__proto__ spelled with escapes', body(str(base64), ',"\\u005f_proto__":1')],
    ['__proto__ nested', body(str(base64), ',"extra":[{"__proto__":1}]')],
    ['constructor.prototype', body(str(base64), ',"constructor":{"prototype":{}}')],
    ['constructor.prototype nested', body(str(base64), ',"extra":{"a":{"constructor":{"x":1,"prototype":null}}}')],
    ['constructor.prototype, then constructor again', body(str(base64), ',"constructor":{"prototype":1},"constructor":2')],
    ['constructor without prototype', body(str(base64), ',"constructor":{"proto":1}')],
    ['constructor an array', body(str(base64), ',"constructor":["prototype"]')],
    ['a byte-order mark', `\ufeff${body(str(base64))}`],
    ['whitespace around', ` \n\t${body(str(base64))}\r\n `],
    ['an array', `[${str(base64)}]`],
    ['a string', str(base64)],
    ['a number', '42'],
    ['null', 'null'],
    ['an array of a poisoned object', '[{"__proto__":1}]'],
    ['empty', ''],
    ['only whitespace', '  \n'],
    ['a form sent as JSON', '--boundary\r\nContent-Disposition: form-data; name="project_id"\r\n\r\n100307\r\n--boundary--\r\n'],
    ['a form sent as JSON, after whitespace', ' \r\n--boundary\r\nContent-Disposition: form-data; name="model_id"\r\n\r\nx\r\n--boundary--'],
    ['a negative number, then garbage', '-x'],
    ['broken: cut in the image', body(str(base64)).slice(0, 400)],
    ['broken: cut in a key', `{${ids},"ima`],
    ['broken: trailing comma', body(str(base64), ',')],
    ['broken: trailing garbage', `${body(str(base64))}x`],
    ['broken: two values', `${body(str(base64))}{}`],
    ['broken: a control character in the image', body(`"${base64.slice(0, 10)}\n${base64.slice(10)}"`)],
    ['broken: a bad escape', body(`"${base64.slice(0, 10)}\\x${base64.slice(10)}"`)],
    ['broken: a short \\u escape', body(`"${base64.slice(0, 10)}\\u12"`)],
    ['broken: single quotes', `{'project_id':'1'}`],
    ['broken: a leading zero', `{"project_id":0100307,${MODEL},"image":${str(base64)}}`],
    ['broken: true1', body(str(base64), ',"logo_add":true1')],
    ['broken: NaN', body(str(base64), ',"logo_add":NaN')],
    ['broken: invalid UTF-8 outside a string', `{${ids},"image":${str(base64)}\u00ff}`],
    ['invalid UTF-8 inside a value', body(str(base64), ',"template_face_id":"a\ufffdb"')]
  ]
}

t.test('every body gets the answer it got when parsed whole, however it is cut', async (t) => {
  for (const [name, text] of corpus()) {
    const whole = await streamed([Buffer.from(text)])
    t.same(asReference(whole, reference(text)), reference(text), `${name}: in one piece`)
    t.same(await streamed(cut(text, [1])), whole, `${name}: byte by byte`)
    t.same(await streamed(cut(text, [7, 1, 3, 64, 2, 1000])), whole, `${name}: in uneven pieces`)
  }
  t.equal(buffers.lent, 0, 'every photo buffer was given back')
})

t.test('each refusal of the parse has its own sentence', async (t) => {
  const form = '--b\r\nContent-Disposition: form-data; name="image"\r\n\r\nxx\r\n--b--\r\n'
  const cases: Array<[string, string, string]> = [
    ['empty', '  \n', 'The JSON body is empty.'],
    ['a prototype member', '{"__proto__":{"x":1}}', 'The JSON body has a `__proto__` or `constructor.prototype` member, which is refused.'],
    ['a form under a JSON type', form, 'The body is a multipart form, but its Content-Type says application/json: send it as ' +
      'multipart/form-data with its boundary (curl -F and FormData set that header themselves; do not set Content-Type by hand).'],
    ['broken', '{"project_id":', 'The request body is not valid JSON.']
  ]
  for (const [name, text, message] of cases) {
    t.same(reference(text), { code: 'FUSION_MALFORMED_BODY', message: PARSE_REFUSAL }, `${name}: refused by the parser`)
    t.same(await streamed(cut(text, [1])), { code: 'FUSION_MALFORMED_BODY', message }, name)
  }
})

t.test('chunk boundaries at every position: inside escapes, base64 quartets, keys and multi-byte characters', async (t) => {
  const text = `\ufeff{"proj\\u0065ct_id":"100307","model_id":"qc_\\u00e9",` +
    `"image":"data:image/jpeg;base64,${base64.slice(0, 120)}\\r\\n${base64.slice(120, 240).replace(/\//g, '\\/')}\\u0041AA=",` +
    `"t\\u00e9st":"x\\"y","logo_add":1e0}`
  const expected = reference(text)
  t.match(expected, { code: 'FUSION_UNKNOWN_FIELD' }, 'the reference refuses the unknown field (after decoding the rest)')
  const fine = text.replace(',"t\\u00e9st":"x\\"y"', '').replace('qc_\\u00e9', 'qc_1')
  const accepted = reference(fine)
  t.match(accepted, { photo: String }, 'and accepts the body without it')
  const bytes = Buffer.from(text).length
  let differences = 0
  for (let at = 1; at < bytes; at++) {
    for (const [sample, wanted] of [[text, expected], [fine, accepted]] as const) {
      const whole = Buffer.from(sample)
      if (at >= whole.length) continue
      const got = await streamed([whole.subarray(0, at), whole.subarray(at)])
      if (JSON.stringify(got) !== JSON.stringify(wanted)) {
        differences++
        t.same(got, wanted, `split at byte ${at}`)
      }
    }
  }
  t.equal(differences, 0, `the same answer split at each of ${bytes - 1} positions`)
})

t.test('duplicate keys: the last one wins, as JSON.parse has it', async (t) => {
  const second = randomBytes(300)
  const outcome = await streamed([Buffer.from(body(str(base64), `,"image":${str(second.toString('base64'))},"model_id":"m_2","model_id":"m_3"`))])
  t.match(outcome, { fields: { modelId: 'm_3' }, photo: second.toString('hex') })
  t.match(await streamed([Buffer.from(body(str(base64), ',"image":null'))]), { code: 'FUSION_MISSING_IMAGE' })
  t.match(await streamed([Buffer.from(body(str(base64), ',"image":[]'))]), { code: 'FUSION_INVALID_FIELD', message: /`image` must be a base64 string/ })
  t.equal(buffers.lent, 0)
})

t.test('nested values are refused by the field\'s rule, with today\'s codes; past 64 levels, as malformed', async (t) => {
  // The top-level object is one of the 64 levels, and in three cases an object around the arrays another.
  const nested = (depth: number): string => `${'['.repeat(depth)}${']'.repeat(depth)}`
  const cases = (value: string): Array<[string, string, RegExp]> => [
    [`{"project_id":${value},${MODEL},"image":${str(base64)}}`, 'FUSION_INVALID_FIELD', /`project_id`/],
    [body(str(base64), `,"logo_add":{"a":${value}}`), 'FUSION_INVALID_FIELD', /`logo_add`/],
    [body(str(base64), `,"nested":{"a":${value}}`), 'FUSION_UNKNOWN_FIELD', /Unknown field `nested`/],
    [body(`{"a":${value}}`), 'FUSION_INVALID_FIELD', /`image` must be a base64 string/]
  ]
  for (const [text, code, message] of cases(nested(MAX_JSON_DEPTH - 2))) {
    t.match(reference(text), { code, message })
    t.match(await streamed(cut(text, [4096])), { code, message })
  }
  // Millions of `[` would each hold a frame until the body ends: refused at the first level too many.
  const tooDeep = 'The JSON body nests objects or arrays more than 64 levels deep: send the fields as one flat object.'
  for (const [text] of [...cases(nested(MAX_JSON_DEPTH)), ...cases(nested(50_000))]) {
    t.same(await streamed(cut(text, [4096])), { code: 'FUSION_MALFORMED_BODY', message: tooDeep })
  }
  t.same(await streamed([Buffer.from('['.repeat(1_000_000))]), { code: 'FUSION_MALFORMED_BODY', message: tooDeep },
    'before the body ends, and whatever follows')
  t.equal(buffers.lent, 0, 'every photo buffer was given back')
})

t.test('unknown fields are refused with today\'s codes; past the first 32 only one too large is kept', async (t) => {
  t.match(await streamed([Buffer.from(body(str(base64), ',"extra":1,"other":2'))]),
    { code: 'FUSION_UNKNOWN_FIELD', message: /^Unknown field `extra`/ })
  const thousands = Array.from({ length: 5000 }, (_, index) => `"f${index}":"${'v'.repeat(index === 4000 ? 2000 : 10)}"`).join(',')
  const text = body(str(base64), `,${thousands}`)
  t.same(await streamed(cut(text, [65536])), reference(text), 'a field too large after thousands of others')
  t.match(reference(text), { code: 'FUSION_FIELD_TOO_LARGE', message: /`f4000`/ })
  const small = body(str(base64), `,${Array.from({ length: 5000 }, (_, index) => `"f${index}":1`).join(',')}`)
  t.same(await streamed(cut(small, [65536])), reference(small), 'thousands of small unknown fields')
})

t.test('a number\'s value is Number()\'s, without keeping its text', async (t) => {
  const texts = ['0', '-0', '1', '-1', '100307', '1e2', '1E+2', '1e-2', '0.5', '-0.000123e-7', '123456789012345678901234567890',
    '9007199254740993', '1.7976931348623157e308', '1.7976931348623159e308', '5e-324', '2e-324', '1e400', '-1e400',
    `1${'0'.repeat(1000)}`, `0.${'0'.repeat(1000)}1e1001`, `100307.${'0'.repeat(5000)}`, `100307.${'0'.repeat(5000)}1`,
    `1.${'0'.repeat(900)}1`, `9007199254740992.${'0'.repeat(900)}1`, '1e999999999999', '1e-999999999999', `1e${'0'.repeat(100)}5`]
  for (let round = 0; round < 2000; round++) {
    const digits = (count: number): string => Array.from({ length: count }, () => Math.floor(Math.random() * 10)).join('')
    const integer = String(Math.floor(Math.random() * 10)) + (Math.random() < 0.5 ? '' : digits(Math.floor(Math.random() * 30)))
    const clean = integer.length > 1 ? integer.replace(/^0+(?=\d)/, '1') : integer
    texts.push(`${Math.random() < 0.3 ? '-' : ''}${clean}${Math.random() < 0.5 ? `.${digits(1 + Math.floor(Math.random() * 30))}` : ''}` +
      `${Math.random() < 0.3 ? `e${Math.random() < 0.5 ? '-' : ''}${digits(1 + Math.floor(Math.random() * 3))}` : ''}`)
  }
  for (const text of texts) {
    const number = new NumberText()
    for (let at = 0; at < text.length; at += 3) number.add(text.slice(at, at + 3))
    if (!Object.is(number.value(), Number(text))) t.fail(`${text.slice(0, 60)}: ${number.value()}, not ${Number(text)}`)
  }
  t.pass(`${texts.length} numbers`)
})

t.test('the body limit: a declared length over it is refused unread, a body growing over it as it crosses', async (t) => {
  const options = { bodyLimit: 1000, maxImageBytes: MAX, buffers }
  const unread = new PassThrough()
  await t.rejects(readJsonBody(unread, { ...options, contentLength: '1001' }), { code: 'FUSION_BODY_TOO_LARGE', statusCode: 413 })
  t.equal(unread.readableFlowing, null, 'not a byte read')
  const growing = new PassThrough()
  const reading = readJsonBody(growing, { ...options, contentLength: undefined })
  growing.write(`{"image":"${'A'.repeat(990)}`)
  growing.write('AAAAAAAAAAAAAAAA')
  await t.rejects(reading, { code: 'FUSION_BODY_TOO_LARGE', message: /the photo may be at most .* MiB/ }, 'streamed, no Content-Length')
  t.equal(buffers.lent, 0, 'its photo buffer given back at once')
  await t.rejects(readJsonBody(Readable.from([Buffer.from('{}')]), { ...options, contentLength: '3' }),
    { code: 'FUSION_MALFORMED_BODY', message: 'The request body is not as long as its Content-Length says.' }, 'a body shorter than its Content-Length')
  const broken = new PassThrough()
  const brokenReading = readJsonBody(broken, { ...options, contentLength: undefined })
  broken.write('{"image":"AAAA')
  broken.write('x'.repeat(2000))
  await t.rejects(brokenReading, { code: 'FUSION_BODY_TOO_LARGE' }, 'broken JSON that grows over the limit: the size is the answer, as before')
})

t.test('the body stream\'s errors pass through; a client gone gives the photo buffer back', async (t) => {
  const options = { contentLength: undefined, bodyLimit: 1 << 20, maxImageBytes: MAX, buffers }
  const cutOff = new PassThrough()
  const reading = readJsonBody(cutOff, options)
  cutOff.write(`{"image":"${base64.slice(0, 500)}`)
  cutOff.destroy(fusionError('FUSION_UPLOAD_TOO_SLOW'))
  await t.rejects(reading, { code: 'FUSION_UPLOAD_TOO_SLOW', statusCode: 408 })
  const reset = new PassThrough()
  const resetReading = readJsonBody(reset, options)
  reset.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }))
  await t.rejects(resetReading, { message: 'aborted', statusCode: 400 }, 'an error without a client status is a 400, as Fastify made it')
  const gone = new AbortController()
  const stalled = new PassThrough()
  const stalledReading = readJsonBody(stalled, { ...options, signal: gone.signal })
  stalled.write(`{"image":"${base64.slice(0, 500)}`)
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(buffers.lent, 1, 'a photo buffer is taken as the image starts')
  gone.abort()
  await t.rejects(stalledReading, { code: 'FUSION_CLIENT_CLOSED_REQUEST' })
  t.equal(buffers.lent, 0, 'and given back when the client goes')
})

t.test('the photo lands in one pooled buffer sized from Content-Length; discard gives it back unless claimed', async (t) => {
  const pool = createUploadBuffers({ maxFree: 4, trimIntervalMs: 60_000 })
  t.teardown(() => { pool.close() })
  const large = randomBytes(3 * 1024 * 1024 + 17)
  const text = body(str(large.toString('base64').replace(/.{76}/g, '$&\n')))
  const read = await readJsonBody(Readable.from(cut(text, [16_384])), {
    contentLength: String(Buffer.byteLength(text)), bodyLimit: 8 << 20, maxImageBytes: 8 << 20, buffers: pool
  })
  t.equal(pool.allocations, 1, 'one buffer')
  t.equal(pool.lent, 1)
  read.discard()
  t.equal(pool.lent, 0, 'discarded unread: given back')
  t.throws(() => readJsonInput(read, 8 << 20), { code: 'FUSION_CLIENT_CLOSED_REQUEST' }, 'and no longer readable')

  const again = await readJsonBody(Readable.from(cut(text, [16_384])), {
    contentLength: String(Buffer.byteLength(text)), bodyLimit: 8 << 20, maxImageBytes: 8 << 20, buffers: pool
  })
  t.equal(pool.allocations, 1, 'the same buffer, reused')
  const { input, release } = readJsonInput(again, 8 << 20)
  t.ok(input.photo.equals(large), 'the photo, byte for byte')
  t.ok(input.photo.buffer.byteLength <= 4 * 1024 * 1024, `in a buffer of ${input.photo.buffer.byteLength} bytes: 4 MiB, not the body's size`)
  again.discard()
  t.equal(pool.lent, 1, 'claimed: discard leaves it to the claimer')
  release()
  t.equal(pool.lent, 0)
})
