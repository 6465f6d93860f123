import swagger from '@fastify/swagger'
import fp from 'fastify-plugin'
import { ErrorResponse } from '../schemas.js'
import { API_KEY_HEADER } from './client-identity.js'

/** Sent on every answer by src/app.ts. */
const REQUEST_ID_HEADER = {
  'x-request-id': {
    type: 'string',
    description: 'The request\'s id: yours when you sent a valid `x-request-id`, else a new UUID. Also `requestId` in bodies.'
  }
}

/** Sent by @fastify/rate-limit on every answer of a route under client limits, unless its Redis is unreachable. */
const RATE_LIMIT_HEADERS = {
  'x-ratelimit-limit': {
    type: 'integer',
    description: 'Requests allowed to this client per window (RATE_LIMIT_MAX, or RATE_LIMIT_API_KEY_MAX).'
  },
  'x-ratelimit-remaining': { type: 'integer', description: 'Requests left in the current window.' },
  'x-ratelimit-reset': { type: 'integer', description: 'Seconds until the window resets.' }
}

interface DocumentedResponse { headers?: Record<string, unknown> }

/**
 * Declares the headers hooks send, on each response of a documented route. A copy: the route's own schema is what
 * Fastify serialises with, and is left as it is.
 */
function withSharedHeaders (schema: Record<string, unknown>, rateLimited: boolean): Record<string, unknown> {
  const response = schema.response as Record<string, DocumentedResponse> | undefined
  if (response === undefined) return schema
  const shared = { ...REQUEST_ID_HEADER, ...(rateLimited ? RATE_LIMIT_HEADERS : {}) }
  return {
    ...schema,
    response: Object.fromEntries(Object.entries(response).map(([status, entry]) =>
      [status, { ...entry, headers: { ...shared, ...entry.headers } }]))
  }
}

/**
 * The OpenAPI document, built from the routes' schemas and served at
 * GET /openapi.json; docs/openapi.json is the same document, kept current by a test.
 */
export default fp(async (app) => {
  app.addSchema(ErrorResponse)
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'face-fusion-bff',
        version: '0.1.0',
        description: 'A gateway for Tencent Cloud face fusion. Errors share one shape (ErrorResponse); ' +
          'every code is listed there and in docs/errors.md.'
      },
      // Relative: the document describes whichever host serves it.
      servers: [{ url: '/', description: 'The service that serves this document.' }],
      tags: [
        { name: 'fusion', description: 'Fusing photos, directly or through the wait line, and the templates to fuse into.' },
        { name: 'operations', description: 'Probes for orchestrators and gateways: never rate-limited, never shed.' }
      ],
      components: {
        securitySchemes: {
          apiKey: {
            type: 'apiKey',
            in: 'header',
            name: API_KEY_HEADER,
            description: 'Optional: one of CLIENT_API_KEYS gets its own, larger rate limit and keeps its jobs and ' +
              'Idempotency-Keys to itself; an unknown key is refused (401). Without one, the client is its address.'
          }
        }
      },
      // Anonymous or with a key, alike.
      security: [{}, { apiKey: [] }]
    },
    // Shared schemas keep their own names (ErrorResponse) in components.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, index) => typeof json.$id === 'string' ? json.$id : `def-${index}` },
    transform: ({ schema, url, route }) => ({
      schema: schema === undefined ? schema : withSharedHeaders(schema as Record<string, unknown>, route.config?.rateLimit !== undefined),
      url
    }),
    // Untagged routes (the demo page's files, /metrics) are not part of the documented API.
    hiddenTag: 'internal',
    hideUntagged: true
  })
  app.get('/openapi.json', { schema: { hide: true }, config: { health: true } }, async () => app.swagger())
}, { name: 'openapi' })
