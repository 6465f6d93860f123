import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Fused } from '../fusion/fusion.js'
import { sniffFormat } from '../images/sniff.js'
import type { JobOutcome } from '../jobs/job-line.js'

/**
 * A fusion's success body, the same for a request and for a job: `{ requestId, imageUrl, expiresAt }` or
 * `{ requestId, imageBase64 }`. The URL is written for the client reading it (`request.pictureUrl`).
 */
export function successBody (request: FastifyRequest, requestId: string, { result, expiresAt }: Fused): object {
  if (result.resultType === 'base64') return { requestId, imageBase64: result.imageBase64 }
  return { requestId, imageUrl: request.pictureUrl(result.imageUrl), expiresAt: new Date(expiresAt ?? Date.now()).toISOString() }
}

/** The fused picture as bytes, for `Accept: image/jpeg` (the upstream returns the material's own format, JPEG or PNG). */
export async function sendPicture (reply: FastifyReply, imageBase64: string): Promise<FastifyReply> {
  const bytes = Buffer.from(imageBase64, 'base64')
  return await reply.type(sniffFormat(bytes) === 'png' ? 'image/png' : 'image/jpeg').send(bytes)
}

/**
 * POST /fuse's answer to a fusion, done during the request or by its job (Prefer: wait), so that both answer alike.
 * What the Idempotency-Key store keeps with it is recorded too: until when a URL holds, and a refusal's code.
 */
export async function sendOutcome (reply: FastifyReply, outcome: JobOutcome, wantsImage: boolean): Promise<FastifyReply> {
  const request = reply.request
  if (!outcome.ok) {
    request.errorCode = outcome.error.code
    return await reply.code(outcome.error.statusCode).send(outcome.error)
  }
  if (request.idempotency !== null && outcome.expiresAt !== undefined) request.idempotency.expiresAt = outcome.expiresAt
  if (wantsImage && outcome.result.resultType === 'base64') return await sendPicture(reply, outcome.result.imageBase64)
  return await reply.code(200).send(successBody(request, request.id, outcome))
}

/** Who may see the jobs a request creates: the known API key (as its digest), or anyone holding the job's id. */
export function jobOwner (request: FastifyRequest): string | undefined {
  return request.client.apiKey === undefined ? undefined : request.client.id
}
