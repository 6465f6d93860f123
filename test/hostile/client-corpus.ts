/**
 * Hostile clients, made by code rather than kept as files: requests built to abuse the intake (long boundaries,
 * huge field names and values, in forms and in JSON), and slow senders on raw sockets that declare a large body and
 * trickle it. test/hostile/clients.test.ts drives each through the real server.
 */
import { connect, type Socket } from 'node:net'
import { Agent, request } from 'undici'
import { fixture, multipart, type Part } from '../helper.js'

export const PROJECT_ID = '100307'
export const MODEL_ID = 'qc_100307_152854_1'

const ids = (): Part[] => [{ name: 'project_id', value: PROJECT_ID }, { name: 'model_id', value: MODEL_ID }]
const photo = (): Part => ({ name: 'image', value: fixture('face.jpg'), filename: 'me.jpg', contentType: 'image/jpeg' })

/** One request of the corpus, and what the service must answer. */
export interface HostileRequest {
  name: string
  /** Path and query, `/fuse` unless said otherwise. */
  path?: string
  headers: Record<string, string>
  body: Buffer
  status: number
  code: string
}

const form = (parts: Part[], boundary?: string): { headers: Record<string, string>, body: Buffer } => {
  const { body, contentType } = multipart(parts, boundary)
  return { headers: { 'content-type': contentType }, body }
}

const json = (value: Record<string, unknown>): { headers: Record<string, string>, body: Buffer } =>
  ({ headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(value)) })

const jsonFusion = (extra: Record<string, unknown>): Record<string, unknown> =>
  ({ project_id: PROJECT_ID, model_id: MODEL_ID, image: fixture('face.jpg').toString('base64'), ...extra })

/** Characters that must never reach an answer or a log raw: quotes we quote with, a line break, a bidi override. */
export const NASTY = '`\\"\u202e\u0007<script>'

/** A boundary of `length` characters (RFC 2046: at most 70). */
export function boundaryOf (length: number): string {
  return 'b'.repeat(length)
}

export function hostileRequests (): HostileRequest[] {
  const bigName = 'n'.repeat(100_000)
  const bigValue = 'v'.repeat(100_000)
  return [
    // Framing: busboy searches for the boundary and, past about 250 characters, failed with a 500.
    ...[71, 200, 252, 253, 1_000, 8_000].map((length): HostileRequest => ({
      name: `a ${length}-character boundary`,
      ...form([...ids(), photo()], boundaryOf(length)),
      status: 400,
      code: 'FUSION_MALFORMED_BODY'
    })),
    {
      name: 'a quoted boundary over 70 characters',
      headers: { 'content-type': `multipart/form-data; boundary="${boundaryOf(90)}"` },
      body: form([...ids(), photo()], boundaryOf(90)).body,
      status: 400,
      code: 'FUSION_MALFORMED_BODY'
    },
    // Names and values: a form's are bounded as a JSON body's are, and only an excerpt is echoed.
    { name: 'a 100 KB field name in a form', ...form([...ids(), { name: bigName, value: 'x' }, photo()]), status: 413, code: 'FUSION_FIELD_TOO_LARGE' },
    { name: 'a 101-byte field name in a form', ...form([...ids(), { name: 'n'.repeat(101), value: 'x' }, photo()]), status: 413, code: 'FUSION_FIELD_TOO_LARGE' },
    {
      name: 'a 100 KB name on a file part',
      ...form([...ids(), { name: bigName, value: Buffer.from('abc'), filename: 'a.jpg', contentType: 'image/jpeg' }, photo()]),
      status: 413,
      code: 'FUSION_FIELD_TOO_LARGE'
    },
    {
      name: 'the same 100 KB name twice',
      ...form([...ids(), { name: bigName, value: 'a' }, { name: bigName, value: 'b' }, photo()]),
      status: 413,
      code: 'FUSION_FIELD_TOO_LARGE'
    },
    { name: 'a 100 KB field value in a form', ...form([...ids(), { name: 'color', value: bigValue }, photo()]), status: 413, code: 'FUSION_FIELD_TOO_LARGE' },
    { name: 'a 100 KB project_id in a form', ...form([{ name: 'project_id', value: bigValue }, ids()[1]!, photo()]), status: 413, code: 'FUSION_FIELD_TOO_LARGE' },
    { name: 'a 100 KB field name in JSON', ...json(jsonFusion({ [bigName]: 1 })), status: 413, code: 'FUSION_FIELD_TOO_LARGE' },
    { name: 'a 100 KB field value in JSON', ...json(jsonFusion({ color: bigValue })), status: 413, code: 'FUSION_FIELD_TOO_LARGE' },
    { name: 'a 100 KB project_id in JSON', ...json(jsonFusion({ project_id: bigValue })), status: 413, code: 'FUSION_FIELD_TOO_LARGE' },
    // Short but hostile names: echoed, escaped.
    { name: 'an unknown form field with quotes and controls', ...form([...ids(), { name: NASTY, value: 'x' }, photo()]), status: 400, code: 'FUSION_UNKNOWN_FIELD' },
    { name: 'an unknown JSON field with quotes and controls', ...json(jsonFusion({ [NASTY]: 1 })), status: 400, code: 'FUSION_UNKNOWN_FIELD' },
    {
      name: 'a file part with a hostile name',
      ...form([...ids(), { name: NASTY, value: Buffer.from('abc'), filename: 'a.jpg', contentType: 'image/jpeg' }, photo()]),
      status: 400,
      code: 'FUSION_UNKNOWN_FIELD'
    },
    { name: 'a duplicated hostile name', ...form([...ids(), { name: NASTY, value: 'a' }, { name: NASTY, value: 'b' }, photo()]), status: 400, code: 'FUSION_DUPLICATE_FIELD' },
    {
      name: 'a file part without a name',
      headers: { 'content-type': 'multipart/form-data; boundary=nameless' },
      body: Buffer.concat([
        Buffer.from('--nameless\r\nContent-Disposition: form-data; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'),
        fixture('face.jpg'),
        Buffer.from('\r\n--nameless--\r\n')
      ]),
      status: 400,
      code: 'FUSION_MALFORMED_BODY'
    },
    // The URL and headers are the client's too.
    { name: 'an 8 KB unknown path', path: `/${'p'.repeat(8_000)}%60%22%E2%80%AE`, headers: {}, body: Buffer.alloc(0), status: 404, code: 'FUSION_NOT_FOUND' },
    { name: 'a 10 KB content type', headers: { 'content-type': `text/${'z'.repeat(10_000)}` }, body: Buffer.from('x'), status: 415, code: 'FUSION_UNSUPPORTED_MEDIA_TYPE' }
  ]
}

/** A form whose part header carries a 100 KB file name: cut by the parser, never echoed, and the photo still goes through. */
export function hugeFileNameForm (): { headers: Record<string, string>, body: Buffer } {
  return form([...ids(), { ...photo(), filename: `${'f'.repeat(100_000)}.jpg` }])
}

/** A valid form with a boundary of exactly 70 characters, the most RFC 2046 allows. */
export function longestBoundaryForm (): { headers: Record<string, string>, body: Buffer } {
  return form([...ids(), photo()], boundaryOf(70))
}

/** What a raw HTTP client read: the answer, if one came, and when. */
export interface RawAnswer {
  status: number
  headers: Record<string, string>
  body: string
  json: () => any
  /** From the first byte written to the answer's last. */
  elapsedMs: number
}

export interface SlowSender {
  socket: Socket
  /** The answer, or undefined when the connection closed without one (a reset, or stop()). */
  answer: Promise<RawAnswer | undefined>
  closed: Promise<void>
  /** Stops sending and closes the connection. */
  stop: () => void
}

export interface SlowSenderOptions {
  /** The Content-Length announced. */
  declaredBytes?: number
  bytesPerSecond?: number
  /** The loopback address to send from (Linux routes all of 127/8 to lo), so the service sees distinct clients. */
  localAddress?: string
  kind?: 'multipart' | 'json'
  headers?: Record<string, string>
  path?: string
}

/**
 * A client that announces a large upload and sends it a few bytes at a time: the body is a real fusion request
 * (fields, then the photo), so nothing but its pace is wrong.
 */
export function slowSender (serviceUrl: string, options: SlowSenderOptions = {}): SlowSender {
  const { declaredBytes = 5_000_000, bytesPerSecond = 10, localAddress = '127.0.0.1', kind = 'multipart', headers = {}, path = '/fuse' } = options
  const { headers: typeHeaders, body } = kind === 'multipart'
    ? form([...ids(), photo()])
    : json(jsonFusion({}))
  const socket = connect({ port: Number(new URL(serviceUrl).port), host: '127.0.0.1', localAddress })
  socket.setNoDelay(true)
  socket.on('error', () => { /* a reset is judged by the answer it left, or did not */ })
  const startedAt = Date.now()
  const extra = Object.entries({ ...typeHeaders, ...headers }).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}Content-Length: ${declaredBytes}\r\n\r\n`)
  // Ten writes a second (none at 0 bytes a second); the body repeats once it runs out, as it never gets far.
  const perTick = Math.max(1, Math.round(bytesPerSecond / 10))
  let sent = 0
  const ticker = setInterval(() => {
    if (bytesPerSecond === 0 || socket.destroyed || !socket.writable || sent >= declaredBytes) return
    const chunk = Buffer.alloc(Math.min(perTick, declaredBytes - sent))
    for (let index = 0; index < chunk.length; index++) chunk[index] = body[(sent + index) % body.length]!
    sent += chunk.length
    socket.write(chunk)
  }, 100)
  const chunks: Buffer[] = []
  let answeredAt: number | undefined
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    if (answeredAt === undefined && parseAnswer(Buffer.concat(chunks), 0) !== undefined) answeredAt = Date.now()
  })
  const closed = new Promise<void>((resolve) => socket.once('close', () => {
    clearInterval(ticker)
    resolve()
  }))
  const answer = closed.then(() => parseAnswer(Buffer.concat(chunks), (answeredAt ?? Date.now()) - startedAt))
  return {
    socket,
    answer,
    closed,
    stop: () => {
      clearInterval(ticker)
      socket.destroy()
    }
  }
}

/** A complete HTTP/1.1 answer with a Content-Length, or undefined if `bytes` do not hold one yet. */
function parseAnswer (bytes: Buffer, elapsedMs: number): RawAnswer | undefined {
  const end = bytes.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const [statusLine = '', ...lines] = bytes.subarray(0, end).toString('latin1').split('\r\n')
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1])
  const headers = Object.fromEntries(lines.map((line) => {
    const colon = line.indexOf(':')
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]
  }))
  const length = Number(headers['content-length'] ?? 0)
  if (!Number.isInteger(status) || bytes.length < end + 4 + length) return undefined
  const body = bytes.subarray(end + 4, end + 4 + length).toString('utf8')
  return { status, headers, body, json: () => JSON.parse(body), elapsedMs }
}

/**
 * An ordinary client on its own loopback address: a whole fusion form, sent at once, over undici. Close the agent
 * (`close()`) when done.
 */
export function ordinaryClient (serviceUrl: string, localAddress: string, headers: Record<string, string> = {}): {
  fuse: () => Promise<{ status: number, code?: string, elapsedMs: number }>
  close: () => Promise<void>
} {
  const agent = new Agent({ localAddress })
  return {
    async fuse () {
      const { headers: typeHeaders, body } = form([...ids(), photo()])
      const startedAt = Date.now()
      const response = await request(`${serviceUrl}/fuse`, {
        method: 'POST', body, headers: { ...typeHeaders, ...headers }, dispatcher: agent, headersTimeout: 30_000, bodyTimeout: 30_000
      })
      const answer = await response.body.json() as { code?: string }
      return { status: response.statusCode, ...(answer.code !== undefined ? { code: answer.code } : {}), elapsedMs: Date.now() - startedAt }
    },
    close: async () => { await agent.close() }
  }
}
