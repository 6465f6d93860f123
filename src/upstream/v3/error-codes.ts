import { NO_SUCH_ACTIVITY, rule, type UpstreamCodeRule } from '../code-rules.js'

/**
 * API 3.0's `Response.Error.Code`s for facefusion (2018-12-01 and 2022-09-27,
 * as Tencent's error centre lists them) and the common API 3.0 codes, and what
 * each means for our client. One table for both versions: a code means the
 * same in each. Whether a failed call is billed is not documented for API 3.0, so no
 * rule claims it; retries are limited to the codes Tencent calls transient.
 */
export const V3_ERROR_CODES: ReadonlyMap<string, UpstreamCodeRule> = new Map<string, UpstreamCodeRule>([
  // No face, or a face that cannot be used.
  ['FailedOperation.FaceDetectFailed', rule('FUSION_NO_FACE', 'face detection failed')],
  ['FailedOperation.FuseDetectNoFace', rule('FUSION_NO_FACE', 'no face detected')],
  ['FailedOperation.NoFaceDetected', rule('FUSION_NO_FACE', 'no face detected')],
  ['InvalidParameterValue.NoFaceInPhoto', rule('FUSION_NO_FACE', 'no face in the photo')],
  ['FailedOperation.FaceSizeTooSmall', rule('FUSION_FACE_TOO_SMALL', 'face smaller than 34×34')],
  ['FailedOperation.FaceBorderCheckFailed', rule('FUSION_FACE_DETECTION_FAILED', 'face landmarks outside the image')],
  ['FailedOperation.FaceExceedBorder', rule('FUSION_FACE_DETECTION_FAILED', 'face outside the image')],
  ['FailedOperation.FaceFeatureFailed', rule('FUSION_FACE_DETECTION_FAILED', 'facial features could not be analysed')],
  ['FailedOperation.FacePoseFailed', rule('FUSION_FACE_DETECTION_FAILED', 'face pose not usable')],
  ['FailedOperation.FaceShapeFailed', rule('FUSION_FACE_DETECTION_FAILED', 'face shape could not be analysed')],
  ['FailedOperation.FaceShapeInvalid', rule('FUSION_FACE_DETECTION_FAILED', 'face shape not usable')],
  ['FailedOperation.FaceRectInvalid', rule('FUSION_FACE_DETECTION_FAILED', 'face rectangle not usable')],

  // The photo itself.
  ['FailedOperation.FaceFusionError', rule('FUSION_IMAGE_REJECTED', 'fusion failed; another photo may work')],
  ['FailedOperation.FuseImageError', rule('FUSION_IMAGE_REJECTED', 'image processing error')],
  ['FailedOperation.ImageDecodeFailed', rule('FUSION_IMAGE_REJECTED', 'image could not be decoded')],
  ['FailedOperation.MediaDataError', rule('FUSION_IMAGE_REJECTED', 'media data error')],
  ['FailedOperation.ModerationFailed', rule('FUSION_IMAGE_REJECTED', 'content moderation refused the image')],
  ['FailedOperation.ImagePixelExceed', rule('FUSION_IMAGE_TOO_LARGE', 'image over the pixel limit')],
  ['FailedOperation.ImageResolutionExceed', rule('FUSION_IMAGE_TOO_LARGE', 'image resolution too large')],
  ['FailedOperation.ImageSizeExceed', rule('FUSION_IMAGE_TOO_LARGE', 'base64 over 5 MB')],
  ['FailedOperation.ImageSizeExceedFiveHundredKB', rule('FUSION_IMAGE_TOO_LARGE', 'base64 over 500 KB')],
  ['FailedOperation.ImageSizeInvalid', rule('FUSION_IMAGE_TOO_LARGE', 'image size out of range')],
  ['FailedOperation.RequestEntityTooLarge', rule('FUSION_IMAGE_TOO_LARGE', 'request entity too large')],
  ['RequestSizeLimitExceeded', rule('FUSION_IMAGE_TOO_LARGE', 'request over the size limit')],
  ['FailedOperation.ImageResolutionTooSmall', rule('FUSION_IMAGE_TOO_SMALL', 'short side under 64 px')],

  // Activity and material.
  // The same code as an unknown material (a client switches on "not found"), but the message says it is the activity.
  ['InvalidParameterValue.ActivityIdNotFound', { ...rule('FUSION_TEMPLATE_NOT_FOUND', 'no such activity'), message: NO_SUCH_ACTIVITY }],
  ['InvalidParameterValue.MaterialIdNotFound', rule('FUSION_TEMPLATE_NOT_FOUND', 'no such material')],
  ['FailedOperation.FuseMaterialNotExist', rule('FUSION_TEMPLATE_NOT_FOUND', 'material does not exist')],
  ['ResourceNotFound', rule('FUSION_TEMPLATE_NOT_FOUND', 'resource not found')],
  ['FailedOperation.TemplateFaceIDNotExist', rule('FUSION_TEMPLATE_FACE_NOT_FOUND', 'no such face in the template')],
  ['FailedOperation.FuseMaterialNotAuth', rule('FUSION_TEMPLATE_FORBIDDEN', 'material not approved')],
  ['FailedOperation.ActivityStatusInvalid', rule('FUSION_TEMPLATE_FORBIDDEN', 'activity not in a usable state')],
  ['FailedOperation.ProjectNotAuth', rule('FUSION_TEMPLATE_FORBIDDEN', 'activity not licensed, or its free calls used up')],
  ['FailedOperation.MaterialValueExceed', rule('FUSION_TEMPLATE_FORBIDDEN', 'material count over the licence')],
  ['FailedOperation.ParameterValueError', rule('FUSION_INVALID_PARAMETER', 'parameter value error')],
  ['InvalidParameterValue.ParameterValueError', rule('FUSION_INVALID_PARAMETER', 'parameter value error')],

  // Frequency control.
  ['FailedOperation.FuseFreqCtrl', rule('FUSION_RATE_LIMITED', 'too frequent', true)],
  ['RequestLimitExceeded', rule('FUSION_RATE_LIMITED', 'over the frequency limit', true)],
  ['RequestLimitExceeded.GlobalRegionUinLimitExceeded', rule('FUSION_RATE_LIMITED', 'account over its global frequency limit', true)],
  ['RequestLimitExceeded.IPLimitExceeded', rule('FUSION_RATE_LIMITED', 'IP over its frequency limit', true)],
  ['RequestLimitExceeded.UinLimitExceeded', rule('FUSION_RATE_LIMITED', 'account over its frequency limit', true)],

  // Our credentials or signature: an operator problem.
  ['AuthFailure.InvalidAuthorization', rule('FUSION_UPSTREAM_AUTH_FAILED', 'Authorization header malformed')],
  ['AuthFailure.InvalidSecretId', rule('FUSION_UPSTREAM_AUTH_FAILED', 'SecretId malformed')],
  ['AuthFailure.MFAFailure', rule('FUSION_UPSTREAM_AUTH_FAILED', 'MFA failed')],
  ['AuthFailure.SecretIdNotFound', rule('FUSION_UPSTREAM_AUTH_FAILED', 'SecretId unknown or disabled')],
  ['AuthFailure.SignatureExpire', rule(
    'FUSION_UPSTREAM_AUTH_FAILED', 'timestamp more than 5 minutes off (re-signed on the server\'s clock, as a retry)', true
  )],
  ['AuthFailure.SignatureFailure', rule('FUSION_UPSTREAM_AUTH_FAILED', 'signature does not match')],
  ['AuthFailure.TokenFailure', rule('FUSION_UPSTREAM_AUTH_FAILED', 'session token invalid or expired')],
  ['AuthFailure.UnauthorizedOperation', rule('FUSION_UPSTREAM_AUTH_FAILED', 'the key may not call this action (CAM)')],
  ['UnauthorizedOperation', rule('FUSION_UPSTREAM_AUTH_FAILED', 'operation not authorised')],
  ['IpInBlacklist', rule('FUSION_UPSTREAM_AUTH_FAILED', 'caller IP blacklisted')],
  ['IpNotInWhitelist', rule('FUSION_UPSTREAM_AUTH_FAILED', 'caller IP not whitelisted')],

  // The account.
  ['FailedOperation.BalanceInsufficient', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'balance insufficient')],
  ['ResourceUnavailable.Delivering', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'service still being provisioned')],
  ['ResourceUnavailable.IsOpening', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'service still being opened')],
  ['ResourceUnavailable.Freeze', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'account frozen')],
  ['ResourceUnavailable.GetAuthInfoError', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'account authorisation lookup failed')],
  ['ResourceUnavailable.InArrears', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'account in arrears')],
  ['ResourceUnavailable.LowBalance', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'balance too low')],
  ['ResourceUnavailable.NotExist', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'service not opened')],
  ['ResourceUnavailable.NotReady', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'service not ready')],
  ['ResourceUnavailable.Recover', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'service being recovered')],
  ['ResourceUnavailable.StopUsing', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'service stopped')],
  ['ResourceUnavailable.UnknownStatus', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'service in an unknown state')],
  ['ResourcesSoldOut.ChargeStatusException', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'billing state abnormal')],
  ['ResourceUnavailable', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'service unavailable to the account')],
  ['ResourceInsufficient', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'resource insufficient')],
  // A quota (calls, materials), not a per-second rate: pausing every replica would not help.
  ['LimitExceeded', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'quota limit exceeded')],

  // Transient faults of the upstream.
  ['FailedOperation.FuseBackendServerFault', rule('FUSION_UPSTREAM_FAILED', 'backend fault', true)],
  ['FailedOperation.FuseInnerError', rule('FUSION_UPSTREAM_FAILED', 'internal error, please retry', true)],
  ['FailedOperation.FuseSavePhotoFail', rule('FUSION_UPSTREAM_FAILED', 'saving the result failed', true)],
  ['FailedOperation.ImageUploadFailed', rule('FUSION_UPSTREAM_FAILED', 'uploading the result failed', true)],
  ['FailedOperation.InnerError', rule('FUSION_UPSTREAM_FAILED', 'internal error', true)],
  ['FailedOperation.ServerError', rule('FUSION_UPSTREAM_FAILED', 'server error', true)],
  ['FailedOperation.UnKnowError', rule('FUSION_UPSTREAM_FAILED', 'unknown internal error', true)],
  ['FailedOperation.Unknown', rule('FUSION_UPSTREAM_FAILED', 'unknown internal error', true)],
  ['FailedOperation.RequestTimeout', rule('FUSION_UPSTREAM_FAILED', 'backend timeout', true)],
  ['FailedOperation.RpcFail', rule('FUSION_UPSTREAM_FAILED', 'algorithm service RPC failed', true)],
  ['InternalError', rule('FUSION_UPSTREAM_FAILED', 'internal error', true)],
  ['ServiceUnavailable', rule('FUSION_UPSTREAM_FAILED', 'service unavailable', true)],
  ['FailedOperation', rule('FUSION_UPSTREAM_FAILED', 'operation failed')],
  // The gateway never sends URLs; a download failure is the upstream's own.
  ['FailedOperation.ImageDownloadError', rule('FUSION_UPSTREAM_FAILED', 'image download failed')],

  // A request the gateway built wrong, or a deployment setting the upstream refuses.
  ['FailedOperation.ModerationConfigError', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'moderation not configured')],
  ['FailedOperation.ModerationResponseError', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'moderation answer unusable')],
  ['FailedOperation.ModerationResultConfigError', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'moderation result not configured')],
  ['InvalidParameterValue.EngineValueError', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'engine value error')],
  ['InvalidParameterValue.FaceRectParameterValueError', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'face rectangle parameter error')],
  ['InvalidParameterValue.ImageEmpty', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'image empty')],
  ['InvalidParameterValue.UrlIllegal', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'URL illegal')],
  ['ActionOffline', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'action taken offline')],
  ['InvalidAction', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'no such action (FUSION_V3_ACTION)')],
  ['NoSuchProduct', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'no such product')],
  ['NoSuchVersion', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'no such version (FUSION_V3_VERSION)')],
  ['UnsupportedRegion', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'region not served (TENCENT_REGION)')],
  ['UnsupportedOperation', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'operation not supported')],
  ['UnsupportedProtocol', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'protocol not supported')],
  ['InvalidRequest', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'request body malformed')],
  ['InvalidParameter', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'parameter malformed')],
  ['InvalidParameterValue', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'parameter value wrong')],
  ['MissingParameter', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'parameter missing')],
  ['UnknownParameter', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'parameter unknown')],
  ['DryRunOperation', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'dry run only')],
  ['ResourceInUse', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'resource in use')],
  ['ResponseSizeLimitExceeded', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'answer over the size limit')]
])

/**
 * Codes outside the table are judged by their family (the part before the first
 * dot), so a new sub-code of a known kind keeps its meaning; anything else is unknown.
 */
const FAMILIES: ReadonlyMap<string, UpstreamCodeRule> = new Map<string, UpstreamCodeRule>([
  ['AuthFailure', rule('FUSION_UPSTREAM_AUTH_FAILED', 'authentication failed')],
  ['RequestLimitExceeded', rule('FUSION_RATE_LIMITED', 'over the frequency limit', true)],
  ['ResourceUnavailable', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'service unavailable to the account')],
  ['InternalError', rule('FUSION_UPSTREAM_FAILED', 'internal error', true)],
  ['LimitExceeded', rule('FUSION_UPSTREAM_ACCOUNT_SUSPENDED', 'quota limit exceeded')],
  ['UnauthorizedOperation', rule('FUSION_UPSTREAM_AUTH_FAILED', 'operation not authorised')],
  ['InvalidParameter', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'parameter malformed')],
  ['InvalidParameterValue', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'parameter value wrong')],
  ['MissingParameter', rule('FUSION_UPSTREAM_REJECTED_REQUEST', 'parameter missing')]
])

const UNKNOWN_V3_CODE: UpstreamCodeRule = rule('FUSION_UPSTREAM_UNKNOWN_CODE', 'not a documented code')

export function ruleForV3Code (code: string): UpstreamCodeRule {
  return V3_ERROR_CODES.get(code) ?? FAMILIES.get(code.split('.')[0] ?? '') ?? UNKNOWN_V3_CODE
}

export const SIGNATURE_EXPIRED = 'AuthFailure.SignatureExpire'
