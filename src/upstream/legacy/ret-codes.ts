import { rule, type UpstreamCodeRule } from '../code-rules.js'

/**
 * The legacy API's `ret` codes, every one documented since 2018 (see
 * the face-fusion API document's error tables), and what each means for our client.
 */
export const LEGACY_RET_CODES: ReadonlyMap<number, UpstreamCodeRule> = new Map<number, UpstreamCodeRule>([
  [1000, rule('FUSION_NO_FACE', 'no face in the photo', false, true)],
  [-1, rule('FUSION_UPSTREAM_AUTH_FAILED', 'illegal user identity (appid/uin do not match the key)')],
  [-3, rule('FUSION_IMAGE_TOO_LARGE', 'image too large')],
  [-4, rule('FUSION_FACE_DETECTION_FAILED', 'face recognition error')],
  [-5, rule('FUSION_UPSTREAM_FAILED', 'platform internal error', true)],
  [-6, rule('FUSION_INVALID_PARAMETER', 'required field or value wrong')],
  [-7, rule('FUSION_UPSTREAM_AUTH_FAILED', 'signature expired', true)],
  [-8, rule('FUSION_TEMPLATE_NO_FACE', 'template has no face')],
  [-9, rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'account in arrears')],
  [-1000, rule('FUSION_INVALID_PARAMETER', 'required field or value wrong')],
  [-1001, rule('FUSION_IMAGE_REJECTED', 'image processing error')],
  [-1002, rule('FUSION_UPSTREAM_FAILED', 'CKV read/write error', true)],
  [-1003, rule('FUSION_UPSTREAM_FAILED', 'Redis read/write error', true)],
  [-1004, rule('FUSION_UPSTREAM_FAILED', 'saving the result image failed', true)],
  [-1005, rule('FUSION_UPSTREAM_FAILED', 'downloading the user image failed', true)],
  [-1007, rule('FUSION_UPSTREAM_FAILED', 'server internal logic error', true)],
  [-1008, rule('FUSION_FACE_DETECTION_FAILED', 'face detection failed', false, true)],
  [-1009, rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'request is not valid JSON')],
  [-2011, rule('FUSION_RATE_LIMITED', 'access frequency over limit', true)],
  [-2012, rule('FUSION_RATE_LIMITED', 'access frequency over limit', true)],
  [-2013, rule('FUSION_RATE_LIMITED', 'access frequency over limit', true)],
  [-2014, rule('FUSION_RATE_LIMITED', 'access frequency over limit', true)],
  [-2015, rule('FUSION_RATE_LIMITED', 'access frequency over limit', true)],
  [-2100, rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'HTTP header error')],
  [-2102, rule('FUSION_TEMPLATE_NOT_FOUND', 'image operation (template) does not exist')],
  [-2103, rule('FUSION_TEMPLATE_FORBIDDEN', 'image operation (template) not permitted')],
  [-20001, rule('FUSION_UPSTREAM_AUTH_FAILED', 'Authorization empty')],
  [-20002, rule('FUSION_UPSTREAM_AUTH_FAILED', 'Authorization could not be parsed')],
  [-20003, rule('FUSION_UPSTREAM_AUTH_FAILED', 'authentication failed')],
  [-20004, rule('FUSION_RATE_LIMITED', 'too frequent, frequency control', true)],
  [-20005, rule('FUSION_UPSTREAM_FAILED', 'backend service fault', true)],
  [-20006, rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'body is not JSON')],
  [-20007, rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'model_id empty')],
  [-20008, rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'project_id empty')],
  [-20009, rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'image data empty')],
  [-20010, rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'rsp_img_type empty')],
  [-20011, rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'appid empty')],
  [-20012, rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'uin empty')],
  [-20013, rule('FUSION_PROJECT_REQUIRES_API3', 'domain invalid: activity created after 2018-12-01, use API 3.0')]
])

export const UNKNOWN_RET_CODE: UpstreamCodeRule = rule('FUSION_UPSTREAM_UNKNOWN_CODE', 'not a documented code')

/**
 * `ret` arrives as a number or a numeric string ("0" and 0 are both success).
 * Returns undefined for anything else.
 */
export function parseRet (value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value)) return value
  if (typeof value === 'string' && /^\s*-?\d{1,9}\s*$/.test(value)) return Number.parseInt(value, 10)
  return undefined
}
