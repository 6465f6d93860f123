/**
 * A JSON body's `image`: base64 (standard or URL-safe alphabet, padding optional, whitespace and line breaks
 * anywhere), optionally behind a `data:image/...;base64,` prefix, decoded piece by piece as it arrives, straight into
 * a buffer, so the photo is never held as a whole string, nor copied to strip or translate it.
 *
 * The rules are those of the whole-string check it replaces, exactly: the prefix is
 * /^data:[a-z0-9.+/-]*(;[a-z0-9=.+-]*)*;base64,/i at the very start; what follows, less whitespace (JavaScript's \s),
 * must be /^[A-Za-z0-9+/_-]+={0,2}$/ and not one character past a multiple of four; empty is its own refusal; then the
 * decoded length must be within the limit. Node's decoder reads both alphabets and, fed whole quartets, gives the same
 * bytes piece by piece as in one call; only validation is ours.
 */

/** Why an `image` string gives no photo: what the intake answers once the other fields have passed. */
export type Base64Refusal = 'FUSION_EMPTY_IMAGE' | 'FUSION_INVALID_BASE64' | 'FUSION_FILE_TOO_LARGE'

const DATA_URL_START = 'data:'
// Written so that V8 tests the class by table (a class of four ranges is matched range by range, eight times slower).
const OUTSIDE_ALPHABET = /[^A-Za-z0-9+/_-]/
const OUTSIDE_ALPHABET_SPACE_OR_PAD = /[^A-Za-z0-9+/_\-\s=]/
const SPACES = /\s+/g
const NOT_PAD = /[^=]/
/** Characters gathered before they are checked and decoded together: a few regular-expression runs per 64 KiB. */
const PIECE_CHARACTERS = 64 * 1024

// The data: prefix's two character classes (case-insensitive): the media type, then each `;` parameter.
const MEDIA_TYPE_CHARACTER = /^[a-z0-9.+/-]$/i
const PARAMETER_CHARACTER = /^[a-z0-9=.+-]$/i

/** The decoded size of `characters` alphabet characters (Node drops a lone sixth bit group, as in one call). */
const decodedSize = (characters: number): number => Math.floor(characters * 3 / 4)

export class Base64Decoder {
  /** Bytes decoded into `output` so far. */
  length = 0
  private stage: 'head' | 'prefix' | 'data' = 'head'
  /** The first characters, while they could still begin `data:`. */
  private head = ''
  private prefixPart: 'type' | 'parameters' = 'type'
  /** The current prefix parameter, lower-cased, cut at 7 characters (enough to tell `base64` from anything else). */
  private parameter = ''
  /** Characters received and not yet checked. */
  private pending = ''
  /** Up to three alphabet characters past the last whole quartet decoded. */
  private carry = ''
  /** `=` seen at the end of the data; only `=` and whitespace may follow. */
  private padding = 0
  /** What the whole-string check called the compact length: alphabet characters and padding. */
  private characters = 0
  private invalid = false
  private tooLarge = false

  /**
   * `output` must hold `maxBytes`, or whatever the characters that can still arrive decode to if that is less
   * (a body's Content-Length bounds it): past `maxBytes` nothing is written, the string is only checked to the end.
   */
  constructor (private readonly output: Buffer, private readonly maxBytes: number) {}

  write (text: string): void {
    if (this.invalid || text === '') return
    if (this.stage === 'head') text = this.readHead(text)
    if (this.stage === 'prefix') text = this.readPrefix(text)
    if (this.stage !== 'data' || text === '' || this.invalid) return
    this.pending += text
    if (this.pending.length >= PIECE_CHARACTERS) this.decode(false)
  }

  /**
   * Decodes the whole quartets received so far, now rather than when a piece is full. Called after each chunk of a
   * body, it leaves no string of the chunk alive while the next one is awaited: strings that outlive a young-generation
   * collection or two are what makes V8 grow its young generation (to 128 MB in Node 24), which a form's photo never
   * does.
   */
  flush (): void {
    if (this.stage === 'data' && !this.invalid && this.pending !== '') this.decode(false)
  }

  /** The string has ended: its refusal, if any. The photo is then `output.subarray(0, length)`. */
  end (): Base64Refusal | undefined {
    if (this.stage === 'head') {
      // Too short to be a prefix: it is data.
      this.stage = 'data'
      this.pending = this.head + this.pending
    }
    // No comma, so no prefix: its colon is no base64.
    if (this.stage === 'prefix') this.invalid = true
    if (!this.invalid) this.decode(true)
    // (An invalid string is never empty: it holds the offending character.)
    if (this.invalid) return 'FUSION_INVALID_BASE64'
    if (this.characters === 0) return 'FUSION_EMPTY_IMAGE'
    if (this.characters === this.padding || this.characters % 4 === 1) return 'FUSION_INVALID_BASE64'
    if (this.tooLarge) return 'FUSION_FILE_TOO_LARGE'
    return undefined
  }

  /** Gathers the first five characters while they spell `data:` in any case; the rest of `text` is returned. */
  private readHead (text: string): string {
    let index = 0
    while (index < text.length && this.head.length < DATA_URL_START.length) {
      this.head += text[index++]
      if (this.head.toLowerCase() !== DATA_URL_START.slice(0, this.head.length)) {
        this.stage = 'data'
        const data = this.head + text.slice(index)
        this.head = ''
        return data
      }
    }
    if (this.head.length === DATA_URL_START.length) this.stage = 'prefix'
    return text.slice(index)
  }

  /**
   * Checks the prefix up to its comma, which ends it (no class holds a comma), character by character and keeping
   * none of it, however long; a prefix that breaks its rules leaves its colon in the data, which no base64 can hold.
   */
  private readPrefix (text: string): string {
    for (let index = 0; index < text.length; index++) {
      const character = text[index]!
      if (character === ',') {
        if (this.prefixPart !== 'parameters' || this.parameter !== 'base64') {
          this.invalid = true
          return ''
        }
        this.stage = 'data'
        return text.slice(index + 1)
      }
      if (character === ';') {
        this.prefixPart = 'parameters'
        this.parameter = ''
        continue
      }
      const allowed = this.prefixPart === 'type' ? MEDIA_TYPE_CHARACTER : PARAMETER_CHARACTER
      if (!allowed.test(character)) {
        this.invalid = true
        return ''
      }
      if (this.prefixPart === 'parameters' && this.parameter.length < 7) this.parameter += character.toLowerCase()
    }
    return ''
  }

  /** Checks the pending characters and decodes every whole quartet among them (at the end, the rest too). */
  private decode (final: boolean): void {
    let text = this.pending
    this.pending = ''
    if (this.padding > 0) {
      // Past the padding, only more padding and whitespace.
      const rest = text.replace(SPACES, '')
      if (NOT_PAD.test(rest) || this.padding + rest.length > 2) {
        this.invalid = true
        return
      }
      this.padding += rest.length
      this.characters += rest.length
      text = ''
    } else if (OUTSIDE_ALPHABET.test(text)) {
      if (OUTSIDE_ALPHABET_SPACE_OR_PAD.test(text)) {
        this.invalid = true
        return
      }
      text = text.replace(SPACES, '')
      const padAt = text.indexOf('=')
      if (padAt >= 0) {
        const pad = text.length - padAt
        if (NOT_PAD.test(text.slice(padAt)) || pad > 2) {
          this.invalid = true
          return
        }
        this.padding = pad
        this.characters += pad
        text = text.slice(0, padAt)
      }
    }
    this.characters += text.length
    const data = this.carry + text
    const whole = final ? data.length : data.length - data.length % 4
    this.carry = data.slice(whole)
    if (whole === 0 || this.tooLarge) return
    const size = decodedSize(whole)
    if (this.length + size > this.maxBytes) {
      // Still checked to the end: invalid base64 is the answer before a size.
      this.tooLarge = true
      return
    }
    if (this.length + size > this.output.length) throw new Error('Base64Decoder: the output buffer is smaller than its data')
    const written = this.output.write(whole === data.length ? data : data.slice(0, whole), this.length, 'base64')
    this.length += written
  }
}

/** A whole base64 string, decoded into a buffer of its own (for a value already in memory). */
export function decodeBase64 (value: string, maxBytes: number): { bytes: Buffer } | { refusal: Base64Refusal } {
  const output = Buffer.allocUnsafe(Math.min(maxBytes, decodedSize(value.length) + 3))
  const decoder = new Base64Decoder(output, maxBytes)
  decoder.write(value)
  const refusal = decoder.end()
  return refusal !== undefined ? { refusal } : { bytes: output.subarray(0, decoder.length) }
}
