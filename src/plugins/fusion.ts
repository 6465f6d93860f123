import fp from 'fastify-plugin'
import { createFusion, type Fusion } from '../fusion/fusion.js'

declare module 'fastify' {
  interface FastifyInstance {
    fusion: Fusion
  }
}

/** The fusion use-case (src/fusion), built once from the image pipeline and the upstream, for every door. */
export default fp(async (app) => {
  app.decorate('fusion', createFusion({ images: app.imagePipeline, upstream: app.upstream.client }))
}, { name: 'fusion', dependencies: ['image-pipeline', 'upstream'] })
