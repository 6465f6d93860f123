import { StringDecoder } from 'node:string_decoder'
import type { Readable } from 'node:stream'
import { none, type Many } from 'stream-chain/defs.js'
import { jsonParser, type Token } from 'stream-json/core/parser.js'
import { fusionError } from '../errors.js'
import { FIELD_NAME_MAX_BYTES, FIELD_VALUE_MAX_BYTES, FIELDS } from '../fusion/fields.js'
import type { UploadBuffer, UploadBuffers } from '../images/upload-buffers.js'
import { Base64Decoder, type Base64Refusal } from './base64-image.js'
import { bodyTooLarge } from './upload-limit.js'

/**
 * A JSON body for POST /fuse, read as it arrives: tokens from stream-json's tokenizer, the `image` string's base64
 * decoded piece by piece into an upload buffer from the same pool as a form's photo (src/images/upload-buffers.ts).
 * Neither the body nor the base64 string is ever held whole, so a JSON photo costs about what a form photo does.
 *
 * What it keeps is what the intake's checks need (src/intake/fusion-input.ts `readJsonInput`), so that a body is
 * answered exactly as when it was parsed whole:
 * - the top-level value is an object or not;
 * - each member in the order JSON.parse gives (the last of duplicate names wins, in the first one's place): strings
 *   cut past 1 KiB + 1 and names past 256 characters (still over their limits, so refused alike), numbers of the
 *   known fields exactly, those of other members as 0, nested objects and arrays as empty ones; unknown members past
 *   the first 32 are left out, but for the first of them over a size limit (the refusal then names it);
 * - `image`: the decoded photo, or why there is none (empty, invalid, too large), told only after the fields are
 *   checked, as before.
 * One refusal is the reader's own: objects and arrays nested more than 64 levels deep (400 FUSION_MALFORMED_BODY, at the
 * first level too many; no field is ever nested, and each level open costs memory until the body ends).
 * Refusals that parsing gave keep their place too: a body over the limit (413 FUSION_BODY_TOO_LARGE, from
 * Content-Length or as bytes arrive), broken JSON or a `__proto__` member or `constructor.prototype` at any depth
 * (Fastify's secure-json-parse: 400 FUSION_MALFORMED_BODY, told once the body has ended, so a larger body or an
 * upload cut off still says so first), and the body stream's own errors (a slow upload cut off: 408).
 */

export interface JsonBodyOptions {
  /** The Content-Length header, as sent. */
  contentLength: string | undefined
  /** Bytes of body allowed; beyond, 413 FUSION_BODY_TOO_LARGE as soon as it is known. */
  bodyLimit: number
  maxImageBytes: number
  buffers: UploadBuffers
  /** Aborted when nobody will read the answer: reading stops, and the photo's buffer goes back. */
  signal?: AbortSignal
}

/** The `image` string of a JSON body, decoded as it arrived: its bytes, or why there are none. */
export class DecodedImage {
  constructor (readonly refusal: Base64Refusal | undefined, readonly bytes: Buffer) {}
}

/**
 * A JSON body read by `readJsonBody`. The photo's buffer goes back with `discard` unless the intake claimed it
 * first; after `claim` it is the claimer's to release.
 */
export class JsonBody {
  #state: 'read' | 'claimed' | 'discarded' = 'read'

  constructor (
    /** undefined: the body is JSON, but not an object. */
    private readonly members: Record<string, unknown> | undefined,
    private readonly loan: UploadBuffer | undefined
  ) {}

  claim (): { members: Record<string, unknown> | undefined, release: () => void } {
    // Discarded: the answer was sent (the client left) before the handler came to the body.
    if (this.#state === 'discarded') throw fusionError('FUSION_CLIENT_CLOSED_REQUEST')
    if (this.#state === 'claimed') throw new Error('JsonBody: claimed twice')
    this.#state = 'claimed'
    const loan = this.loan
    return { members: this.members, release: loan !== undefined ? loan.release : () => {} }
  }

  /** Gives the photo's buffer back if nobody claimed it; safe to call more than once. */
  discard (): void {
    if (this.#state === 'read') this.loan?.release()
    this.#state = 'discarded'
  }
}

/** Reads a JSON body from `payload`; rejects with the refusal parsing gives (see above) or the stream's error. */
export async function readJsonBody (payload: Readable, options: JsonBodyOptions): Promise<JsonBody> {
  // As Fastify's own body reader: a declared length over the limit is refused before a byte is read.
  const declared = Number(options.contentLength)
  if (declared > options.bodyLimit) throw bodyTooLarge(options.maxImageBytes)
  const reader = new JsonBodyReader(options, Number.isSafeInteger(declared) && declared > 0 ? declared : undefined)
  return await new Promise<JsonBody>((resolve, reject) => {
    let received = 0
    let settled = false
    const finish = (error?: unknown): void => {
      if (settled) return
      settled = true
      payload.removeListener('data', onData)
      payload.removeListener('end', onEnd)
      payload.removeListener('error', onError)
      options.signal?.removeEventListener('abort', onAbort)
      try {
        if (error !== undefined) throw error
        resolve(reader.end())
      } catch (failure) {
        reader.release()
        reject(failure)
      }
    }
    const onData = (chunk: Buffer | string): void => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
      received += bytes.length
      if (received > options.bodyLimit) return finish(bodyTooLarge(options.maxImageBytes))
      reader.write(bytes)
    }
    const onEnd = (): void => {
      // (Node frames the body by Content-Length; a transformed stream might not.)
      if (!Number.isNaN(declared) && received !== declared) {
        return finish(fusionError('FUSION_MALFORMED_BODY', { message: 'The request body is not as long as its Content-Length says.' }))
      }
      finish()
    }
    const onError = (error: Error & { statusCode?: unknown }): void => {
      // As Fastify's reader: a stream error without a client status is a 400 (a client gone is logged 499 anyway).
      if (!(typeof error.statusCode === 'number' && error.statusCode >= 400)) error.statusCode = 400
      finish(error)
    }
    const onAbort = (): void => { finish(fusionError('FUSION_CLIENT_CLOSED_REQUEST')) }
    if (options.signal?.aborted === true) return onAbort()
    options.signal?.addEventListener('abort', onAbort, { once: true })
    payload.on('data', onData)
    payload.once('end', onEnd)
    payload.once('error', onError)
  })
}

/** secure-json-parse's words for a `__proto__` or `constructor.prototype` member. */
const FORBIDDEN_PROTOTYPE = 'Object contains forbidden prototype property'

/**
 * Objects and arrays open at once, at most. A fusion's fields are flat, so any nesting is refused by their rules; the
 * limit stops a body of millions of `[` holding a frame for each (here and in the tokenizer) until it ends.
 */
export const MAX_JSON_DEPTH = 64
const TOO_DEEP = 'too deep'

/** Unknown members kept whole; the legitimate ones are 9. */
const MAX_UNKNOWN_MEMBERS = 32
/** Characters kept of a name and of a text value: more than their limits in bytes (a character is at least a byte). */
const NAME_KEEP = 256
const VALUE_KEEP = FIELD_VALUE_MAX_BYTES + 1

type Tokenize = (text: string | typeof none) => Many<Token> | typeof none

/** An open object or array, as secure-json-parse judges it: a `constructor` member that is an object with `prototype`. */
interface Frame {
  object: boolean
  /** The member whose value comes next (objects). */
  key: string
  /** A member named `prototype` was seen. */
  hasPrototype: boolean
  /** The last `constructor` member's value is an object with a `prototype`. */
  poisoned: boolean
}

/** What the member being read is to the intake. */
type Slot = 'image' | 'known' | 'unknown' | 'overflow'

class JsonBodyReader {
  private readonly tokenize = jsonParser({ packValues: false, streamValues: true }) as unknown as Tokenize
  private readonly text = new StringDecoder('utf8')
  private started = false
  /** The body's first two characters past any whitespace, to recognise a form sent as JSON when parsing fails. */
  private head = ''
  private failure: Error | undefined
  private readonly frames: Frame[] = []
  /** 'object' once the top-level value is known to be one; 'other' for any other JSON value. */
  private top: 'object' | 'other' | undefined
  private readonly members: Record<string, unknown> = Object.create(null) as Record<string, unknown>
  private unknownMembers = 0
  private overflowKept = false
  // The key being read (any depth), cut at NAME_KEEP characters.
  private inKey = false
  private key = ''
  // The top-level member whose value is being read.
  private name = ''
  private slot: Slot = 'unknown'
  private string: string | undefined
  private number: NumberText | undefined
  private decoder: Base64Decoder | undefined
  private loan: UploadBuffer | undefined

  constructor (private readonly options: JsonBodyOptions, private readonly declared: number | undefined) {}

  write (bytes: Buffer): void {
    if (this.failure !== undefined) return
    this.read(this.text.write(bytes))
    // Nothing of this chunk kept while the next is awaited (see Base64Decoder.flush).
    this.decoder?.flush()
  }

  /** The body has ended: what was read, or the refusal parsing gave. */
  end (): JsonBody {
    if (this.failure === undefined) this.read(this.text.end())
    this.feed(none)
    if (this.failure !== undefined) throw this.failure
    // A later `image` that is no string leaves nothing for the buffer to hold.
    if (this.loan !== undefined && !(this.members.image instanceof DecodedImage)) this.release()
    return new JsonBody(this.top === 'object' ? this.members : undefined, this.loan)
  }

  /** Gives the photo's buffer back (a refused body). */
  release (): void {
    this.loan?.release()
    this.loan = undefined
  }

  private read (text: string): void {
    if (!this.started && text !== '') {
      this.started = true
      // A byte-order mark is dropped, as secure-json-parse does.
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
    }
    if (this.head.length < 2) this.head = (this.head + (this.head === '' ? text.trimStart() : text).slice(0, 2)).slice(0, 2)
    this.feed(text)
  }

  private feed (text: string | typeof none): void {
    if (this.failure !== undefined || text === '') return
    try {
      const tokens = this.tokenize(text)
      if (tokens !== none) for (const token of tokens.values) this.take(token)
    } catch (error) {
      this.fail(error)
    }
  }

  private fail (cause: unknown): void {
    this.failure = fusionError('FUSION_MALFORMED_BODY', { cause, message: this.failureMessage(cause) })
    // Nothing more is read into it; the answer waits only for the end of the body.
    this.release()
  }

  /** What was wrong, in words a client can act on: each cause its own sentence. */
  private failureMessage (cause: unknown): string {
    if (cause instanceof Error && cause.message === FORBIDDEN_PROTOTYPE) {
      return 'The JSON body has a `__proto__` or `constructor.prototype` member, which is refused.'
    }
    if (cause instanceof Error && cause.message === TOO_DEEP) {
      return `The JSON body nests objects or arrays more than ${MAX_JSON_DEPTH} levels deep: send the fields as one flat object.`
    }
    if (this.head === '') return 'The JSON body is empty.'
    // A form's first boundary line (`--boundary`), sent under a JSON type: curl -H 'Content-Type: application/json' -F ...
    if (this.head === '--') {
      return 'The body is a multipart form, but its Content-Type says application/json: send it as multipart/form-data with its ' +
        'boundary (curl -F and FormData set that header themselves; do not set Content-Type by hand).'
    }
    return 'The request body is not valid JSON.'
  }

  private take (token: Token): void {
    switch (token.name) {
      case 'stringChunk':
        if (this.inKey) {
          if (this.key.length < NAME_KEEP) this.key += token.value.slice(0, NAME_KEEP - this.key.length)
        } else if (this.decoder !== undefined) {
          this.decoder.write(token.value)
        } else if (this.string !== undefined && this.string.length < VALUE_KEEP) {
          this.string += token.value.slice(0, VALUE_KEEP - this.string.length)
        }
        return
      case 'numberChunk':
        this.number?.add(token.value)
        return
      case 'startKey':
        this.inKey = true
        this.key = ''
        return
      case 'endKey':
        this.inKey = false
        return this.keyRead(this.key)
      case 'startObject':
      case 'startArray':
        return this.open(token.name === 'startObject')
      case 'endObject':
      case 'endArray':
        return this.close()
      case 'startString':
        if (this.isMemberValue()) this.startString()
        else this.valueSeen()
        return
      case 'endString':
        if (this.isMemberValue()) this.endString()
        return this.primitiveRead()
      case 'startNumber':
        if (this.isMemberValue()) this.number = this.slot === 'known' ? new NumberText() : undefined
        else this.valueSeen()
        return
      case 'endNumber':
        if (this.isMemberValue()) this.store(this.number?.value() ?? 0)
        this.number = undefined
        return this.primitiveRead()
      case 'nullValue':
      case 'trueValue':
      case 'falseValue':
        if (this.isMemberValue()) this.store(token.value)
        else this.valueSeen()
        return this.primitiveRead()
    }
  }

  /** A value starts directly in the top-level object: a member's. */
  private isMemberValue (): boolean {
    return this.top === 'object' && this.frames.length === 1
  }

  /** A value that is not a member's: the top-level value itself, or one nested in a member. */
  private valueSeen (): void {
    this.top ??= 'other'
  }

  private open (object: boolean): void {
    if (this.frames.length === MAX_JSON_DEPTH) throw new Error(TOO_DEEP)
    if (this.frames.length === 0) this.top ??= object ? 'object' : 'other'
    // A member whose value is an object or array: kept as an empty one (a field's rule refuses it all the same).
    else if (this.isMemberValue()) this.store(object ? {} : [])
    this.frames.push({ object, key: '', hasPrototype: false, poisoned: false })
  }

  private close (): void {
    const frame = this.frames.pop()!
    if (frame.poisoned) throw new Error(FORBIDDEN_PROTOTYPE)
    const parent = this.frames.at(-1)
    if (parent?.object === true && parent.key === 'constructor') parent.poisoned = frame.object && frame.hasPrototype
  }

  private primitiveRead (): void {
    const frame = this.frames.at(-1)
    if (frame?.object === true && frame.key === 'constructor') frame.poisoned = false
  }

  private keyRead (key: string): void {
    // secure-json-parse's rule, at any depth (it refuses any encoding of the name; so does this, as keys come decoded).
    if (key === '__proto__') throw new Error(FORBIDDEN_PROTOTYPE)
    const frame = this.frames.at(-1)!
    frame.key = key
    if (key === 'prototype') frame.hasPrototype = true
    if (this.frames.length !== 1 || this.top !== 'object') return
    this.name = key
    if (key === 'image') {
      this.slot = 'image'
    } else if (Object.hasOwn(FIELDS, key)) {
      this.slot = 'known'
    } else if (Object.hasOwn(this.members, key)) {
      // A duplicate of a member kept: the last value wins.
      this.slot = 'unknown'
    } else if (this.unknownMembers < MAX_UNKNOWN_MEMBERS) {
      this.unknownMembers++
      this.slot = 'unknown'
    } else {
      this.slot = 'overflow'
    }
  }

  private startString (): void {
    if (this.slot !== 'image') {
      this.string = ''
      return
    }
    if (this.loan === undefined) {
      // Enough for the most the body can decode to, within the upload limit.
      const capacity = this.declared !== undefined
        ? Math.min(this.options.maxImageBytes, Math.floor(this.declared * 3 / 4) + 3)
        : this.options.maxImageBytes
      this.loan = this.options.buffers.take(Math.max(capacity, 1))
    }
    this.decoder = new Base64Decoder(this.loan.bytes, this.options.maxImageBytes)
  }

  private endString (): void {
    if (this.decoder !== undefined) {
      const refusal = this.decoder.end()
      this.store(new DecodedImage(refusal, this.loan!.bytes.subarray(0, this.decoder.length)))
      this.decoder = undefined
      return
    }
    this.store(this.string ?? '')
    this.string = undefined
  }

  private store (value: unknown): void {
    if (this.slot === 'overflow') {
      // Past the unknown members kept, only the first over a size limit, for the refusal to name.
      const over = Buffer.byteLength(this.name) > FIELD_NAME_MAX_BYTES ||
        (typeof value === 'string' && Buffer.byteLength(value) > FIELD_VALUE_MAX_BYTES)
      if (!over || this.overflowKept) return
      this.overflowKept = true
    }
    this.members[this.name] = value
  }
}

/**
 * A JSON number's value from its text, exactly as Number() would give it, without keeping the text: at most 800
 * significant digits (correct rounding to a double never needs more than 767), a digit 1 standing for any non-zero
 * digits dropped beyond them, and the decimal exponent. A 10 MB number costs no more than a short one.
 */
export class NumberText {
  private negative = false
  private part: 'integer' | 'fraction' | 'exponent' = 'integer'
  private digits = ''
  private dropped = false
  /** The value is 0.digits × 10^point (× 10^exponent). */
  private point = 0
  private exponentNegative = false
  private exponent = 0

  add (chunk: string): void {
    for (let index = 0; index < chunk.length; index++) {
      const character = chunk[index]!
      if (character === '-') {
        if (this.part === 'exponent') this.exponentNegative = true
        else this.negative = true
      } else if (character === '.') {
        this.part = 'fraction'
      } else if (character === 'e' || character === 'E') {
        this.part = 'exponent'
      } else if (character >= '0' && character <= '9') {
        this.digit(character)
      }
    }
  }

  value (): number {
    // Past 1e9 the exponent is out of any double's range: it only says Infinity or 0.
    const exponent = this.point + (this.exponentNegative ? -this.exponent : this.exponent)
    return Number(`${this.negative ? '-' : ''}0.${this.digits === '' ? '0' : this.digits}${this.dropped ? '1' : ''}e${exponent}`)
  }

  private digit (character: string): void {
    if (this.part === 'exponent') {
      this.exponent = Math.min(this.exponent * 10 + Number(character), 1e9)
      return
    }
    const leadingZero = this.digits === '' && character === '0'
    // JSON's integer part has no leading zeros (a lone 0 adds nothing); each fraction zero before the first digit moves the point.
    if (leadingZero) {
      if (this.part === 'fraction') this.point--
      return
    }
    if (this.part === 'integer') this.point++
    if (this.digits.length < 800) this.digits += character
    else if (character !== '0') this.dropped = true
  }
}
