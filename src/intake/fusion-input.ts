import { Type, type Static } from '@sinclair/typebox'
import { Ajv } from 'ajv'
import type { FastifyRequest } from 'fastify'
import type { MultipartFile } from '@fastify/multipart'
import { fusionError } from '../errors.js'
import { excerpt } from '../excerpt.js'
import { assertAcceptedFormat } from '../images/normalize.js'
import { SNIFF_BYTES } from '../images/sniff.js'
import type { UploadBuffer, UploadBuffers } from '../images/upload-buffers.js'
import type { FusionInput } from '../fusion/fusion.js'
import { FIELDS, fieldRefusal, fieldSizeRefusal, fieldTooLarge } from '../fusion/fields.js'
import type { FusionOptions } from '../upstream/provider.js'
import { decodeBase64 } from './base64-image.js'
import { base64Refusal, fileTooLarge } from './upload-limit.js'
import { DecodedImage, JsonBody } from './json-body.js'

/**
 * What a client sends to POST /fuse, in either body type, reduced to one
 * validated shape. Both parsers check the fields defined in fusion/fields.ts,
 * so a bad field gets the same code whether it came in a form or in JSON.
 */
export const FusionFieldsSchema = Type.Object(FIELDS, { additionalProperties: false })

type FusionFields = Static<typeof FusionFieldsSchema>

/** A request's fusion input, and how to give the photo's buffer back. */
export interface ReadInput {
  input: FusionInput
  /** Gives the photo's buffer back for the next upload, once nothing reads it any more; only the first call counts. */
  release: () => void
}

const ajv = new Ajv({ allErrors: false, strict: true })
const validateFields = ajv.compile<FusionFields>(FusionFieldsSchema)

function checkFields (fields: Record<string, unknown>): FusionFields {
  if (validateFields(fields)) return fields
  throw fieldRefusal(validateFields.errors?.[0])
}

/**
 * Empty values count as absent: HTML forms send every input, filled or not.
 * Form fields are text, so the options' numbers and switches are read from
 * their usual spellings; anything else is left for the schema to refuse.
 */
function withoutEmpty (fields: Record<string, unknown>): Record<string, unknown> {
  const present = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== '' && value !== undefined && value !== null))
  for (const name of ['fuse_profile_degree', 'fuse_face_degree']) {
    if (typeof present[name] === 'string' && /^\d{1,3}$/.test(present[name])) present[name] = Number(present[name])
  }
  const logo = present.logo_add
  if (logo === '1' || logo === 'true' || logo === 1) present.logo_add = true
  if (logo === '0' || logo === 'false' || logo === 0) present.logo_add = false
  return present
}

function toInput (fields: FusionFields, photo: Buffer, release: () => void = () => {}): ReadInput {
  const options: FusionOptions = {}
  if (fields.fuse_profile_degree !== undefined) options.profileDegree = fields.fuse_profile_degree
  if (fields.fuse_face_degree !== undefined) options.faceDegree = fields.fuse_face_degree
  if (fields.logo_add !== undefined) options.logoAdd = fields.logo_add
  if (fields.template_face_id !== undefined) options.templateFaceId = fields.template_face_id
  return {
    input: { projectId: fields.project_id, modelId: fields.model_id, resultType: fields.rsp_img_type ?? 'url', options, photo },
    release
  }
}

/** RFC 2046: a boundary is 1 to 70 characters. (busboy accepts up to about 250, where its search needle ends.) */
const MAX_BOUNDARY_LENGTH = 70
const MULTIPART_FORM = /^\s*multipart\/form-data\s*(;|$)/i
// One `; name=value` parameter of a media type, the value a token or a quoted string (RFC 9110 section 5.6.6).
const PARAMETER = /\s*;\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]*)\s*/y

/**
 * Refuses a form whose Content-Type has no boundary, or one longer than RFC 2046 allows (400 FUSION_MALFORMED_BODY),
 * from the header alone: before a place is taken or a byte of the body is read. Other media types pass.
 */
export function checkMultipartBoundary (contentType: string | undefined): void {
  if (contentType === undefined || !MULTIPART_FORM.test(contentType)) return
  const boundary = parameterOf(contentType, 'boundary')
  if (boundary === undefined || boundary === '') {
    throw fusionError('FUSION_MALFORMED_BODY', {
      message: 'The multipart Content-Type has no boundary parameter: let the client set that header (curl -F and FormData do), ' +
        'rather than setting Content-Type by hand.'
    })
  }
  if (boundary.length > MAX_BOUNDARY_LENGTH) {
    throw fusionError('FUSION_MALFORMED_BODY', {
      message: `The multipart boundary is ${boundary.length} characters long: at most ${MAX_BOUNDARY_LENGTH} are allowed (RFC 2046).`
    })
  }
}

/** The first parameter `name` of a media type, unquoted; as busboy reads it, the first of two wins. */
function parameterOf (mediaType: string, name: string): string | undefined {
  PARAMETER.lastIndex = mediaType.indexOf(';')
  if (PARAMETER.lastIndex < 0) return undefined
  for (let match = PARAMETER.exec(mediaType); match !== null; match = PARAMETER.exec(mediaType)) {
    const [, key = '', value = ''] = match
    if (key.toLowerCase() === name) return value.startsWith('"') ? value.slice(1, -1).replace(/\\(.)/g, '$1') : value
  }
  return undefined
}

/**
 * Reads a fusion's body, a form or JSON: the fields, checked, and the upload's bytes. `cutOff` aborts when the upload
 * is cut off (too slow, or past the deadline: src/intake/upload-watch.ts); a form's reading then fails with its reason. (A
 * JSON body was read before the handler, by the route's JSON parser (src/intake/json-body.ts), from a stream that fails
 * alike.)
 */
export async function readFusionInput (
  request: FastifyRequest, maxImageBytes: number, buffers: UploadBuffers, cutOff?: AbortSignal
): Promise<ReadInput> {
  if (request.isMultipart()) return await readMultipartInput(request, maxImageBytes, buffers, cutOff)
  if (/^application\/json\b/i.test(request.headers['content-type'] ?? '')) {
    const body = request.body
    // The photo is the input's now (or given back, if refused): nothing else reaches it through the request.
    request.body = null
    return readJsonInput(body, maxImageBytes)
  }
  // Fastify parses text/plain by default; this route takes only forms and JSON.
  throw fusionError('FUSION_UNSUPPORTED_MEDIA_TYPE')
}

/**
 * Reads a multipart form: the `image` file and the text fields, in any order.
 * Each part is consumed as it arrives (the multipart limits fire only while a
 * stream is read), and nothing is left unread that could stall the parser.
 * The photo's bytes land in a buffer from `buffers`; the caller releases it (`releaseImage`).
 */
export async function readMultipartInput (
  request: FastifyRequest, maxImageBytes: number, buffers: UploadBuffers, cutOff?: AbortSignal
): Promise<ReadInput> {
  const declared = Number(request.headers['content-length'])
  const capacity = Number.isSafeInteger(declared) && declared > 0 ? Math.min(declared, maxImageBytes) : 0
  const fields: Record<string, string> = {}
  let photo: UploadBuffer | undefined
  // Cut off: the parser is fed nothing more, and whatever waits for it below fails with the reason.
  const stopReading = (): void => { request.raw.unpipe() }
  cutOff?.addEventListener('abort', stopReading, { once: true })
  try {
    if (cutOff?.aborted === true) throw cutOff.reason
    const parts = request.parts()[Symbol.asyncIterator]()
    for (;;) {
      const next = await unlessCutOff(parts.next(), cutOff)
      if (next.done === true) break
      const part = next.value
      // busboy passes on a part without a name (as undefined), and never applies its name limit to forms.
      const name: unknown = part.fieldname
      if (typeof name !== 'string' || name === '') {
        if (part.type === 'file') part.file.resume()
        throw fusionError('FUSION_MALFORMED_BODY', { message: 'A form part has no name: send the photo as `image`.' })
      }
      const tooLarge = fieldSizeRefusal(name)
      if (tooLarge !== undefined) {
        if (part.type === 'file') part.file.resume()
        throw tooLarge
      }
      if (part.type === 'file') {
        if (name !== 'image') {
          part.file.resume()
          // Not a second photo but a misnamed one (curl -F file=@photo.jpg): say which name is expected.
          throw fusionError('FUSION_UNKNOWN_FIELD', {
            message: `Unknown file field \`${excerpt(name)}\`: the photo goes in the field \`image\` (curl: -F image=@photo.jpg).`
          })
        }
        photo = await readPhoto(part, capacity, maxImageBytes, buffers, cutOff)
        continue
      }
      if (part.valueTruncated) throw fieldTooLarge(name, 'value')
      if (name === 'image') {
        throw fusionError('FUSION_INVALID_FIELD', { message: 'The field `image` must be a file part (curl: -F image=@photo.jpg).' })
      }
      if (Object.hasOwn(fields, name)) {
        throw fusionError('FUSION_DUPLICATE_FIELD', { message: `The field \`${excerpt(name)}\` was sent more than once.` })
      }
      fields[name] = String(part.value)
    }
    const checked = checkFields(withoutEmpty(fields))
    if (photo === undefined) throw fusionError('FUSION_MISSING_IMAGE')
    return toInput(checked, photo.bytes, photo.release)
  } catch (error) {
    // Refused after the photo was read: nothing reads its buffer any more.
    photo?.release()
    throw parserError(error)
  } finally {
    cutOff?.removeEventListener('abort', stopReading)
  }
}

/** `promise`, or a rejection with `cutOff`'s reason as soon as it aborts (the parser, fed nothing more, would never settle it). */
async function unlessCutOff<T> (promise: Promise<T>, cutOff: AbortSignal | undefined): Promise<T> {
  if (cutOff === undefined) return await promise
  return await new Promise<T>((resolve, reject) => {
    const onCutOff = (): void => { reject(cutOff.reason) }
    if (cutOff.aborted) onCutOff()
    else cutOff.addEventListener('abort', onCutOff, { once: true })
    promise.then(resolve, reject).finally(() => { cutOff.removeEventListener('abort', onCutOff) })
  })
}

/**
 * busboy names its framing errors only in words ("Malformed part header",
 * "Unexpected end of form", "Boundary not found"): what the parser throws with
 * no code of its own is a body it could not parse. @fastify/multipart's limits
 * and a socket's failures carry codes, and keep them.
 */
function parserError (error: unknown): unknown {
  if (error instanceof Error && (error as { code?: unknown }).code === undefined) {
    // busboy's "Unexpected end of multipart data" (or "Part terminated early …"): the closing boundary never came.
    const message = /unexpected end of multipart data/i.test(error.message)
      ? 'The form ended before its closing boundary: the body was cut short, or does not use the boundary its Content-Type ' +
        'names (curl -F and FormData set that header themselves; do not set Content-Type by hand).'
      : 'The form could not be parsed as multipart/form-data.'
    return fusionError('FUSION_MALFORMED_BODY', { message, cause: error })
  }
  return error
}

/**
 * Reads the photo part. Its first bytes decide the format, so a PDF or a HEIC
 * is refused before the rest of it is read; the size limit is enforced by the
 * parser while the stream flows. The bytes are copied once, into a reusable
 * buffer at least as large as Content-Length (an upper bound, capped by the
 * upload limit), so the photo is never held twice. On success the caller owns
 * the buffer's release; on failure it is released here, once.
 */
async function readPhoto (
  part: MultipartFile, capacity: number, maxImageBytes: number, buffers: UploadBuffers, cutOff?: AbortSignal
): Promise<UploadBuffer> {
  const file = part.file
  return await new Promise<UploadBuffer>((resolve, reject) => {
    const loan: UploadBuffer | undefined = capacity > 0 ? buffers.take(capacity) : undefined
    const chunks: Buffer[] = []
    let size = 0
    let sniffed = false
    let settled = false
    const settle = (): boolean => {
      if (settled) return false
      settled = true
      file.removeListener('data', onData)
      cutOff?.removeEventListener('abort', onCutOff)
      return true
    }
    const fail = (error: Error): void => {
      if (!settle()) return
      // Stops busboy feeding this part; the error handler then closes the connection.
      file.destroy()
      // Nothing else has seen this buffer.
      loan?.release()
      reject(error)
    }
    const onData = (chunk: Buffer): void => {
      if (loan === undefined) {
        // A chunked upload: no Content-Length to size a buffer by.
        chunks.push(chunk)
      } else if (size + chunk.length <= loan.bytes.length) {
        chunk.copy(loan.bytes, size)
      } else {
        // More photo than the body's declared length (Node enforces it, so never expected).
        return fail(fileTooLarge(maxImageBytes))
      }
      size += chunk.length
      if (!sniffed && size >= SNIFF_BYTES) {
        sniffed = true
        try {
          assertAcceptedFormat(loan !== undefined ? loan.bytes.subarray(0, size) : Buffer.concat(chunks, size))
        } catch (error) {
          fail(error as Error)
        }
      }
    }
    const onCutOff = (): void => { fail(cutOff!.reason as Error) }
    if (cutOff?.aborted === true) return onCutOff()
    cutOff?.addEventListener('abort', onCutOff, { once: true })
    file.on('data', onData)
    // busboy stops passing data at the limit but ends the stream only when the
    // part ends; failing here answers at once and leaves the rest unread.
    file.once('limit', () => { fail(fileTooLarge(maxImageBytes)) })
    // Every error, however late, lands here and is ignored once settled.
    file.on('error', fail)
    file.once('end', () => {
      if (file.truncated) return fail(fileTooLarge(maxImageBytes))
      if (!settle()) return
      if (loan === undefined) return resolve({ bytes: Buffer.concat(chunks, size), release: () => {} })
      // Only the photo's own bytes are handed on: past them the buffer may still hold an earlier upload.
      resolve({ bytes: loan.bytes.subarray(0, size), release: loan.release })
    })
  })
}

/**
 * Checks a JSON body `{ project_id, model_id, image, rsp_img_type, ... }` where `image` is base64, optionally behind a
 * `data:image/...;base64,` prefix: the route's body as read by `readJsonBody` (its photo already decoded into an upload
 * buffer, which this takes over: released here if refused, else by the input's `release`), or a value parsed whole.
 * Fields are judged before the photo, whichever came first in the body.
 */
export function readJsonInput (body: unknown, maxImageBytes: number): ReadInput {
  if (!(body instanceof JsonBody)) return checkJson(body, maxImageBytes, () => {})
  const { members, release } = body.claim()
  try {
    return checkJson(members, maxImageBytes, release)
  } catch (error) {
    // Refused: nothing reads the photo's buffer any more.
    release()
    throw error
  }
}

function checkJson (body: unknown, maxImageBytes: number, release: () => void): ReadInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw fusionError('FUSION_MALFORMED_BODY', { message: 'The JSON body must be an object.' })
  }
  const { image, ...rest } = body as Record<string, unknown>
  // The same bounds as a form's fields, before anything is checked or named in a refusal.
  for (const [name, value] of Object.entries(rest)) {
    const tooLarge = fieldSizeRefusal(name, value)
    if (tooLarge !== undefined) throw tooLarge
  }
  // Server-side callers often hold numeric activity ids; they mean the same string.
  for (const name of ['project_id', 'model_id']) {
    if (typeof rest[name] === 'number' && Number.isSafeInteger(rest[name])) rest[name] = String(rest[name])
  }
  const checked = checkFields(withoutEmpty(rest))
  if (image === undefined || image === null) throw fusionError('FUSION_MISSING_IMAGE')
  if (image instanceof DecodedImage) {
    if (image.refusal !== undefined) throw base64Refusal(image.refusal, maxImageBytes)
    return toInput(checked, image.bytes, release)
  }
  if (typeof image !== 'string') throw fusionError('FUSION_INVALID_FIELD', { message: 'The field `image` must be a base64 string.' })
  return toInput(checked, decodeBase64Image(image, maxImageBytes))
}

/** A whole base64 string (see src/intake/base64-image.ts for the rules), decoded into a buffer of its own. */
export function decodeBase64Image (value: string, maxBytes: number): Buffer {
  const decoded = decodeBase64(value, maxBytes)
  if ('refusal' in decoded) throw base64Refusal(decoded.refusal, maxBytes)
  return decoded.bytes
}
