/**
 * What the fuse route needs from an upstream API. The legacy API implements it
 * today; API 3.0 (FaceFusion / FuseFace) implements the same shape.
 */
export type ResultType = 'url' | 'base64'

export interface FusionRequest {
  projectId: string
  modelId: string
  /** The normalised photo, JPEG bytes. */
  image: Buffer
  resultType: ResultType
  /** Aborts the upstream call (client gone, deadline passed). */
  signal?: AbortSignal
  /** Epoch ms by which the whole request must be answered; bounds this call's own timeout. */
  deadline?: number
}

export type FusionResult =
  | { resultType: 'url', imageUrl: string }
  | { resultType: 'base64', imageBase64: string }

export interface UpstreamDescription {
  provider: string
  mode: 'tencent' | 'emulator'
  origin: string | undefined
}

export interface FusionProvider {
  fuse: (request: FusionRequest, log?: UpstreamLogger) => Promise<FusionResult>
  describe: () => UpstreamDescription
  close: () => Promise<void>
}

/** The subset of pino the upstream client logs through. */
export interface UpstreamLogger {
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
}
