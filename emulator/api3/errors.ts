import { forcedRet } from '../shared/forced.js'

/**
 * API 3.0 error codes the emulator knows, with the upstream's own wording:
 * the product codes of facefusion 2018-12-01 and 2022-09-27 (their messages as
 * the official SDKs document them) and the common codes of every API 3.0
 * product (Tencent's error centre for facefusion).
 */
const PRODUCT_MESSAGES: Record<string, string> = {
  FailedOperation: '操作失败。',
  'FailedOperation.ActivityStatusInvalid': '活动状态错误。',
  'FailedOperation.BalanceInsufficient': '余额不足，开通失败，请充值后再开通。',
  'FailedOperation.FaceBorderCheckFailed': '人脸配准点出框错误码。',
  'FailedOperation.FaceDetectFailed': '人脸检测失败。',
  'FailedOperation.FaceExceedBorder': '人脸出框，无法使用。',
  'FailedOperation.FaceFeatureFailed': '人脸提特征失败。',
  'FailedOperation.FaceFusionError': '人脸融合失败，请更换图片后重试。',
  'FailedOperation.FacePoseFailed': '人脸姿态检测失败。',
  'FailedOperation.FaceRectInvalid': '人脸框不合法。',
  'FailedOperation.FaceShapeFailed': '人脸配准失败。',
  'FailedOperation.FaceShapeInvalid': '人脸配准点不合法。',
  'FailedOperation.FaceSizeTooSmall': '人脸因太小被过滤，建议人脸分辨率不小于34*34。',
  'FailedOperation.FuseBackendServerFault': '人脸融合后端服务异常。',
  'FailedOperation.FuseDetectNoFace': '未检测到人脸。',
  'FailedOperation.FuseFreqCtrl': '操作太频繁，触发频控。',
  'FailedOperation.FuseImageError': '图像处理出错。',
  'FailedOperation.FuseInnerError': '服务内部错误，请重试。',
  'FailedOperation.FuseMaterialNotAuth': '素材未经过审核。',
  'FailedOperation.FuseMaterialNotExist': '素材不存在。',
  'FailedOperation.FuseSavePhotoFail': '保存结果图片出错。',
  'FailedOperation.ImageDecodeFailed': '人脸检测-图片解码失败。',
  'FailedOperation.ImageDownloadError': '图片下载失败。',
  'FailedOperation.ImagePixelExceed': '素材尺寸超过1080*1080像素。',
  'FailedOperation.ImageResolutionExceed': '图片分辨率过大。建议您resize压缩到3k*3k以内。',
  'FailedOperation.ImageResolutionTooSmall': '图片短边分辨率小于64。',
  'FailedOperation.ImageSizeExceed': '输入图片base64数据大小超过5M。',
  'FailedOperation.ImageSizeExceedFiveHundredKB': 'base64编码后的图片数据大小不超500k。',
  'FailedOperation.ImageSizeInvalid': '图片尺寸过大或者过小；不满足算法要求。',
  'FailedOperation.ImageUploadFailed': '图片上传失败。',
  'FailedOperation.InnerError': '服务内部错误。',
  'FailedOperation.MaterialValueExceed': '素材条数超过上限。',
  'FailedOperation.MediaDataError': '素材数据为空。',
  'FailedOperation.ModerationConfigError': '审核配置为空。',
  'FailedOperation.ModerationFailed': '素材审核失败。',
  'FailedOperation.ModerationResponseError': '素材审核结果为空。',
  'FailedOperation.ModerationResultConfigError': '审核结果配置为空。',
  'FailedOperation.NoFaceDetected': '无法检测出人脸, 人脸框配准分低于阈值。',
  'FailedOperation.ParameterValueError': '参数字段或者值有误。',
  'FailedOperation.ProjectNotAuth': '活动未支付授权费或已停用。',
  'FailedOperation.RequestEntityTooLarge': '请求实体太大。',
  'FailedOperation.RequestTimeout': '后端服务超时。',
  'FailedOperation.RpcFail': 'RPC请求失败，一般为算法微服务故障。',
  'FailedOperation.ServerError': '系统内部错误。',
  'FailedOperation.TemplateFaceIDNotExist': '素材人脸ID不存在。',
  'FailedOperation.UnKnowError': '内部错误。',
  'FailedOperation.Unknown': '未知错误。',
  'InvalidParameterValue.ActivityIdNotFound': '未查找到活动id。',
  'InvalidParameterValue.EngineValueError': '活动算法版本值错误。',
  'InvalidParameterValue.FaceRectParameterValueError': '人脸框参数有误或者人脸框太小。',
  'InvalidParameterValue.ImageEmpty': '人脸检测-图片为空。',
  'InvalidParameterValue.MaterialIdNotFound': '未查找到素材Id。',
  'InvalidParameterValue.NoFaceInPhoto': '人脸检测-图片没有人脸。',
  'InvalidParameterValue.ParameterValueError': '参数字段或者值有误。',
  'InvalidParameterValue.UrlIllegal': 'URL格式不合法。',
  ResourceInsufficient: '资源不足。',
  ResourceNotFound: '资源不存在。',
  'ResourceUnavailable.Delivering': '资源正在发货中。',
  'ResourceUnavailable.Freeze': '账号已被冻结。',
  'ResourceUnavailable.GetAuthInfoError': '获取认证信息失败。',
  'ResourceUnavailable.InArrears': '账号已欠费。',
  'ResourceUnavailable.IsOpening': '服务正在开通中，请稍等。',
  'ResourceUnavailable.LowBalance': '余额不足。',
  'ResourceUnavailable.NotExist': '计费状态未知，请确认是否已在控制台开通服务。',
  'ResourceUnavailable.NotReady': '服务未开通。',
  'ResourceUnavailable.Recover': '资源已被回收。',
  'ResourceUnavailable.StopUsing': '账号已停服。',
  'ResourceUnavailable.UnknownStatus': '计费状态未知。',
  'ResourcesSoldOut.ChargeStatusException': '账号已欠费。'
}

const COMMON_MESSAGES: Record<string, string> = {
  ActionOffline: '接口已下线。',
  'AuthFailure.InvalidAuthorization': '请求头部的 Authorization 不符合腾讯云标准。',
  'AuthFailure.InvalidSecretId': '密钥非法（不是云 API 密钥类型）。',
  'AuthFailure.MFAFailure': 'MFA 错误。',
  'AuthFailure.SecretIdNotFound': '密钥不存在。请检查密钥是否已被删除或者禁用，以及是否填写正确。',
  'AuthFailure.SignatureExpire': '签名过期。Timestamp 和服务器时间相差不得超过五分钟，请检查本地时间是否和标准时间同步。',
  'AuthFailure.SignatureFailure': '签名错误。签名计算错误，请对照调用方式中的签名方法文档检查签名计算过程。',
  'AuthFailure.TokenFailure': 'token 错误。',
  'AuthFailure.UnauthorizedOperation': '请求未授权。',
  DryRunOperation: 'DryRun 操作，代表请求将会是成功的，只是多传了 DryRun 参数。',
  InternalError: '内部错误。',
  InvalidAction: '接口不存在。',
  InvalidParameter: '参数错误（包括参数格式、类型等错误）。',
  InvalidParameterValue: '参数取值错误。',
  InvalidRequest: '请求 body 的格式错误。',
  IpInBlacklist: 'IP地址在黑名单中。',
  IpNotInWhitelist: 'IP地址不在白名单中。',
  LimitExceeded: '超过配额限制。',
  MissingParameter: '缺少参数错误。',
  NoSuchProduct: '产品不存在。',
  NoSuchVersion: '接口版本不存在。',
  RequestLimitExceeded: '请求的次数超过了频率限制。',
  'RequestLimitExceeded.GlobalRegionUinLimitExceeded': '主账号超过频率限制。',
  'RequestLimitExceeded.IPLimitExceeded': 'IP限频。',
  'RequestLimitExceeded.UinLimitExceeded': '主账号限频。',
  RequestSizeLimitExceeded: '请求包超过限制大小。',
  ResourceInUse: '资源被占用。',
  ResourceUnavailable: '资源不可用。',
  ResponseSizeLimitExceeded: '返回包超过限制大小。',
  ServiceUnavailable: '当前服务暂时不可用。',
  UnauthorizedOperation: '未授权操作。',
  UnknownParameter: '未知参数错误，用户多传未定义的参数会导致错误。',
  UnsupportedOperation: '操作不支持。',
  UnsupportedProtocol: 'http(s) 请求协议错误，只支持 GET 和 POST 请求。',
  UnsupportedRegion: '接口不支持所传地域。'
}

export const V3_ERROR_MESSAGES: Readonly<Record<string, string>> = { ...COMMON_MESSAGES, ...PRODUCT_MESSAGES }

export const DOCUMENTED_V3_ERROR_CODES: readonly string[] = Object.keys(V3_ERROR_MESSAGES)

/** A refusal in API 3.0 terms; thrown by the checks and written as Response.Error. */
export class Api3Failure extends Error {
  constructor (readonly code: string, detail?: string) {
    super(detail ?? V3_ERROR_MESSAGES[code] ?? code)
    this.name = 'Api3Failure'
  }
}

/**
 * The API 3.0 code closest to each legacy `ret` the legacy side documents,
 * for the ModelId `emulator_ret_<ret>`. `null`: no API 3.0 equivalent (success,
 * and -20013, which only the legacy domain says), so the request is answered
 * normally.
 */
export const LEGACY_RET_TO_V3: ReadonlyMap<number, string | null> = new Map<number, string | null>([
  [0, null],
  [1000, 'FailedOperation.NoFaceDetected'],
  [-1, 'AuthFailure.UnauthorizedOperation'],
  [-3, 'FailedOperation.ImageSizeExceed'],
  [-4, 'FailedOperation.FaceDetectFailed'],
  [-5, 'FailedOperation.InnerError'],
  [-6, 'FailedOperation.ParameterValueError'],
  [-7, 'AuthFailure.SignatureExpire'],
  [-8, 'FailedOperation.TemplateFaceIDNotExist'],
  [-9, 'ResourceUnavailable.InArrears'],
  [-1000, 'FailedOperation.ParameterValueError'],
  [-1001, 'FailedOperation.FuseImageError'],
  [-1002, 'FailedOperation.InnerError'],
  [-1003, 'FailedOperation.InnerError'],
  [-1004, 'FailedOperation.FuseSavePhotoFail'],
  [-1005, 'FailedOperation.ImageDownloadError'],
  [-1007, 'FailedOperation.ServerError'],
  [-1008, 'FailedOperation.FaceDetectFailed'],
  [-1009, 'InvalidParameter'],
  [-2011, 'RequestLimitExceeded'],
  [-2012, 'RequestLimitExceeded'],
  [-2013, 'RequestLimitExceeded'],
  [-2014, 'RequestLimitExceeded'],
  [-2015, 'RequestLimitExceeded'],
  [-2100, 'InvalidRequest'],
  [-2102, 'InvalidParameterValue.MaterialIdNotFound'],
  [-2103, 'FailedOperation.FuseMaterialNotAuth'],
  [-20001, 'AuthFailure.InvalidAuthorization'],
  [-20002, 'AuthFailure.InvalidAuthorization'],
  [-20003, 'AuthFailure.SignatureFailure'],
  [-20004, 'RequestLimitExceeded'],
  [-20005, 'FailedOperation.FuseBackendServerFault'],
  [-20006, 'InvalidParameter'],
  [-20007, 'MissingParameter'],
  [-20008, 'MissingParameter'],
  [-20009, 'InvalidParameterValue.ImageEmpty'],
  [-20010, 'MissingParameter'],
  [-20011, 'MissingParameter'],
  [-20012, 'MissingParameter'],
  [-20013, null]
])

/** For a `ret` the legacy side does not document. */
const UNDOCUMENTED_RET_V3_CODE = 'FailedOperation.UnKnowError'

const FORCED_ERROR = /^emulator_error_([A-Za-z]+(?:-[A-Za-z]+)*)$/

/**
 * What a fault-injection id asks for: a code to answer, `'normal'` to answer
 * as if nothing were forced, or undefined when the id forces nothing.
 */
export function forcedCode (id: string): string | 'normal' | undefined {
  const error = FORCED_ERROR.exec(id)
  if (error !== null) return error[1]!.replaceAll('-', '.')
  const ret = forcedRet(id)
  if (ret === undefined) return undefined
  const code = LEGACY_RET_TO_V3.get(ret)
  if (code === null) return 'normal'
  return code ?? UNDOCUMENTED_RET_V3_CODE
}
