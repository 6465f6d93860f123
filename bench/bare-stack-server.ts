/**
 * The stack alone: Fastify, @fastify/multipart, sharp and undici doing a fusion's unavoidable work, as their own
 * documentation shows them used, and nothing of the service's own (no checks of the photo or the fields, no limits,
 * image places, signature, retries, circuit breaker, metrics or error mapping). bench/throughput.ts runs it beside the
 * service, so the service's cost over sharp alone splits into the stack's part and the service's own.
 *
 * POST /fuse takes the photo as a form (`image`) or as base64 in JSON, turns it into the JPEG the path sends, and
 * posts it as base64 in JSON to UPSTREAM_URL. Node runs this file as it is (its types are stripped), with the same
 * flags as the service; UV_THREADPOOL_SIZE (set by the bench) bounds the image jobs at once, as the service's
 * pipeline does.
 *
 *   PORT, UPSTREAM_URL, IMAGE_MAX_SIDE, JPEG_QUALITY (the service's, passed by the bench)
 */
import Fastify from 'fastify'
import multipart from '@fastify/multipart'
import sharp from 'sharp'
import { request } from 'undici'

const side = Number(process.env.IMAGE_MAX_SIDE)
const quality = Number(process.env.JPEG_QUALITY)
const upstreamUrl = process.env.UPSTREAM_URL ?? ''
// As the service runs libvips (src/images/pipeline.ts).
sharp.cache(false)
sharp.concurrency(1)

const app = Fastify({ bodyLimit: 20 * 1024 * 1024 })
await app.register(multipart, { limits: { fileSize: 20 * 1024 * 1024 } })

app.get('/healthz', async () => ({ status: 'ok' }))
app.post('/fuse', async (request_) => {
  const fields: Record<string, unknown> = {}
  let photo: Buffer | undefined
  if (request_.isMultipart()) {
    for await (const part of request_.parts()) {
      if (part.type === 'file') photo = await part.toBuffer()
      else fields[part.fieldname] = part.value
    }
  } else {
    const { image, ...rest } = request_.body as { image: string }
    Object.assign(fields, rest)
    photo = Buffer.from(image, 'base64')
  }
  const jpeg = await sharp(photo)
    .rotate()
    .resize({ width: side, height: side, fit: 'inside', withoutEnlargement: true })
    .jpeg({ quality, chromaSubsampling: '4:2:0' })
    .toBuffer()
  const response = await request(upstreamUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...fields, image: jpeg.toString('base64') })
  })
  return { upstream: await response.body.json() }
})

await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
