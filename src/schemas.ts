import { Type } from '@sinclair/typebox'
import { ERROR_CATALOGUE } from './errors.js'
import { FIELDS } from './fusion/fields.js'

/**
 * The HTTP contract, as JSON Schema for the OpenAPI document (docs/openapi.json).
 * The fields are fusion/fields.ts's, the one definition the intake validates with.
 */
export const ErrorResponse = Type.Object({
  statusCode: Type.Integer({ description: 'The HTTP status, repeated.' }),
  code: Type.Union(Object.keys(ERROR_CATALOGUE).map((code) => Type.Literal(code)), {
    description: 'Stable error code: switch on this. See docs/errors.md.'
  }),
  error: Type.String({ description: 'The HTTP reason phrase.' }),
  message: Type.String({ description: 'A message a front-end can show.' }),
  upstreamCode: Type.Optional(Type.String({
    description: 'The upstream\'s own code (legacy `ret` or API 3.0 `Error.Code`), when the error mirrors one.'
  })),
  format: Type.Optional(Type.String({ description: 'The image format seen in the bytes, on format refusals.' })),
  requestId: Type.String({ description: 'Also in the x-request-id header.' })
}, { $id: 'ErrorResponse', title: 'Error' })

export const FuseForm = Type.Object({
  image: Type.String({ format: 'binary', description: 'The photo: JPEG, PNG, WebP or AVIF, decided from the bytes. Exactly one file.' }),
  ...FIELDS
}, { additionalProperties: false })

export const FuseJson = Type.Object({
  image: Type.String({ description: 'The photo as base64; a data:image/...;base64, prefix is accepted.' }),
  ...FIELDS
}, { additionalProperties: false })

export const FuseAnswer = Type.Union([
  Type.Object({
    requestId: Type.String(),
    imageUrl: Type.String({ description: 'The fused picture\'s URL (rsp_img_type=url), as the upstream gave it.' }),
    expiresAt: Type.String({
      format: 'date-time',
      description: 'Until when the upstream keeps the picture at that URL (API 3.0: 7 days; legacy: undocumented, taken as 1 day). ' +
        'A replayed answer is never older than this.'
    })
  }),
  Type.Object({ requestId: Type.String(), imageBase64: Type.String({ description: 'The fused picture as base64 (rsp_img_type=base64).' }) })
])

/** Every status /fuse can answer with an error, from the catalogue. */
export const fuseErrorStatuses = [...new Set(Object.values(ERROR_CATALOGUE).map((entry) => entry.status))]
  .filter((status) => status !== 499)
  .sort()

export const TemplateList = Type.Object({
  templates: Type.Array(Type.Object({
    projectId: Type.String(),
    modelId: Type.String(),
    name: Type.Optional(Type.String()),
    previewUrl: Type.Optional(Type.String({ description: 'The material\'s picture, when the upstream gives one.' })),
    faces: Type.Optional(Type.Array(Type.Object({
      faceId: Type.String({ description: 'A value for `template_face_id`.' }),
      x: Type.Optional(Type.Number()),
      y: Type.Optional(Type.Number()),
      width: Type.Optional(Type.Number()),
      height: Type.Optional(Type.Number())
    })))
  })),
  source: Type.Union([Type.Literal('upstream'), Type.Literal('config'), Type.Literal('emulator'), Type.Literal('none')], {
    description: 'Where the list comes from: the upstream (API 3.0), FUSION_TEMPLATES, the emulator, or none ' +
      '(the legacy API with nothing declared).'
  })
})

/** POST /fuse as the API document shows it. */
export const JobAccepted = Type.Object({
  jobId: Type.String({ description: '128 random bits; the job is followed at `/fuse/jobs/{jobId}`.' }),
  status: Type.Literal('queued'),
  position: Type.Integer({ description: 'Place in the line; 1 is next.' }),
  etaSeconds: Type.Integer({ description: 'Estimated seconds until the job is sent, from the drain rate achieved.' }),
  requestId: Type.String()
}, { title: 'JobAccepted' })

export const JobState = Type.Object({
  jobId: Type.String(),
  status: Type.Union(['queued', 'running', 'succeeded', 'failed', 'canceled'].map((status) => Type.Literal(status))),
  position: Type.Optional(Type.Integer()),
  etaSeconds: Type.Optional(Type.Integer()),
  createdAt: Type.String({ format: 'date-time' }),
  startedAt: Type.Optional(Type.String({
    format: 'date-time',
    description: 'When a worker took the job (it became `running`), ending its wait in the line; its upstream call goes out at its ' +
      'slot of the budget, within `UPSTREAM_BUDGET_WAIT_MS`. Absent while queued and for a canceled job.'
  })),
  finishedAt: Type.Optional(Type.String({ format: 'date-time' })),
  result: Type.Optional(FuseAnswer),
  error: Type.Optional(Type.Ref(ErrorResponse))
}, { title: 'JobState' })

export const fuseRouteSchema = {
  tags: ['fusion'],
  summary: 'Fuse a photo into a template',
  description: 'A photo and a template in; the fused picture out, as a URL, as base64, or (Accept: image/jpeg) as the image itself.',
  headers: {
    type: 'object',
    properties: {
      'idempotency-key': {
        type: 'string',
        minLength: 1,
        maxLength: 255,
        description: 'Makes the request safe to retry: a later request with the same key and the same payload gets the stored answer ' +
          '(marked `Idempotent-Replayed: true`) without a second fusion. A UUID per photo and template is right.'
      },
      prefer: {
        type: 'string',
        description: '`respond-async`: the photo is checked at once, then the fusion waits in a fair line: 202 with the job to ' +
          'follow (`Location`). `wait=N` (seconds, capped by QUEUE_PREFER_WAIT_MAX_SECONDS): a job done within N seconds is ' +
          'answered as this request would have been, else the 202.'
      }
    }
  },
  body: { content: { 'multipart/form-data': { schema: FuseForm }, 'application/json': { schema: FuseJson } } },
  response: {
    200: {
      description: 'The fused picture.',
      content: {
        'application/json': { schema: FuseAnswer },
        'image/jpeg': { schema: { type: 'string', format: 'binary' } }
      }
    },
    202: {
      description: 'Queued (Prefer: respond-async): follow the job at `Location`, `GET /fuse/jobs/{jobId}`.',
      content: { 'application/json': { schema: JobAccepted } }
    },
    ...Object.fromEntries(fuseErrorStatuses.map((status) => [status, { $ref: 'ErrorResponse#' }]))
  }
}

const JobParams = Type.Object({ jobId: Type.String({ description: 'The job\'s id, from the 202\'s `jobId` or `Location`.' }) })
const jobErrors = Object.fromEntries([404, 503].map((status) => [status, { $ref: 'ErrorResponse#' }]))

/** The jobs routes as the API document shows them. */
export const jobRouteSchemas = {
  get: {
    tags: ['fusion'],
    summary: 'A queued fusion\'s state, position, ETA and result',
    description: 'With `Accept: image/jpeg`, a finished base64 job answers with the picture itself. While pending: `Retry-After`.',
    params: JobParams,
    response: {
      200: { content: { 'application/json': { schema: JobState }, 'image/jpeg': { schema: { type: 'string', format: 'binary' } } } },
      ...jobErrors
    }
  },
  delete: {
    tags: ['fusion'],
    summary: 'Cancel a queued fusion, or delete a finished one with its result',
    params: JobParams,
    response: { 200: JobState, 409: { $ref: 'ErrorResponse#' }, ...jobErrors }
  },
  events: {
    tags: ['fusion'],
    summary: 'A queued fusion as a stream of events (text/event-stream)',
    description: 'An event (the `GET` body) whenever the position or state changes, then a final one, then the end. A comment at ' +
      'least every 15 s. Reconnecting with `Last-Event-ID` gives the current state at once.',
    params: JobParams,
    response: { 200: { content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...jobErrors }
  }
}
