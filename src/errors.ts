import { STATUS_CODES } from 'node:http'
import createError from '@fastify/error'

/**
 * Every error the service can answer with. The code is the contract a client
 * switches on; the status follows it; the message is safe to show to a user.
 * `transient` marks answers that depend on the moment (load, limits, the
 * upstream's health, a client that left): a retry may change them, so they are
 * never stored as a key's final answer.
 * `log` is the level its answer is logged at (src/app.ts): `error` when one of
 * us must act (our code, our credentials, our account), `warn` when the
 * upstream is unwell; absent, `info`: the client's doing, or a protection
 * (shedding, limits, the budget, the breaker) doing its job. Only
 * FUSION_INTERNAL_ERROR is logged with a stack.
 * `docs/errors.md` is checked against this table by a test.
 */
export const ERROR_CATALOGUE = {
  // Request shape
  FUSION_UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    message: 'Send multipart/form-data or application/json.',
    cause: 'The Content-Type is neither multipart/form-data nor application/json.'
  },
  FUSION_MALFORMED_BODY: {
    status: 400,
    message: 'The request body could not be parsed.',
    cause: 'Broken multipart framing, a multipart boundary missing or longer than 70 characters (RFC 2046; refused before the body is ' +
      'read), invalid JSON, JSON nested more than 64 levels deep (refused as it arrives), a multipart form sent as application/json, ' +
      'or a JSON body that is not an object. Each has its own message.'
  },
  FUSION_MISSING_FIELD: {
    status: 400,
    message: 'A required field is missing.',
    cause: '`project_id` or `model_id` is absent or empty (for `GET /templates` with API 3.0: the `project_id` query parameter).'
  },
  FUSION_INVALID_FIELD: {
    status: 400,
    message: 'A field has an invalid value.',
    cause: 'A field breaks its rule (ids, the `project_id` query of `GET /templates` and `template_face_id`: 1–64 of `A-Z a-z 0-9 _ -`; ' +
      '`rsp_img_type`: `url` or `base64`; degrees: integers 0–100; `logo_add`: `0`, `1`, `true` or `false`; `image` in JSON: a string).'
  },
  FUSION_UNKNOWN_FIELD: {
    status: 400,
    message: 'The request has a field this API does not know.',
    cause: 'A form field or JSON property other than `image`, `project_id`, `model_id`, `rsp_img_type` and the options ' +
      '(`fuse_profile_degree`, `fuse_face_degree`, `logo_add`, `template_face_id`), or a file under a name other than `image`. ' +
      'The message names the field received and the one expected.'
  },
  FUSION_UNSUPPORTED_OPTION: {
    status: 400,
    message: 'The configured fusion API cannot honour this option.',
    cause: 'An option (`fuse_profile_degree`, `fuse_face_degree`, `logo_add`, `template_face_id`) the configured upstream action does ' +
      'not have: the legacy API has none, FaceFusion none, FuseFace 2018-12-01 all but `logo_add`.'
  },
  FUSION_DUPLICATE_FIELD: {
    status: 400,
    message: 'A field was sent more than once.',
    cause: 'The same text field appears twice in the form.'
  },
  FUSION_FIELD_TOO_LARGE: {
    status: 413,
    message: 'A form field is too long.',
    cause: 'A field name longer than 100 bytes, or a text field\'s value longer than 1 KiB, in a form or a JSON body alike (the ' +
      'JSON `image` excepted). The message names the field by a short excerpt.'
  },
  FUSION_TOO_MANY_PARTS: {
    status: 413,
    message: 'The form has too many parts.',
    cause: 'More multipart parts or fields than the form can have.'
  },
  FUSION_MISSING_IMAGE: {
    status: 400,
    message: 'The photo is missing: send it as the `image` field.',
    cause: 'No `image` file part (multipart) or `image` property (JSON).'
  },
  FUSION_TOO_MANY_FILES: {
    status: 400,
    message: 'Send exactly one photo, in the `image` field.',
    cause: 'More than one file part.'
  },
  FUSION_FILE_TOO_LARGE: {
    status: 413,
    message: 'The photo is larger than the upload limit.',
    cause: 'The uploaded file exceeds `MAX_UPLOAD_BYTES`; the upload is cut off at the limit. The message gives the limit in MiB.'
  },
  FUSION_BODY_TOO_LARGE: {
    status: 413,
    message: 'The request body is larger than the upload limit.',
    cause: 'A JSON body larger than the base64 of `MAX_UPLOAD_BYTES` plus room for the other fields. The message gives the limit in ' +
      'MiB.'
  },
  FUSION_UPLOAD_TOO_SLOW: {
    status: 408,
    transient: true,
    message: 'The upload is too slow: send the photo again from a faster connection.',
    cause: 'After `UPLOAD_RATE_GRACE_MS`, the body arrived slower than `UPLOAD_MIN_BYTES_PER_SECOND` on average. The upload is cut ' +
      'off and answered with `Connection: close`, so its image place goes to someone else.'
  },
  FUSION_UPLOAD_TIMEOUT: {
    status: 408,
    transient: true,
    message: 'The upload did not finish in time: send a smaller photo, or from a faster connection.',
    cause: 'The body was still arriving at the request deadline (`REQUEST_DEADLINE_MS`). The upload is cut off and answered with ' +
      '`Connection: close`.'
  },
  FUSION_INVALID_BASE64: {
    status: 400,
    message: 'The `image` field is not valid base64.',
    cause: 'The JSON `image` is not standard or URL-safe base64 (a `data:image/...;base64,` prefix is accepted).'
  },
  FUSION_EMPTY_IMAGE: {
    status: 400,
    message: 'The photo is empty.',
    cause: 'A zero-byte file or an empty base64 string.'
  },
  FUSION_UNSUPPORTED_IMAGE_FORMAT: {
    status: 415,
    message: 'This image format is not supported: send a JPEG, PNG, WebP or AVIF photo.',
    cause: 'The bytes are not JPEG, PNG, WebP or AVIF (GIF, SVG, TIFF, PDF, BMP, text, …), whatever the declared type or file name says. ' +
      'The answer\'s `format` names what was seen.'
  },
  FUSION_HEIC_UNSUPPORTED: {
    status: 415,
    message: 'HEIC photos are not supported: send a JPEG or PNG. On iPhone, a file input with accept="image/jpeg,image/png" makes the ' +
      'browser convert the photo on upload.',
    cause: 'HEVC-coded HEIF (iPhone camera photos); the image library ships without an HEVC decoder. `format` is `heic`.'
  },
  FUSION_ANIMATED_IMAGE: {
    status: 415,
    message: 'Animated images are not supported: send a still photo.',
    cause: 'A WebP, AVIF or other image with more than one frame. `format` names the container.'
  },
  FUSION_IMAGE_CORRUPT: {
    status: 422,
    message: 'The photo could not be decoded; it may be truncated or damaged.',
    cause: 'The bytes start like a JPEG, PNG or WebP but do not decode.'
  },
  FUSION_IMAGE_TOO_MANY_PIXELS: {
    status: 413,
    message: 'The photo has too many pixels.',
    cause: 'Width × height exceeds `IMAGE_MAX_INPUT_PIXELS` (checked from the header, before decoding).'
  },
  FUSION_IMAGE_DECODE_TOO_LARGE: {
    status: 413,
    message: 'The photo needs too much memory to decode: send one with fewer pixels, or a JPEG.',
    cause: 'The memory its format\'s decoder needs at its size (estimated from the header, before decoding: about 20 bytes a pixel ' +
      'for AVIF, 3 for a progressive JPEG) is more than the whole `IMAGE_DECODE_MEMORY_BYTES`.'
  },
  FUSION_IMAGE_TOO_MANY_SCANS: {
    status: 422,
    message: 'The photo is a progressive JPEG with too many scans: save it again as an ordinary JPEG.',
    cause: 'A JPEG with more than `IMAGE_MAX_JPEG_SCANS` scans, counted from its markers before decoding (encoders write 1 to 18).'
  },
  FUSION_IMAGE_TIMEOUT: {
    status: 422,
    transient: true,
    message: 'The photo took too long to process: send a smaller or simpler image.',
    cause: 'Decoding and resizing took longer than `IMAGE_TIMEOUT_SECONDS` (answered then, even if the decoder stops later).'
  },
  FUSION_IMAGE_TOO_SMALL: {
    status: 422,
    message: 'The photo is too small to find a face in: send at least 64 pixels on the short side.',
    cause: 'The short side is under 64 px (API 3.0: 65) once the photo is fitted within the upstream\'s largest side, so a very narrow ' +
      'photo is refused too.'
  },
  FUSION_NOT_ACCEPTABLE: {
    status: 406,
    message: 'This API answers with application/json or image/jpeg.',
    cause: 'The `Accept` header allows neither JSON nor an image.'
  },
  FUSION_UNKNOWN_API_KEY: {
    status: 401,
    message: 'The API key is not known to this service.',
    cause: 'An `x-api-key` header that is not one of `CLIENT_API_KEYS`.'
  },
  FUSION_CLIENT_RATE_LIMITED: {
    status: 429,
    transient: true,
    message: 'Too many requests from this client: retry after the delay in Retry-After.',
    cause: 'More than `RATE_LIMIT_MAX` requests in `RATE_LIMIT_WINDOW_MS` from one client IP (or `RATE_LIMIT_API_KEY_MAX` for one API ' +
      'key). Refused before the body is read; carries `Retry-After` and the `x-ratelimit-*` headers.'
  },
  FUSION_TOO_MANY_UPLOADS: {
    status: 429,
    transient: true,
    message: 'This client already has too many photos in progress: retry after the delay in Retry-After.',
    cause: 'The client (its API key, else its address) already holds `IMAGE_PLACES_PER_CLIENT` places of the image pipeline, uploading ' +
      'or waiting, on this replica. Refused before the body is read; carries `Retry-After`.'
  },
  FUSION_UPSTREAM_BUSY: {
    status: 503,
    transient: true,
    message: 'The fusion service quota is in full use: retry after the delay in Retry-After.',
    cause: 'No call of the shared upstream budget (`UPSTREAM_QPS`, `UPSTREAM_PROJECT_QPS`) frees up within `UPSTREAM_BUDGET_WAIT_MS`, or ' +
      'the upstream asked us to back off. Carries `Retry-After`.'
  },
  FUSION_OVERLOADED: {
    status: 503,
    transient: true,
    message: 'The service is busy: retry after the delay in Retry-After.',
    cause: 'More photos in flight than `IMAGE_CONCURRENCY` + `IMAGE_QUEUE_LIMIT` (refused before the body is read), or a photo still ' +
      'waiting for an image job or decode memory (`IMAGE_DECODE_MEMORY_BYTES`), or still being processed, at the request\'s deadline ' +
      '(`REQUEST_DEADLINE_MS`). Carries `Retry-After`.'
  },
  FUSION_SATURATED: {
    status: 503,
    transient: true,
    message: 'The service is saturated: retry after the delay in Retry-After.',
    cause: 'Event-loop delay, RSS or heap past `PRESSURE_MAX_*`; refused before anything is read. Carries `Retry-After`.'
  },
  FUSION_SHUTTING_DOWN: {
    status: 503,
    transient: true,
    message: 'This server is shutting down: retry after the delay in Retry-After.',
    cause: 'The replica is stopping. Once told to stop (`SIGTERM` or `SIGINT`), it finishes what it has received and refuses a request ' +
      'that arrives meanwhile on a connection opened before, before anything is read; told twice, it also refuses a request that had ' +
      'not reached the upstream yet, before any upstream call, so a retry is never billed twice. Carries `Retry-After`; the retry ' +
      'reaches another replica.'
  },
  FUSION_NOT_FOUND: {
    status: 404,
    message: 'No such route.',
    cause: 'The path matches no route, whatever the method.'
  },
  FUSION_METHOD_NOT_ALLOWED: {
    status: 405,
    message: 'This path does not take that method: see the Allow header.',
    cause: 'A known path asked with a method it has no route for (`GET /fuse`, `DELETE /templates`). The `Allow` header lists the ' +
      'methods the path takes, and the message names them.'
  },
  FUSION_INVALID_IDEMPOTENCY_KEY: {
    status: 400,
    message: 'The Idempotency-Key header is invalid.',
    cause: 'An `Idempotency-Key` that is empty, longer than 255 characters, not visible ASCII, or sent twice. Refused before the body is ' +
      'read.'
  },
  FUSION_IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    message: 'This Idempotency-Key was already used for a different request: send a new key for a new photo or template.',
    cause: 'The same `Idempotency-Key` with another payload (activity, template, options, answer type or photo bytes) within ' +
      '`IDEMPOTENCY_TTL_SECONDS`.'
  },
  FUSION_IDEMPOTENCY_IN_PROGRESS: {
    status: 409,
    transient: true,
    message: 'A request with this Idempotency-Key is still being processed: retry after the delay in Retry-After.',
    cause: 'The first request with this key was still at work when this one\'s deadline (`REQUEST_DEADLINE_MS`) came. Carries ' +
      '`Retry-After`; the retry gets the stored answer.'
  },
  FUSION_CLIENT_CLOSED_REQUEST: {
    status: 499,
    transient: true,
    message: 'The client closed the request.',
    cause: 'The client disconnected before the answer was ready (logged; the client never sees it).'
  },

  // Asynchronous jobs (Prefer: respond-async, /fuse/jobs)
  FUSION_QUEUE_FULL: {
    status: 503,
    transient: true,
    message: 'The wait line is full: retry after the delay in Retry-After.',
    cause: 'The line already holds `QUEUE_MAX_JOBS` jobs, or a new job\'s estimated wait is over `QUEUE_MAX_WAIT_SECONDS`, or the ' +
      'line\'s Redis would be past 90 % of its `maxmemory` with the new photo (the rest is room for the results of the jobs already ' +
      'in). Carries `Retry-After`.'
  },
  FUSION_TOO_MANY_JOBS: {
    status: 429,
    transient: true,
    message: 'This client already has as many jobs in the line as it may: wait for one to finish.',
    cause: 'The client (API key, else address) has `QUEUE_MAX_JOBS_PER_CLIENT` jobs queued or running. Carries `Retry-After`.'
  },
  FUSION_QUEUE_UNAVAILABLE: {
    status: 503,
    transient: true,
    message: 'The wait line is unavailable right now: retry later, or send the request without Prefer: respond-async.',
    cause: 'The queue\'s Redis (`QUEUE_REDIS_URL`) cannot be reached.'
  },
  FUSION_JOB_NOT_FOUND: {
    status: 404,
    message: 'No such job.',
    cause: 'An unknown job id, a job whose result has expired (`QUEUE_RESULT_TTL_SECONDS`) or was deleted, or a job created with ' +
      'another API key.'
  },
  FUSION_JOB_RUNNING: {
    status: 409,
    transient: true,
    message: 'The job is running and can no longer be canceled: wait for its result.',
    cause: '`DELETE /fuse/jobs/{jobId}` while the job\'s upstream call may be under way.'
  },
  FUSION_JOB_INTERRUPTED: {
    status: 503,
    transient: true,
    message: 'The job was interrupted after its fusion may have been sent, so it was not sent again: submit the photo again.',
    cause: 'The replica running the job stopped (crash or kill) after the upstream call may have been sent. It is never re-sent ' +
      'silently, since it may have been billed; `fusion_jobs_interrupted_total` counts these.'
  },

  // Upstream answers (see docs/errors.md for the ret → code table)
  // The tables in docs/errors.md list which legacy `ret` and API 3.0 `Error.Code` gives each.
  FUSION_NO_FACE: {
    status: 422,
    message: 'No face was found in the photo.',
    cause: 'Upstream: no face (legacy `ret` 1000; API 3.0 `FailedOperation.NoFaceDetected` and kin).'
  },
  FUSION_FACE_TOO_SMALL: {
    status: 422,
    message: 'The face in the photo is too small: use a photo where the face is larger.',
    cause: 'Upstream: face under 34×34 px (API 3.0 `FailedOperation.FaceSizeTooSmall`).'
  },
  FUSION_FACE_DETECTION_FAILED: {
    status: 422,
    message: 'The face in the photo could not be processed: try a clear, frontal photo.',
    cause: 'Upstream: the face could not be analysed (legacy `ret` -4, -1008; API 3.0 `FailedOperation.Face*`).'
  },
  FUSION_IMAGE_REJECTED: {
    status: 422,
    message: 'The upstream could not process this photo: try another one.',
    cause: 'Upstream image processing error (legacy `ret` -1001; API 3.0 `FailedOperation.ImageDecodeFailed`, `FuseImageError`, ' +
      '`FaceFusionError`, moderation).'
  },
  FUSION_IMAGE_TOO_LARGE: {
    status: 413,
    message: 'The photo is too large for the fusion service.',
    cause: 'Upstream size refusal (legacy `ret` -3; API 3.0 `FailedOperation.ImageSizeExceed` and kin), or a photo too detailed to fit ' +
      'the upstream\'s byte budget even at the lowest JPEG quality.'
  },
  FUSION_TEMPLATE_NO_FACE: {
    status: 422,
    message: 'The chosen template has no face to fuse into.',
    cause: 'Upstream: the material has no face (legacy `ret` -8).'
  },
  FUSION_TEMPLATE_FACE_NOT_FOUND: {
    status: 404,
    message: 'The template has no face with that id: see GET /templates for its faces.',
    cause: 'Upstream: `template_face_id` names no face of the material, or it has none (API 3.0 `FailedOperation.TemplateFaceIDNotExist`).'
  },
  FUSION_INVALID_PARAMETER: {
    status: 400,
    message: 'The fusion service rejected a parameter: check project_id and model_id.',
    cause: 'Upstream parameter refusal (legacy `ret` -6, -1000; API 3.0 `*.ParameterValueError`).'
  },
  FUSION_TEMPLATE_NOT_FOUND: {
    status: 404,
    message: 'No such template (model_id) in this activity (project_id).',
    cause: 'Upstream: unknown material or activity (legacy `ret` -2102; API 3.0 `InvalidParameterValue.MaterialIdNotFound`, ' +
      '`ActivityIdNotFound`). The message says which: "No such activity (project_id)" when API 3.0 says the activity is unknown ' +
      '(on `POST /fuse` and `GET /templates` alike), else the template (model_id); the legacy `ret` does not tell them apart.'
  },
  FUSION_TEMPLATE_FORBIDDEN: {
    status: 403,
    message: 'This account may not use that activity or template.',
    cause: 'Upstream: activity or material not usable by this account (legacy `ret` -2103; API 3.0 ' +
      '`FailedOperation.FuseMaterialNotAuth`, `ProjectNotAuth`).'
  },
  FUSION_PROJECT_REQUIRES_API3: {
    status: 400,
    message: 'This activity was created after December 2018 and is not served by the legacy API.',
    cause: 'Legacy `ret` -20013: the operator must set `FUSION_PROVIDER=v3`.'
  },
  FUSION_RATE_LIMITED: {
    status: 429,
    log: 'warn',
    transient: true,
    message: 'Too many fusion requests right now: retry after the delay in Retry-After.',
    cause: 'Upstream frequency control (legacy `ret` -2011…-2015, -20004; API 3.0 `RequestLimitExceeded*`, ' +
      '`FailedOperation.FuseFreqCtrl`). Carries `Retry-After`.'
  },
  FUSION_UPSTREAM_AUTH_FAILED: {
    status: 502,
    log: 'error',
    transient: true,
    message: 'The fusion service rejected the gateway\'s credentials.',
    cause: 'Upstream refused our credentials or signature (legacy `ret` -1, -7, -20001…-20003; API 3.0 `AuthFailure.*`): an operator ' +
      'problem, logged as an error.'
  },
  FUSION_UPSTREAM_ACCOUNT_SUSPENDED: {
    status: 503,
    log: 'error',
    transient: true,
    message: 'The fusion service account is suspended.',
    cause: 'Upstream account state (legacy `ret` -9; API 3.0 `ResourceUnavailable.*`, `FailedOperation.BalanceInsufficient`, ' +
      '`LimitExceeded`, a quota rather than a rate).'
  },
  FUSION_UPSTREAM_FAILED: {
    status: 502,
    log: 'warn',
    transient: true,
    message: 'The fusion service failed; a retry may succeed.',
    cause: 'Transient upstream faults (legacy `ret` -5, -1002…-1007, -20005; API 3.0 `InternalError`, `FailedOperation.InnerError`, ' +
      '`RpcFail` and kin).'
  },
  FUSION_UPSTREAM_REJECTED_REQUEST: {
    status: 502,
    log: 'error',
    transient: true,
    message: 'The fusion service rejected the gateway\'s request.',
    cause: 'A request the gateway built wrong, or a setting the upstream refuses (legacy `ret` -1009, -2100, -20006…-20012; API 3.0 ' +
      '`InvalidAction`, `NoSuchVersion`, `UnsupportedRegion`, `MissingParameter` and kin).'
  },
  FUSION_UPSTREAM_UNKNOWN_CODE: {
    status: 502,
    log: 'warn',
    transient: true,
    message: 'The fusion service answered with an unknown code.',
    cause: 'An upstream `ret` or `Error.Code` that is not in the tables.'
  },
  FUSION_UPSTREAM_BAD_RESPONSE: {
    status: 502,
    log: 'warn',
    transient: true,
    message: 'The fusion service sent an answer the gateway cannot read.',
    cause: 'Not JSON, no `ret` or `Response`, no result image, an HTML error page, an answer that is not HTTP at all, or one over ' +
      '`UPSTREAM_MAX_RESPONSE_BYTES`.'
  },
  FUSION_UPSTREAM_UNAVAILABLE: {
    status: 503,
    transient: true,
    message: 'The fusion service is failing; the gateway is not calling it for now. Retry after the delay in Retry-After.',
    cause: 'The circuit breaker is open after too many upstream failures (`UPSTREAM_BREAKER_*`), or probing the upstream one call at a ' +
      'time. Carries `Retry-After`.'
  },
  FUSION_UPSTREAM_UNREACHABLE: {
    status: 502,
    log: 'warn',
    transient: true,
    message: 'The fusion service cannot be reached.',
    cause: 'Connection refused, reset or DNS failure.'
  },
  FUSION_UPSTREAM_TIMEOUT: {
    status: 504,
    log: 'warn',
    transient: true,
    message: 'The fusion service did not answer in time.',
    cause: 'No complete answer within `UPSTREAM_TIMEOUT_MS` (or no connection within `UPSTREAM_CONNECT_TIMEOUT_MS`).'
  },
  FUSION_INTERNAL_ERROR: {
    status: 500,
    log: 'error',
    transient: true,
    message: 'Internal error.',
    cause: 'A fault in the gateway itself; details are logged, never returned.'
  }
} as const satisfies Record<string, { status: number, transient?: true, log?: 'warn' | 'error', message: string, cause: string }>

export type ErrorCode = keyof typeof ERROR_CATALOGUE

export type LogLevel = 'info' | 'warn' | 'error'

/** The level an answer with this code is logged at (see `log` above). */
export function logLevelOf (code: ErrorCode): LogLevel {
  const entry = ERROR_CATALOGUE[code]
  return 'log' in entry ? entry.log : 'info'
}

export interface FusionErrorDetails {
  /** A more specific public message than the catalogue's. Only used for 4xx. */
  message?: string
  /** The upstream's own code, as a string, when the error mirrors one. */
  upstreamCode?: string
  /** Seconds the client should wait before retrying (sets `Retry-After`). */
  retryAfterSeconds?: number
  /** The image format seen in the bytes, for format refusals. */
  format?: string
  /** The same request may be sent again safely: nothing was billed, nothing may have been fused. */
  retryable?: boolean
  cause?: unknown
}

const constructors = Object.fromEntries(
  Object.entries(ERROR_CATALOGUE).map(([code, entry]) => [code, createError(code, '%s', entry.status)])
) as Record<ErrorCode, ReturnType<typeof createError>>

export interface FusionError extends Error {
  code: ErrorCode
  statusCode: number
  upstreamCode?: string
  retryAfterSeconds?: number
  format?: string
  retryable?: boolean
  /** A timeout that the request's own deadline caused. */
  byDeadline?: boolean
}

export function fusionError (code: ErrorCode, details: FusionErrorDetails = {}): FusionError {
  const entry = ERROR_CATALOGUE[code]
  const message = details.message !== undefined && entry.status < 500 ? details.message : entry.message
  const error = new constructors[code](message) as FusionError
  if (details.cause !== undefined) error.cause = details.cause
  if (details.upstreamCode !== undefined) error.upstreamCode = details.upstreamCode
  if (details.retryAfterSeconds !== undefined) error.retryAfterSeconds = details.retryAfterSeconds
  if (details.format !== undefined) error.format = details.format
  if (details.retryable === true) error.retryable = true
  return error
}

/** What went wrong, in a word for a log line, whatever was thrown. */
export function messageOf (error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

export function isFusionError (error: unknown): error is FusionError {
  return error instanceof Error && typeof (error as { code?: unknown }).code === 'string' &&
    Object.hasOwn(ERROR_CATALOGUE, (error as unknown as { code: string }).code)
}

/** The body of an error answer, the same for a request and for a job. */
export interface ErrorAnswer {
  statusCode: number
  code: ErrorCode
  error: string
  message: string
  upstreamCode?: string
  format?: string
  requestId: string
}

export function errorAnswer (error: FusionError, requestId: string): ErrorAnswer {
  return {
    statusCode: error.statusCode,
    code: error.code,
    error: STATUS_CODES[error.statusCode] ?? 'Client Closed Request',
    message: error.message,
    ...(error.upstreamCode !== undefined ? { upstreamCode: error.upstreamCode } : {}),
    ...(error.format !== undefined ? { format: error.format } : {}),
    requestId
  }
}

/** Whether the same request, sent again, gets the same answer (a success is final too). */
export function isFinalAnswer (code: ErrorCode | undefined): boolean {
  if (code === undefined) return true
  return !('transient' in ERROR_CATALOGUE[code])
}
