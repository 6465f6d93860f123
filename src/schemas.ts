import { STATUS_CODES } from 'node:http'
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
    imageUrl: Type.String({
      description: 'The fused picture\'s URL (rsp_img_type=url), as the upstream gave it; with the emulator, on the host the client called.'
    }),
    expiresAt: Type.String({
      format: 'date-time',
      description: 'Until when the upstream keeps the picture at that URL (API 3.0: 7 days; legacy: undocumented, taken as 1 day). ' +
        'A replayed answer is never older than this.'
    })
  }),
  Type.Object({ requestId: Type.String(), imageBase64: Type.String({ description: 'The fused picture as base64 (rsp_img_type=base64).' }) })
])

/** Every status /fuse can answer with an error, from the catalogue (405 is for the other methods of a path: POST /fuse is its own). */
export const fuseErrorStatuses = [...new Set(Object.values(ERROR_CATALOGUE).map((entry) => entry.status))]
  .filter((status) => status !== 499 && status !== 405)
  .sort()

/**
 * Response headers as the document declares them (none is required: a replayed answer goes without some).
 * x-request-id and x-ratelimit-* are added to every response by plugins/openapi.ts, as app.ts and the rate-limit
 * plugin send them.
 */
export const RESPONSE_HEADERS = {
  'Retry-After': {
    type: 'integer',
    minimum: 0,
    description: 'Seconds to wait before asking again: on refusals that may pass (409 in progress, 429, 503) and while a job is pending.'
  },
  'Idempotent-Replayed': {
    type: 'string',
    enum: ['true'],
    description: '`true` when this is the stored answer to an earlier request with the same Idempotency-Key (no second fusion).'
  },
  Location: { type: 'string', description: 'Where to follow the job: `/fuse/jobs/{jobId}`.' },
  'Preference-Applied': {
    type: 'string',
    description: 'The `Prefer` preference honoured: `respond-async` on a 202, `wait=N` on an answer given within the wait.'
  }
} as const

type HeaderName = keyof typeof RESPONSE_HEADERS
const pick = (names: readonly HeaderName[]): Record<string, unknown> =>
  Object.fromEntries(names.map((name) => [name, RESPONSE_HEADERS[name]]))

/** Refusals that carry `Retry-After`: ones a later try may pass. */
const RETRY_AFTER_STATUSES = new Set([409, 429, 503])

/** An error answer (ErrorResponse) with its status's reason as the description. */
export function errorResponse (status: number, headers: readonly HeaderName[] = []): object {
  const names = RETRY_AFTER_STATUSES.has(status) ? ['Retry-After' as const, ...headers] : headers
  return {
    description: `${STATUS_CODES[status] ?? 'Error'}: the error shape; \`code\` says which (docs/errors.md).`,
    content: { 'application/json': { schema: { $ref: 'ErrorResponse#' } } },
    ...(names.length > 0 ? { headers: pick(names) } : {})
  }
}

const PICTURE = { type: 'string', format: 'binary', description: 'The picture itself: JPEG, or PNG when the material is one.' }

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
  operationId: 'fuse',
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
      description: 'The fused picture, as JSON or (Accept: image/jpeg) as the picture itself.',
      headers: pick(['Idempotent-Replayed', 'Preference-Applied']),
      content: {
        'application/json': { schema: FuseAnswer },
        'image/jpeg': { schema: PICTURE },
        'image/png': { schema: PICTURE }
      }
    },
    202: {
      description: 'Queued (Prefer: respond-async): follow the job at `Location`, `GET /fuse/jobs/{jobId}`.',
      headers: pick(['Location', 'Retry-After', 'Preference-Applied', 'Idempotent-Replayed']),
      content: { 'application/json': { schema: JobAccepted } }
    },
    // Final refusals are stored under an Idempotency-Key and replayed too.
    ...Object.fromEntries(fuseErrorStatuses.map((status) => [status, errorResponse(status, ['Idempotent-Replayed'])]))
  }
}

const JobParams = Type.Object({ jobId: Type.String({ description: 'The job\'s id, from the 202\'s `jobId` or `Location`.' }) })
const jobErrors = Object.fromEntries([401, 404, 429, 503].map((status) => [status, errorResponse(status)]))

/** The jobs routes as the API document shows them. */
export const jobRouteSchemas = {
  get: {
    operationId: 'getFuseJob',
    tags: ['fusion'],
    summary: 'A queued fusion\'s state, position, ETA and result',
    description: 'With `Accept: image/jpeg`, a finished base64 job answers with the picture itself. While pending: `Retry-After`.',
    params: JobParams,
    response: {
      200: {
        description: 'The job; a finished base64 job with `Accept: image/jpeg`, its picture.',
        headers: pick(['Retry-After']),
        content: { 'application/json': { schema: JobState }, 'image/jpeg': { schema: PICTURE }, 'image/png': { schema: PICTURE } }
      },
      ...jobErrors
    }
  },
  delete: {
    operationId: 'cancelFuseJob',
    tags: ['fusion'],
    summary: 'Cancel a queued fusion, or delete a finished one with its result',
    params: JobParams,
    response: {
      200: { description: 'The job as it ends: `canceled`, or as it finished.', content: { 'application/json': { schema: JobState } } },
      409: errorResponse(409),
      ...jobErrors
    }
  },
  events: {
    operationId: 'followFuseJob',
    tags: ['fusion'],
    summary: 'A queued fusion as a stream of events (text/event-stream)',
    description: 'An event (the `GET` body) whenever the position or state changes, then a final one, then the end. A comment at ' +
      'least every 15 s. Reconnecting with `Last-Event-ID` gives the current state at once.',
    params: JobParams,
    response: {
      200: {
        description: 'Server-sent events until the job finishes.',
        content: {
          'text/event-stream': {
            schema: {
              type: 'string',
              description: 'Events `id: N` and `data: <JobState as JSON>`, each ended by a blank line; `: keep-alive` comments between.'
            }
          }
        }
      },
      ...jobErrors
    }
  }
}

/** GET /healthz. */
export const Health = Type.Object({
  status: Type.Literal('ok'),
  upstream: Type.Object({
    provider: Type.Union([Type.Literal('legacy'), Type.Literal('v3')]),
    mode: Type.Union([Type.Literal('tencent'), Type.Literal('emulator')]),
    origin: Type.Optional(Type.String()),
    action: Type.Optional(Type.String({ description: 'API 3.0 only.' })),
    version: Type.Optional(Type.String({ description: 'API 3.0 only.' })),
    region: Type.Optional(Type.String({ description: 'API 3.0 only.' }))
  }, { description: 'Which upstream answers fusions.' }),
  warning: Type.Optional(Type.String({ description: 'Present when the built-in emulator, not Tencent Cloud, answers.' }))
}, { title: 'Health' })

/** GET /readyz, ready or not. */
export const Readiness = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not ready')]),
  upstreamBreaker: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half-open')]),
  degraded: Type.Boolean({ description: 'Redis is configured but unreachable.' }),
  redis: Type.Union([Type.Literal('ready'), Type.Literal('unreachable'), Type.Literal('not configured')]),
  budget: Type.Union([Type.Literal('shared'), Type.Literal('per-replica fallback'), Type.Literal('local')]),
  clientLimits: Type.Union([Type.Literal('shared'), Type.Literal('fail open'), Type.Literal('local')]),
  jobLine: Type.Union([Type.Literal('shared'), Type.Literal('local'), Type.Literal('unreachable')], {
    description: 'Unreachable: new jobs are refused (503); synchronous fusions still work.'
  })
}, { title: 'Readiness' })

const CLOSING_NOTE = 'While the service closes, every request that arrives is answered 503 FUSION_SHUTTING_DOWN (the error shape).'

export const healthRouteSchemas = {
  healthz: {
    operationId: 'getHealth',
    tags: ['operations'],
    summary: 'Alive, and which upstream answers',
    security: [],
    response: {
      200: { description: 'Alive.', content: { 'application/json': { schema: Health } } },
      503: { ...errorResponse(503), description: `Closing. ${CLOSING_NOTE}` }
    }
  },
  readyz: {
    operationId: 'getReadiness',
    tags: ['operations'],
    summary: 'Ready for traffic (503 while the upstream circuit is open); state of the shared stores',
    security: [],
    response: {
      200: { description: 'Ready.', content: { 'application/json': { schema: Readiness } } },
      503: {
        description: 'Not ready: the upstream circuit is open, or Redis is unreachable with READYZ_REQUIRES_REDIS=true. ' + CLOSING_NOTE,
        content: { 'application/json': { schema: Type.Union([Readiness, Type.Ref(ErrorResponse)]) } },
        headers: pick(['Retry-After'])
      }
    }
  }
}
