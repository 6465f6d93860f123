import { createHash } from 'node:crypto'
import { normalizeIP } from '@fastify/rate-limit'
import fp from 'fastify-plugin'
import type { ConfigSlice } from '../config/load.js'
import { fusionError } from '../errors.js'

/**
 * Who is asking, resolved once per request: a known API key (`x-api-key`, one
 * of CLIENT_API_KEYS), else the address as resolved through TRUST_PROXY (IPv6
 * clients per /64, as @fastify/rate-limit buckets them). Rate limits,
 * idempotency scopes and anything else per client read `request.client`.
 */
export const API_KEY_HEADER = 'x-api-key'

export interface ClientIdentity {
  /** The known API key the client presented; undefined for an anonymous client. Never logged. */
  apiKey: string | undefined
  /** A key the client presented that is not known: refused with 401 on client routes. */
  unknownApiKey: boolean
  /** Stable and safe to store: a digest of the API key, or the address. */
  id: string
}

declare module 'fastify' {
  interface FastifyRequest {
    client: ClientIdentity
  }
}

/** The settings this plugin reads. */
export const clientIdentitySettings = ['clientApiKeys'] as const

export default fp<{ config: ConfigSlice<typeof clientIdentitySettings[number]> }>(async (app, { config }) => {
  const known = config.clientApiKeys
  app.decorateRequest('client', null as unknown as ClientIdentity)
  app.addHook('onRequest', async (request) => {
    const header = request.headers[API_KEY_HEADER]
    const presented = typeof header === 'string' && header !== '' ? header : undefined
    const apiKey = presented !== undefined && known.has(presented) ? presented : undefined
    request.client = {
      apiKey,
      unknownApiKey: presented !== undefined && known.size > 0 && apiKey === undefined,
      // The key itself is a secret: only a digest goes to a store.
      id: apiKey !== undefined ? `key:${createHash('sha256').update(apiKey).digest('hex').slice(0, 32)}` : `ip:${normalizeIP(request.ip)}`
    }
  })
  // Client routes (those under client limits) refuse an unknown key after the limit counted it, before the body is read.
  app.addHook('preParsing', async (request, _reply, payload) => {
    if (request.routeOptions.config.rateLimit !== undefined && request.client.unknownApiKey) throw fusionError('FUSION_UNKNOWN_API_KEY')
    return payload
  })
}, { name: 'client-identity' })
