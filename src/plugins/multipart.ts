import multipart from '@fastify/multipart'
import fp from 'fastify-plugin'
import type { ConfigSlice } from '../config/load.js'

/**
 * Multipart limits for one photo and up to seven short fields (ids, result type, options). Every limit is set,
 * because @fastify/multipart's fileSize otherwise falls back to bodyLimit
 * (1 MiB). The limits fire while the stream is read, so the route consumes
 * each part inside its error handling.
 */
export const MULTIPART_LIMITS = {
  fieldNameSize: 100,
  fieldSize: 1024,
  fields: 8,
  files: 1,
  parts: 10,
  headerPairs: 100
}

/** The settings this plugin reads. */
export const multipartSettings = ['MAX_UPLOAD_BYTES'] as const

export default fp<{ config: ConfigSlice<typeof multipartSettings[number]> }>(async (app, { config }) => {
  await app.register(multipart, {
    limits: { ...MULTIPART_LIMITS, fileSize: config.MAX_UPLOAD_BYTES },
    throwFileSizeLimit: true
  })
}, { name: 'multipart' })
