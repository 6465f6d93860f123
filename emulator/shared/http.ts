/**
 * Small HTTP pieces both of the emulator's APIs use.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'

/** A request header by its lowercase name, repeated values joined with commas as HTTP folds them. */
export function header (headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value.join(',') : value
}

/** An absolute URL under the plugin's prefix, on the host the client called. */
export function emulatorUrl (app: FastifyInstance, request: FastifyRequest, path: string): string {
  const prefix = app.prefix === '/' ? '' : app.prefix
  return `${request.protocol}://${request.host}${prefix}${path}`
}
