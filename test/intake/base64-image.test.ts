import { randomBytes } from 'node:crypto'
import t from 'tap'
import { Base64Decoder, decodeBase64 } from '../../src/intake/base64-image.js'

/** The base64 of a JSON `image`, decoded piece by piece, against the rules of the whole-string check it replaced. */

// The function src/intake/fusion-input.ts had: copies of the whole string, then one decode.
function legacy (value: string, maxBytes: number): string {
  const compact = value.replace(/^data:[a-z0-9.+/-]*(;[a-z0-9=.+-]*)*;base64,/i, '').replace(/\s+/g, '')
  if (compact === '') return 'FUSION_EMPTY_IMAGE'
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(compact) || compact.length % 4 === 1) return 'FUSION_INVALID_BASE64'
  if (Math.floor(compact.length * 3 / 4) > maxBytes + 2) return 'FUSION_FILE_TOO_LARGE'
  const bytes = Buffer.from(compact.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
  return bytes.length > maxBytes ? 'FUSION_FILE_TOO_LARGE' : bytes.toString('hex')
}

function whole (value: string, maxBytes: number): string {
  const decoded = decodeBase64(value, maxBytes)
  return 'refusal' in decoded ? decoded.refusal : decoded.bytes.toString('hex')
}

/** `value` fed in pieces of the given sizes, round and round; flushed after each, as a body's chunks are. */
function inPieces (value: string, sizes: number[], maxBytes: number, flush = true): string {
  const output = Buffer.alloc(maxBytes + 8)
  const decoder = new Base64Decoder(output, maxBytes)
  for (let at = 0, index = 0; at < value.length; index++) {
    const size = sizes[index % sizes.length]!
    decoder.write(value.slice(at, at + size))
    if (flush) decoder.flush()
    at += size
  }
  const refusal = decoder.end()
  return refusal ?? output.subarray(0, decoder.length).toString('hex')
}

t.test('random strings of base64, prefixes, padding, whitespace and strays: the same bytes or the same refusal', async (t) => {
  const alphabet = 'AQgw+/-_=  \n\r\t\u00a0!:;,.dataDATAbase64é'
  let cases = 0
  for (let round = 0; round < 20_000; round++) {
    const length = Math.floor(Math.random() * 14)
    let value = Array.from({ length }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join('')
    if (round % 3 === 0) value = `data:image/png;base64,${value}`
    if (round % 7 === 0) value = value.replace(/[^A-Za-z0-9+/]/g, '')
    const maxBytes = Math.floor(Math.random() * 8)
    const expected = legacy(value, maxBytes)
    const pieces = [inPieces(value, [1], maxBytes), inPieces(value, [2, 3], maxBytes), inPieces(value, [2, 3], maxBytes, false)]
    for (const got of [whole(value, maxBytes), ...pieces]) {
      if (got !== expected) t.fail(`${JSON.stringify(value)} within ${maxBytes}: ${got}, was ${expected}`)
    }
    cases++
  }
  t.pass(`${cases} strings decoded or refused as before, whole and in pieces`)
})

t.test('real photos\' base64 in every common dress, in pieces that end inside quartets', async (t) => {
  let cases = 0
  for (let size = 0; size < 300; size++) {
    const value = randomBytes(size).toString('base64')
    const dresses = [value, value.replace(/=+$/, ''), value.replace(/(.{3})/g, '$1\n'), `data:;base64,${value}`,
      value.replace(/\+/g, '-').replace(/\//g, '_'), `DATA:image/jpeg;q=1;BASE64,${value.replace(/.{76}/g, '$&\r\n')}`]
    for (const dressed of dresses) {
      const expected = legacy(dressed, 250)
      for (const got of [whole(dressed, 250), inPieces(dressed, [5, 1, 7], 250)]) {
        if (got !== expected) t.fail(`${size} bytes: ${dressed.slice(0, 40)}: ${got.slice(0, 40)}, was ${expected.slice(0, 40)}`)
      }
      cases++
    }
  }
  // Larger than a piece the decoder gathers (64 Ki characters), cut anywhere.
  const large = randomBytes(200_000)
  t.equal(inPieces(large.toString('base64'), [65_537, 3, 1_000], 300_000), large.toString('hex'))
  t.equal(inPieces(large.toString('base64'), [65_537, 3, 1_000], 300_000, false), large.toString('hex'), 'gathered, not flushed')
  t.equal(inPieces(large.toString('base64'), [4096], 199_999), 'FUSION_FILE_TOO_LARGE')
  t.equal(inPieces(`${large.toString('base64')}!`, [4096], 100), 'FUSION_INVALID_BASE64', 'invalid is told before too large')
  t.pass(`${cases} photos`)
})

t.test('a data: prefix of any length is read without being kept', async (t) => {
  const prefix = `data:image/${'x'.repeat(1_000_000)};base64,`
  t.equal(inPieces(`${prefix}QUJD`, [4096], 10), Buffer.from('ABC').toString('hex'))
  t.equal(legacy(`${prefix}QUJD`, 10), Buffer.from('ABC').toString('hex'), 'as the whole-string rule had it')
})
