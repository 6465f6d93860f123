import type { FastifyRequest, FastifyServerOptions } from 'fastify'
import type { DestinationStream } from 'pino'
import { excerpt } from './excerpt.js'

/**
 * Fixed redaction paths. Our own code never logs these values; the paths are
 * the guard for what a library or a future log line might carry (multipart
 * logs its busboy options, headers included, at trace level). Paths are static
 * by design: pino's docs warn never to build them from input.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'req.headers["x-tc-token"]',
  'headers.authorization',
  'headers.cookie',
  'headers["x-api-key"]',
  'headers["x-tc-token"]',
  'busboyOptions.headers.authorization',
  'busboyOptions.headers.cookie',
  'busboyOptions.headers["x-api-key"]',
  'busboyOptions.headers["x-tc-token"]',
  'busboyOptions.headers["idempotency-key"]',
  'err.headers.authorization',
  'err.headers["x-tc-token"]',
  'upstreamRequest.headers.authorization',
  'upstreamRequest.body',
  'credentials.secretKey',
  'credentials.sessionToken',
  'config.upstream.credentials.secretKey',
  'config.upstream.credentials.sessionToken',
  'upstreamRequest.headers["x-tc-token"]',
  'secretKey',
  'sessionToken',
  'img_data',
  'body.image',
  'body.img_data',
  'imageBase64',
  // ioredis puts a failed command's arguments on its errors: the line's keys carry job ids.
  'err.command.args',
  'err.cause.command.args',
  'cause.command.args'
]

export function loggerOptions (level: string, stream?: DestinationStream): FastifyServerOptions['logger'] {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: { req: requestSummary },
    ...(stream ? { stream } : {})
  }
}

/**
 * A job's id is all it takes to read its picture: it never reaches a log line. `text` (a URL, or a message quoting a
 * path) with the segment after each `/fuse/jobs/` replaced, spelled plainly or percent-encoded (the router decodes
 * `/fuse/%6Aobs/…` to the same route). Each escape is read as the byte it names, so no malformed one elsewhere in the
 * text can stop the rest being read.
 */
export function withoutJobIds (text: string): string {
  const decoded = text.replace(/%([0-9A-Fa-f]{2})/g, (_escape, hex: string) => String.fromCharCode(parseInt(hex, 16)))
  return decoded.includes('/fuse/jobs/') ? decoded.replace(/\/fuse\/jobs\/[^/?#\s\x60]+/g, '/fuse/jobs/[job]') : text
}

/**
 * Fastify's own summary of a request for its log lines, with what the client wrote (the URL can be 16 KB, the Host
 * header too) as excerpts.
 */
function requestSummary (request: FastifyRequest): Record<string, unknown> {
  const version: unknown = request.headers?.['accept-version']
  const host: unknown = request.host
  return {
    method: request.method,
    url: typeof request.url === 'string' ? excerpt(withoutJobIds(request.url), 200) : undefined,
    ...(typeof version === 'string' ? { version: excerpt(version, 40) } : {}),
    host: typeof host === 'string' ? excerpt(host, 100) : undefined,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort
  }
}
