/**
 * Small pieces both of the emulator's APIs use.
 */

/** A request header by its lowercase name, repeated values joined with commas as HTTP folds them. */
export function header (headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value.join(',') : value
}

/** Plain base64 (line breaks allowed), without a data: prefix: the upstream fails to decode anything else. */
export const BASE64_TEXT = /^[A-Za-z0-9+/\r\n]+={0,2}$/

/**
 * The most pixels sharp may decode from bytes a caller sent (4096 × 4096). The
 * emulator's credentials are public, so without this cap a tiny PNG declaring
 * 16 000 × 16 000 pixels costs seconds of CPU and most of a gigabyte.
 */
export const MAX_INPUT_PIXELS = 4096 * 4096
