import t from 'tap'
import { request } from 'undici'
import { fixture, multipart, runOnFreePort, type Part } from '../helper.js'

/**
 * A bounded, seeded fuzz run against the real server process: valid photos and
 * forms, damaged in ways clients and attackers damage them. Every answer must
 * be a well-formed 4xx or a 200, nothing may hang, and the process must stay up.
 * FUZZ_SEED and FUZZ_CASES change the run; the seed is printed.
 */
const seed = Number(process.env.FUZZ_SEED ?? 20261125)
const cases = Number(process.env.FUZZ_CASES ?? 160)

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function prng (state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0
    let x = Math.imul(state ^ (state >>> 15), 1 | state)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}
const random = prng(seed)
const int = (max: number): number => Math.floor(random() * max)
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!

const bases = ['orientation-1.jpg', 'face.webp', 'face.avif', 'grayscale.jpg', 'tiny.png', 'progressive.jpg'].map((name) => fixture(name))
const magics = [Buffer.from('GIF89a'), Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), Buffer.from([0xff, 0xd8, 0xff]), Buffer.from('RIFF\0\0\0\0WEBP'), Buffer.from('%PDF-'), Buffer.from('<svg ')]

const imageMutations: Record<string, (image: Buffer) => Buffer> = {
  bitFlips: (image) => {
    const copy = Buffer.from(image)
    for (let i = 1 + int(40); i > 0; i--) { const at = int(copy.length); copy[at] = copy[at]! ^ (1 << int(8)) }
    return copy
  },
  headerFlips: (image) => {
    const copy = Buffer.from(image)
    for (let i = 1 + int(8); i > 0; i--) { const at = int(Math.min(copy.length, 600)); copy[at] = int(256) }
    return copy
  },
  truncation: (image) => image.subarray(0, int(image.length)),
  headerLie: (image) => Buffer.concat([pick(magics), image.subarray(pick(magics).length)]),
  zeroedRange: (image) => {
    const copy = Buffer.from(image)
    const start = int(copy.length)
    copy.fill(0, start, Math.min(copy.length, start + 1 + int(4096)))
    return copy
  },
  garbage: () => Buffer.from(Array.from({ length: int(5000) }, () => int(256)))
}

function formFor (image: Buffer): Part[] {
  return [
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: pick(['qc_100307_152854_1', 'qc_100307_152854_2']) },
    { name: 'image', value: image, filename: pick(['me.jpg', 'photo.png', 'x.gif', '', '../../etc/passwd']), contentType: pick(['image/jpeg', 'image/gif', 'application/octet-stream', 'text/plain']) }
  ]
}

const bodyMutations: Record<string, (body: Buffer, boundary: string) => { body: Buffer, contentType: string }> = {
  wrongBoundary: (body) => ({ body, contentType: 'multipart/form-data; boundary=not-the-one' }),
  noClosingBoundary: (body, boundary) => ({ body: body.subarray(0, body.length - boundary.length - 6), contentType: `multipart/form-data; boundary=${boundary}` }),
  damagedFraming: (body, boundary) => {
    const copy = Buffer.from(body)
    for (let i = 1 + int(6); i > 0; i--) {
      const at = copy.indexOf(boundary, int(copy.length))
      if (at >= 0) copy[at + int(boundary.length)] = int(256)
    }
    return { body: copy, contentType: `multipart/form-data; boundary=${boundary}` }
  },
  brokenHeaders: (body, boundary) => ({
    body: Buffer.from(body.toString('latin1').replace(/Content-Disposition: form-data; name="(\w+)"/, pick(['Content-Disposition: form-data', 'Content-Disposition: name="$1"', 'X: y', 'Content-Disposition: form-data; name="$1"; filename*=UTF-8\'\'%ff%fe'])), 'latin1'),
    contentType: `multipart/form-data; boundary=${boundary}`
  }),
  missingCrlf: (body, boundary) => ({ body: Buffer.from(body.toString('latin1').replace('\r\n\r\n', '\r\n'), 'latin1'), contentType: `multipart/form-data; boundary=${boundary}` }),
  truncatedBody: (body, boundary) => ({ body: body.subarray(0, int(body.length)), contentType: `multipart/form-data; boundary=${boundary}` }),
  lyingContentType: (body) => ({ body, contentType: pick(['application/json', 'text/plain', 'image/jpeg', 'multipart/mixed; boundary=x']) })
}

t.test(`fuzzing POST /fuse (seed ${seed}, ${cases} cases)`, async (t) => {
  const { process: server, port } = await runOnFreePort(t, 'src/server.ts', { HOST: '127.0.0.1', LOG_LEVEL: 'warn', RATE_LIMIT_MAX: '1000000' }, /EMULATOR MODE/)
  let exited: number | null | undefined
  void server.exited.then((code) => { exited = code })

  const outcomes: Record<string, number> = {}
  const failures: string[] = []
  const one = async (index: number): Promise<void> => {
    const boundary = `----fuzz${index}`
    let body: Buffer
    let contentType: string
    let name: string
    if (random() < 0.55) {
      const mutation = pick(Object.keys(imageMutations))
      name = `image:${mutation}`
      ;({ body, contentType } = multipart(formFor(imageMutations[mutation]!(pick(bases))), boundary))
    } else {
      const mutation = pick(Object.keys(bodyMutations))
      name = `body:${mutation}`
      const form = multipart(formFor(pick(bases)), boundary)
      ;({ body, contentType } = bodyMutations[mutation]!(form.body, boundary))
    }
    try {
      const response = await request(`http://127.0.0.1:${port}/fuse`, {
        method: 'POST', body, headers: { 'content-type': contentType }, headersTimeout: 20_000, bodyTimeout: 20_000
      })
      const text = await response.body.text()
      const status = response.statusCode
      outcomes[status] = (outcomes[status] ?? 0) + 1
      const answer = JSON.parse(text)
      if (status === 200) {
        if (typeof answer.imageUrl !== 'string') failures.push(`#${index} ${name}: 200 without imageUrl`)
      } else if (status < 400 || status >= 500 || answer.statusCode !== status || !/^FUSION_[A-Z_]+$/.test(answer.code) || typeof answer.message !== 'string') {
        failures.push(`#${index} ${name}: ${status} ${text.slice(0, 200)}`)
      }
    } catch (error) {
      failures.push(`#${index} ${name}: ${(error as Error).message}`)
    }
  }

  // Four at a time: concurrency is part of what may break.
  for (let index = 0; index < cases; index += 4) {
    await Promise.all([0, 1, 2, 3].map(async (offset) => { if (index + offset < cases) await one(index + offset) }))
  }

  t.same(failures, [], 'every answer is a well-formed 4xx or a 200, and none hung')
  t.ok((outcomes[200] ?? 0) > 0 && Object.keys(outcomes).length > 3, `a mix of outcomes: ${JSON.stringify(outcomes)}`)
  t.equal(exited, undefined, 'the process stayed up')
  const health = await request(`http://127.0.0.1:${port}/healthz`)
  t.equal(health.statusCode, 200, 'and still answers')
  await health.body.dump()
  t.notMatch(server.output(), /"level":(50|60)/, 'nothing was logged as an error')
})
