import fp from 'fastify-plugin'
import type { ConfigSlice } from '../config/load.js'
import { createImagePipeline, type ImagePipeline } from '../images/pipeline.js'
import { sentImageLimits } from '../upstream/image-limits.js'

declare module 'fastify' {
  interface FastifyInstance {
    imagePipeline: ImagePipeline
  }
}

/** The settings this plugin reads. */
export const imagePipelineSettings = [
  'upstream', 'IMAGE_MAX_SIDE', 'IMAGE_MAX_INPUT_PIXELS', 'IMAGE_TIMEOUT_SECONDS', 'IMAGE_CONCURRENCY', 'IMAGE_QUEUE_LIMIT',
  'IMAGE_PLACES_PER_CLIENT', 'IMAGE_DECODE_MEMORY_BYTES', 'IMAGE_MAX_JPEG_SCANS'
] as const

/** The one image pipeline of the app: its job slots and queue are shared by every request. */
export default fp<{ config: ConfigSlice<typeof imagePipelineSettings[number]> }>(async (app, { config }) => {
  const pipeline = createImagePipeline({
    policy: {
      ...sentImageLimits(config.upstream, config.IMAGE_MAX_SIDE),
      maxInputPixels: config.IMAGE_MAX_INPUT_PIXELS,
      maxJpegScans: config.IMAGE_MAX_JPEG_SCANS,
      timeoutSeconds: config.IMAGE_TIMEOUT_SECONDS
    },
    concurrency: config.IMAGE_CONCURRENCY,
    queueLimit: config.IMAGE_QUEUE_LIMIT,
    perClient: config.IMAGE_PLACES_PER_CLIENT,
    decodeMemoryBytes: config.IMAGE_DECODE_MEMORY_BYTES,
    onJob: ({ durationMs, waitMs, outcome, bytesIn, bytesOut }) => {
      app.metrics.imageDuration.observe({ outcome }, durationMs / 1000)
      if (waitMs !== undefined) app.metrics.imageWait.observe({ outcome }, waitMs / 1000)
      app.metrics.imageBytesIn.inc(bytesIn)
      app.metrics.imageBytesOut.inc(bytesOut)
    },
    onLoad: ({ running, waiting, decodeMemoryBytes }) => {
      app.metrics.imageJobs.set({ state: 'running' }, running)
      app.metrics.imageJobs.set({ state: 'waiting' }, waiting)
      app.metrics.imageDecodeMemory.set(decodeMemoryBytes)
    }
  })
  app.decorate('imagePipeline', pipeline)
  // After the server has finished its requests: nothing reads an upload buffer any more.
  app.addHook('onClose', async () => { pipeline.uploadBuffers.close() })
}, { name: 'image-pipeline', dependencies: ['metrics'] })
