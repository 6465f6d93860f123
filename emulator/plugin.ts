import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import { registerApi3 } from './api3/route.js'
import { LEGACY_BODY_LIMIT_BYTES, registerLegacy } from './legacy/route.js'
import type { EmulatorOptions } from './options.js'
import { ResultStore } from './shared/result-store.js'
import { findTemplateByModelId, materialPicture } from './shared/templates.js'

export type { EmulatorOptions } from './options.js'

/**
 * Both of Tencent's face fusion APIs as one Fastify plugin: the legacy
 * `POST /fuseapi/face` (legacy/route.ts) and API 3.0 at `POST /`
 * (api3/route.ts), with what they share: the results they answer by URL
 * (`GET /results/:id`) and the materials' pictures (`GET /materials/:file`).
 */
export const emulatorPlugin: FastifyPluginAsync<EmulatorOptions> = async (app: FastifyInstance, options) => {
  const results = new ResultStore(options.maxStoredResults ?? 256)

  // The upstream reads the raw body itself: a wrong Content-Type is its own
  // code (-2100), not a framework 415, and a non-JSON body is -20006. Bytes,
  // not text: API 3.0 signs the exact body (its route raises the limit to 10 MB).
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: LEGACY_BODY_LIMIT_BYTES }, (_request, body, done) => {
    done(null, body)
  })

  registerLegacy(app, options, results)
  registerApi3(app, options, results)

  app.get<{ Params: { id: string } }>('/results/:id', async (request, reply) => {
    const id = request.params.id.replace(/\.jpg$/, '')
    const image = results.get(id)
    if (image === undefined) return await reply.code(404).type('text/plain').send('not found')
    return await reply.type('image/jpeg').header('cache-control', 'private, max-age=3600').send(image)
  })

  app.get<{ Params: { file: string } }>('/materials/:file', async (request, reply) => {
    const template = findTemplateByModelId(request.params.file.replace(/\.jpg$/, ''))
    if (template === undefined) return await reply.code(404).type('text/plain').send('not found')
    return await reply.type('image/jpeg').header('cache-control', 'public, max-age=86400').send(await materialPicture(template))
  })
}
