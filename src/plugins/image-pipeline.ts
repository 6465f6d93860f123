import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { LEGACY_IMAGE_POLICY } from '../images/normalize.js'
import { createImagePipeline, type ImagePipeline } from '../images/pipeline.js'

declare module 'fastify' {
  interface FastifyInstance {
    imagePipeline: ImagePipeline
  }
}

/** The one image pipeline of the app: its job slots and queue are shared by every request. */
export default fp<{ config: Config }>(async (app, { config }) => {
  app.decorate('imagePipeline', createImagePipeline({
    policy: {
      ...LEGACY_IMAGE_POLICY,
      maxInputPixels: config.IMAGE_MAX_INPUT_PIXELS,
      timeoutSeconds: config.IMAGE_TIMEOUT_SECONDS
    },
    concurrency: config.IMAGE_CONCURRENCY,
    queueLimit: config.IMAGE_QUEUE_LIMIT,
    onJob: ({ durationMs, outcome, bytesIn, bytesOut }) => {
      app.metrics.imageDuration.observe({ outcome }, durationMs / 1000)
      app.metrics.imageBytesIn.inc(bytesIn)
      app.metrics.imageBytesOut.inc(bytesOut)
    }
  }))
}, { name: 'image-pipeline', dependencies: ['metrics'] })
