import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyPluginAsync } from 'fastify'
import type { ConfigSlice } from '../config/load.js'

/** public/ sits at the project's root: two levels above this file in src/plugins/, three in dist/src/plugins/. */
const PUBLIC_DIR = ['../../public/', '../../../public/']
  .map((path) => fileURLToPath(new URL(path, import.meta.url)))
  .find((dir) => existsSync(dir)) ?? fileURLToPath(new URL('../../public/', import.meta.url))

/** The settings this plugin reads. */
export const demoPageSettings = ['demoPage'] as const

/**
 * The demo page at GET / (public/: plain HTML, CSS and one script, no build
 * step). It uses the public API like any front-end, so it adds no route of its
 * own beyond the files. Off in production unless DEMO_PAGE=true.
 */
const demoPage: FastifyPluginAsync<{ config: ConfigSlice<typeof demoPageSettings[number]> }> = async (app, { config }) => {
  if (!config.demoPage) return
  // The pages link /favicon.svg; what asks for /favicon.ico anyway (an old browser, a bookmark) gets the same picture.
  const favicon = await readFile(join(PUBLIC_DIR, 'favicon.svg'))
  app.get('/favicon.ico', { schema: { hide: true } }, async (_request, reply) => await reply
    .type('image/svg+xml')
    .header('cache-control', 'no-cache')
    .header('x-content-type-options', 'nosniff')
    .send(favicon))
  // Loaded only when the page is on (in production it is off).
  const { default: fastifyStatic } = await import('@fastify/static')
  await app.register(fastifyStatic, {
    root: PUBLIC_DIR,
    // Only the files there now, as fixed routes: no wildcard that would answer every unknown GET.
    wildcard: false,
    index: 'index.html',
    cacheControl: false,
    setHeaders: (reply) => {
      reply.header('cache-control', 'no-cache')
      reply.header('x-content-type-options', 'nosniff')
      // Scripts and styles from this origin only; pictures also from the upstream's result hosts and as data: URLs.
      reply.header(
        'content-security-policy',
        "default-src 'self'; img-src 'self' data: blob: https: http:; style-src 'self'; script-src 'self'; " +
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
      )
    }
  })
}

export default demoPage
