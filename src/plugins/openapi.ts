import swagger from '@fastify/swagger'
import fp from 'fastify-plugin'
import { ErrorResponse } from '../schemas.js'

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
      tags: [{ name: 'fusion' }, { name: 'operations' }]
    },
    // Shared schemas keep their own names (ErrorResponse) in components.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, index) => typeof json.$id === 'string' ? json.$id : `def-${index}` },
    // Untagged routes (the demo page's files, /metrics) are not part of the documented API.
    hiddenTag: 'internal',
    hideUntagged: true
  })
  app.get('/openapi.json', { schema: { hide: true }, config: { health: true } }, async () => app.swagger())
}, { name: 'openapi' })
