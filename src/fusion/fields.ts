import { Type } from '@sinclair/typebox'
import { fusionError, type FusionError } from '../errors.js'
import { excerpt } from '../excerpt.js'
import type { FusionOption } from '../upstream/provider.js'

/**
 * The fields of a fusion request, defined once: the intake validates forms and
 * JSON with them (src/intake), the OpenAPI document describes both bodies with
 * them (src/schemas.ts), and GET /templates validates its `project_id` query
 * with the same id rule.
 */
const ID_RULE = { minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }

export const FIELDS = {
  project_id: Type.String({ ...ID_RULE, description: 'Activity id.', examples: ['100307'] }),
  model_id: Type.String({ ...ID_RULE, description: 'Material (template) id.', examples: ['qc_100307_152854_1'] }),
  rsp_img_type: Type.Optional(Type.Union([Type.Literal('url'), Type.Literal('base64')], {
    default: 'url',
    description: 'How the fused picture comes back.'
  })),
  fuse_profile_degree: Type.Optional(Type.Integer({
    minimum: 0,
    maximum: 100,
    description: 'FuseFace only: how much of the face shape comes from the photo (default: the activity\'s setting).'
  })),
  fuse_face_degree: Type.Optional(Type.Integer({
    minimum: 0,
    maximum: 100,
    description: 'FuseFace only: how much of the facial features come from the photo (default: the activity\'s setting).'
  })),
  logo_add: Type.Optional(Type.Boolean({
    description: 'FuseFace 2022-09-27 only: the upstream\'s "AI-generated" mark on the result; the upstream\'s default is on. ' +
      'Forms send 0/1 or true/false.'
  })),
  template_face_id: Type.Optional(Type.String({
    ...ID_RULE,
    description: 'FuseFace only: which face of the template to replace (see GET /templates); default: the largest.'
  }))
}

export type FieldName = keyof typeof FIELDS

/**
 * Every field's name and text value, in a form or a JSON body alike, are at most this long (bytes, UTF-8). The
 * fields' own rules are stricter (ids: 64 characters); these bound what any field, known or not, may cost to read,
 * keep and name in a refusal. The JSON `image` is the photo, bounded by MAX_UPLOAD_BYTES instead.
 */
export const FIELD_NAME_MAX_BYTES = 100
export const FIELD_VALUE_MAX_BYTES = 1024

/** 413 FUSION_FIELD_TOO_LARGE for a field whose name or text value is over the limits above; undefined otherwise. */
export function fieldSizeRefusal (name: string, value?: unknown): FusionError | undefined {
  if (Buffer.byteLength(name) > FIELD_NAME_MAX_BYTES) return fieldTooLarge(name, 'name')
  if (typeof value === 'string' && Buffer.byteLength(value) > FIELD_VALUE_MAX_BYTES) return fieldTooLarge(name, 'value')
  return undefined
}

/** 413 FUSION_FIELD_TOO_LARGE, naming the field by a short excerpt of its name. */
export function fieldTooLarge (name: string, part: 'name' | 'value'): FusionError {
  return fusionError('FUSION_FIELD_TOO_LARGE', {
    message: part === 'name'
      ? `The field name \`${excerpt(name)}\` is too long: at most ${FIELD_NAME_MAX_BYTES} bytes.`
      : `The field \`${excerpt(name)}\` is too long: at most ${FIELD_VALUE_MAX_BYTES} bytes.`
  })
}

/** Each rule in words, for the refusal's message; the ids' rule is the default. */
export const FIELD_RULES: Partial<Record<string, string>> = {
  rsp_img_type: 'must be `url` or `base64`',
  fuse_profile_degree: 'must be an integer from 0 to 100',
  fuse_face_degree: 'must be an integer from 0 to 100',
  logo_add: 'must be `0`, `1`, `true` or `false`'
}
export const ID_RULE_TEXT = 'must be 1–64 letters, digits, `_` or `-`'

/** Each option's field name, as front-ends send it. */
export const OPTION_FIELDS: Record<FusionOption, FieldName> = {
  profileDegree: 'fuse_profile_degree',
  faceDegree: 'fuse_face_degree',
  logoAdd: 'logo_add',
  templateFaceId: 'template_face_id'
}

/** One finding of a JSON Schema validator (Ajv's, also in Fastify's validation errors). */
export interface FieldIssue { keyword: string, instancePath: string, params: Record<string, unknown> }

/**
 * A field that broke its rule, in our codes and words, wherever it was checked: the intake for forms and JSON
 * bodies, Fastify for a query (`where`: 'query parameter').
 */
export function fieldRefusal (issue: FieldIssue | undefined, where = 'field', cause?: unknown): FusionError {
  const details = cause !== undefined ? { cause } : {}
  if (issue === undefined) return fusionError('FUSION_INVALID_FIELD', details)
  if (issue.keyword === 'required') {
    return fusionError('FUSION_MISSING_FIELD', {
      message: `The ${where} \`${excerpt(String(issue.params.missingProperty))}\` is required.`,
      ...details
    })
  }
  if (issue.keyword === 'additionalProperties') {
    // The client's own name for it: only an excerpt is echoed.
    const name = excerpt(String(issue.params.additionalProperty))
    return fusionError('FUSION_UNKNOWN_FIELD', {
      message: `Unknown ${where} \`${name}\`: send image, project_id, model_id and optionally rsp_img_type, ` +
        `${Object.values(OPTION_FIELDS).join(', ')}.`,
      ...details
    })
  }
  const name = issue.instancePath.replace(/^\//, '').split('/')[0] ?? ''
  if (name === '') return fusionError('FUSION_INVALID_FIELD', details)
  return fusionError('FUSION_INVALID_FIELD', {
    message: `The ${where} \`${excerpt(name)}\` ${FIELD_RULES[name] ?? ID_RULE_TEXT}.`,
    ...details
  })
}
