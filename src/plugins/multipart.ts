import multipart from '@fastify/multipart'
import fp from 'fastify-plugin'
import type { ConfigSlice } from '../config/load.js'
import { FIELD_NAME_MAX_BYTES, FIELD_VALUE_MAX_BYTES } from '../fusion/fields.js'

/**
 * Multipart limits for one photo and up to seven short fields (ids, result type, options). Every limit is set,
 * because @fastify/multipart's fileSize otherwise falls back to bodyLimit
 * (1 MiB). The limits fire while the stream is read, so the route consumes
 * each part inside its error handling.
 */
export const MULTIPART_LIMITS = {
  // busboy applies fieldNameSize to urlencoded bodies only: the intake checks a part's name itself (fusion/fields.ts).
  fieldNameSize: FIELD_NAME_MAX_BYTES,
  fieldSize: FIELD_VALUE_MAX_BYTES,
  fields: 8,
  files: 1,
  parts: 10,
  headerPairs: 100,
  // Bytes of a part's headers busboy keeps (the rest is dropped, not refused; its default is 80 KiB): room for a
  // long file name, and a bound on what a 100 KB field name costs before the intake refuses it.
  headerSize: 4096
}

/** The settings this plugin reads. */
export const multipartSettings = ['MAX_UPLOAD_BYTES'] as const

export default fp<{ config: ConfigSlice<typeof multipartSettings[number]> }>(async (app, { config }) => {
  await app.register(multipart, {
    limits: { ...MULTIPART_LIMITS, fileSize: config.MAX_UPLOAD_BYTES },
    throwFileSizeLimit: true
  })
}, { name: 'multipart' })
