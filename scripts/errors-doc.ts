/**
 * Renders docs/errors.md from the error catalogue and the upstream code table,
 * so the document cannot drift from the code (a test compares them).
 * `npm run docs:errors` rewrites the file.
 */
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { ERROR_CATALOGUE, logLevelOf, type ErrorCode } from '../src/errors.js'
import { LEGACY_RET_CODES } from '../src/upstream/legacy/ret-codes.js'
import { V3_ERROR_CODES } from '../src/upstream/v3/error-codes.js'

const cell = (text: string): string => text.replace(/\|/g, '\\|')

export function renderErrorsDoc (): string {
  const lines: string[] = []
  lines.push('# Errors', '')
  lines.push('Every error answer has the same JSON shape (Fastify\'s, plus what a client needs):', '')
  lines.push('```json')
  lines.push('{ "statusCode": 429, "code": "FUSION_RATE_LIMITED", "error": "Too Many Requests",')
  lines.push('  "message": "Too many fusion requests right now: retry after the delay in Retry-After.",')
  lines.push('  "upstreamCode": "-2012", "requestId": "3f0c…" }')
  lines.push('```', '')
  lines.push('- `code` is the contract: switch on it, not on the message. Codes are never reused.')
  lines.push('- `upstreamCode` is present when the answer mirrors an upstream code: a legacy `ret` such as `"-2012"`, or an')
  lines.push('  API 3.0 `Error.Code` such as `"FailedOperation.NoFaceDetected"`. The `code` does not depend on the provider.')
  lines.push('- `format` is present on image-format refusals and names what the bytes were: `gif`, `svg`, `tiff`, `pdf`, `bmp`,')
  lines.push('  `ico`, `psd`, `jxl`, `jp2`, `heic`, `webp`/`avif` (animated), or `unknown`. The declared type and file name are never used.')
  lines.push('- `requestId` is also in the `x-request-id` header of every answer; quote it in support requests.')
  lines.push('- `429`, `409` and the `503`s carry `Retry-After` in seconds.')
  lines.push('- A replayed answer (`Idempotent-Replayed: true`) is the first answer byte for byte, so its `requestId` is the')
  lines.push('  first request\'s; the `x-request-id` header names the replay.')
  lines.push('- A `5xx` message is always the generic one below; details go to the logs only.', '')
  lines.push('## Codes', '')
  lines.push('| code | HTTP | message | cause |')
  lines.push('| --- | --- | --- | --- |')
  for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
    lines.push(`| \`${code}\` | ${entry.status} | ${cell(entry.message)} | ${cell(entry.cause)} |`)
  }
  lines.push('')
  lines.push('`FUSION_CLIENT_CLOSED_REQUEST` (499) is never seen by a client: it is how a request whose client went away is logged.', '')
  const logged = (level: string): string => Object.keys(ERROR_CATALOGUE)
    .filter((code) => logLevelOf(code as ErrorCode) === level).map((code) => `\`${code}\``).join(', ')
  lines.push('Each answer is logged once (`"msg": "request refused"` or `"request failed"`, with `code`, `statusCode` and')
  lines.push('`upstreamCode`), at the level of whose fault it is:', '')
  lines.push(`- \`error\`, for what one of us must fix (our code, our credentials, our account): ${logged('error')}. Only`)
  lines.push('  `FUSION_INTERNAL_ERROR` carries a stack.')
  lines.push(`- \`warn\`, for an upstream failing or refusing our calls, with the cause (a socket error's code, an HTTP status): ${logged('warn')}.`)
  lines.push('- `info`, every other code: the client\'s own doing, or a protection (shedding, limits, the upstream budget, the')
  lines.push('  breaker, a shutdown) doing its job.', '')
  lines.push('## Legacy upstream `ret` codes', '')
  lines.push('How each documented `ret` of `POST /fuseapi/face` is answered. "Retry" says whether the same request may')
  lines.push('succeed later; "billed" whether the upstream counts the failed call against the quota. Any other `ret` is')
  lines.push('`FUSION_UPSTREAM_UNKNOWN_CODE` (502).', '')
  lines.push('| ret | upstream meaning | code | HTTP | retry | billed |')
  lines.push('| --- | --- | --- | --- | --- | --- |')
  const sorted = [...LEGACY_RET_CODES].sort(([a], [b]) => (a === 1000 ? -1 : b === 1000 ? 1 : b - a))
  for (const [ret, rule] of sorted) {
    const status = ERROR_CATALOGUE[rule.code as ErrorCode].status
    lines.push(`| ${ret} | ${cell(rule.meaning)} | \`${rule.code}\` | ${status} | ${rule.retryable ? 'yes' : 'no'} | ${rule.billed ? 'yes' : 'no'} |`)
  }
  lines.push('')
  lines.push('## API 3.0 `Response.Error.Code`s', '')
  lines.push('How each `Response.Error.Code` of FaceFusion, FuseFace and DescribeMaterialList (versions 2018-12-01 and')
  lines.push('2022-09-27, and the common API 3.0 codes) is answered. API 3.0 answers errors with HTTP 200, so the code is all')
  lines.push('there is to go by. A code outside the table is judged by its family (`AuthFailure.*` → `FUSION_UPSTREAM_AUTH_FAILED`,')
  lines.push('`RequestLimitExceeded.*` → `FUSION_RATE_LIMITED`, `ResourceUnavailable.*` → `FUSION_UPSTREAM_ACCOUNT_SUSPENDED`,')
  lines.push('`InternalError.*` → `FUSION_UPSTREAM_FAILED`); anything else is `FUSION_UPSTREAM_UNKNOWN_CODE` (502).')
  lines.push('`AuthFailure.SignatureExpire` (our clock more than five minutes off) is signed again once, with the clock')
  lines.push('offset the upstream\'s `Date` header shows, before it is answered as below. Whether a failed API 3.0 call is')
  lines.push('billed is not documented, so only the codes Tencent calls transient are retried.', '')
  lines.push('| Error.Code | upstream meaning | code | HTTP | retry |')
  lines.push('| --- | --- | --- | --- | --- |')
  for (const [upstreamCode, rule] of V3_ERROR_CODES) {
    const status = ERROR_CATALOGUE[rule.code as ErrorCode].status
    lines.push(`| \`${upstreamCode}\` | ${cell(rule.meaning)} | \`${rule.code}\` | ${status} | ${rule.retryable ? 'yes' : 'no'} |`)
  }
  lines.push('')
  return lines.join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(new URL('../docs/errors.md', import.meta.url), renderErrorsDoc())
}
