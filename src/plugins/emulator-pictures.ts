import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { request as undiciRequest } from 'undici'
import { fusionError } from '../errors.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** A picture's URL (a result, a template's preview) as this client can load it. */
    pictureUrl: (url: string) => string
  }
}

/** The emulator's picture routes, each with the only file names it serves. */
const PICTURES = [
  { path: '/results/:file', file: /^[0-9a-f-]{36}\.jpg$/ },
  { path: '/materials/:file', file: /^[\w-]{1,128}\.jpg$/ }
] as const

/** A Host (or X-Forwarded-Host) that can stand in a URL as it is: a name or IPv4 address, or [IPv6], and a port. */
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/

/**
 * The emulator's pictures through the service's own port. The emulator listens
 * on a loopback port of its own and names it in its URLs, which a phone on the
 * LAN (or anyone outside a container) cannot reach. In emulator mode, the
 * service serves `/results/*` and `/materials/*` from the emulator, and every
 * picture URL it answers names the origin the client called: the request's
 * Host and protocol, or X-Forwarded-Host/-Proto when they come from a proxy in
 * TRUST_PROXY (Fastify reads them only then). Real upstream URLs are left as
 * they are.
 */
export default fp(async (app) => {
  const { mode, origin } = app.upstream.client.describe()
  const emulator = mode === 'emulator' ? origin : undefined

  app.decorateRequest('pictureUrl', function (this: FastifyRequest, url: string): string {
    if (emulator === undefined || !url.startsWith(`${emulator}/`)) return url
    const called = clientOrigin(this)
    return called === undefined ? url : called + url.slice(emulator.length)
  })
  if (emulator === undefined) return

  for (const picture of PICTURES) {
    app.get<{ Params: { file: string } }>(picture.path, { schema: { hide: true } }, async (request, reply) => {
      const file = request.params.file
      if (!picture.file.test(file)) throw fusionError('FUSION_NOT_FOUND', { message: 'No such picture.' })
      const answer = await undiciRequest(emulator + picture.path.replace(':file', file), {
        headersTimeout: 10_000, bodyTimeout: 10_000
      }).catch((error: unknown) => { throw fusionError('FUSION_UPSTREAM_UNREACHABLE', { cause: error }) })
      if (answer.statusCode !== 200) {
        await answer.body.dump()
        // The emulator keeps a bounded number of results: an old one is gone.
        throw fusionError('FUSION_NOT_FOUND', { message: 'No such picture: gone, or never made.' })
      }
      for (const name of ['content-type', 'content-length', 'cache-control']) {
        const value = answer.headers[name]
        if (typeof value === 'string') reply.header(name, value)
      }
      return await reply.send(answer.body)
    })
  }
}, { name: 'emulator-pictures', dependencies: ['upstream'] })

/** `http(s)://host[:port]` as the client called it, or undefined when what it sent cannot make a URL. */
function clientOrigin (request: FastifyRequest): string | undefined {
  const { protocol, host } = request
  if ((protocol !== 'http' && protocol !== 'https') || !HOST.test(host)) return undefined
  return `${protocol}://${host}`
}
