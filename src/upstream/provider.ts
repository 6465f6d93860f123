/**
 * What the routes need from an upstream API. The legacy API and API 3.0
 * (FaceFusion / FuseFace) implement the same shape, so front-ends see one
 * contract whichever is configured.
 */
export type ResultType = 'url' | 'base64'

/** Choices a front-end may make where the upstream action supports them (FuseFace). */
export interface FusionOptions {
  /** Face shape taken from the photo, 0–100 (FuseProfileDegree). */
  profileDegree?: number
  /** Facial features taken from the photo, 0–100 (FuseFaceDegree). */
  faceDegree?: number
  /** The upstream's "AI-generated" mark on the result (LogoAdd); the upstream's default is on. */
  logoAdd?: boolean
  /** Which face of a multi-face template to replace (TemplateFaceID). */
  templateFaceId?: string
}

export type FusionOption = keyof FusionOptions

/** What the upstream accepts as a photo; the image pipeline fits every photo within these. */
export interface ImageLimits {
  /** Longest allowed side in pixels. */
  maxSide: number
  /** Largest allowed JPEG in bytes (the upstream's base64 limit, as raw bytes). */
  maxBytes: number
  /** Fewest pixels on the short side. */
  minShortSide: number
}

/** One material of an activity, as GET /templates lists it. */
export interface TemplateInfo {
  projectId: string
  modelId: string
  name?: string
  /** The material's picture, when the upstream gives one. */
  previewUrl?: string
  /** The template's faces, for choosing `template_face_id`. */
  faces?: Array<{ faceId: string, x?: number, y?: number, width?: number, height?: number }>
}

export interface FusionRequest {
  projectId: string
  modelId: string
  /** The normalised photo, JPEG bytes. */
  image: Buffer
  resultType: ResultType
  options?: FusionOptions
  /** Aborts the upstream call (client gone, deadline passed). */
  signal?: AbortSignal
  /**
   * Aborts every wait before a call is sent (the budget, a retry) and any attempt not yet sent, with its reason; never
   * a call already sent, whose answer is awaited (the service stopping in a hurry: src/plugins/shutdown.ts).
   */
  stop?: AbortSignal | undefined
  /** Epoch ms by which the whole request must be answered; bounds this call's own timeout. */
  deadline?: number
  /** Runs before each attempt goes out, once its budget slot is taken: from then on the call may reach the upstream. */
  beforeSend?: () => Promise<void>
}

export type FusionResult =
  | { resultType: 'url', imageUrl: string }
  | { resultType: 'base64', imageBase64: string }

export interface UpstreamDescription {
  provider: 'legacy' | 'v3'
  mode: 'tencent' | 'emulator'
  origin: string | undefined
  /** API 3.0 only. */
  action?: string
  version?: string
  region?: string
}

/** The configured API as messages name it: `the legacy API (fuseapi/face)`, `API 3.0 FuseFace 2022-09-27`. */
export function apiName (api: { provider: 'legacy' | 'v3', action?: string | undefined, version?: string | undefined }): string {
  return api.provider === 'v3' ? `API 3.0 ${api.action ?? ''} ${api.version ?? ''}`.trimEnd() : 'the legacy API (fuseapi/face)'
}

export interface FusionProvider {
  fuse: (request: FusionRequest, log?: UpstreamLogger) => Promise<FusionResult>
  /** How long the upstream keeps a result URL working, as documented. */
  readonly resultUrlLifetimeSeconds: number
  /** The options this upstream action can honour; any other given option is refused with 400. */
  readonly supportedOptions: ReadonlySet<FusionOption>
  /** An activity's materials, from the upstream; absent when the API has no listing. */
  listTemplates?: (projectId: string, log?: UpstreamLogger, deadline?: number) => Promise<TemplateInfo[]>
  describe: () => UpstreamDescription
  close: () => Promise<void>
}

/** The subset of pino the upstream client logs through. */
export interface UpstreamLogger {
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
  debug?: (obj: object, msg: string) => void
}
