import type { Metadata } from 'sharp'

/**
 * What normalising one photo costs in memory, estimated from its header before
 * a pixel is decoded, so the image pipeline can charge it to the decode-memory
 * budget (IMAGE_DECODE_MEMORY_BYTES).
 *
 * A small file can declare a costly decode: a 1 KB AVIF of 7000 × 7000 needs
 * about 750 MB, while a JPEG of the same size is decoded shrunk, line by line,
 * in about 20 MB. Every figure below is fitted from bench/decode-memory.ts
 * (peak resident memory of one normalisation in a fresh process, glibc and
 * jemalloc, 1 000² to 7 000² and 16 000 × 1 000 both ways, output sides 1080 and
 * 4095) and rounded up, so the estimate is at or above every measured peak:
 * the bench prints both and says whether each is covered.
 */

const MiB = 1024 * 1024

/** libvips' and the encoder's working memory for any photo, however small. */
const BASE_BYTES = 24 * MiB

/**
 * Per pixel of the resized photo: the resized image and its JPEG encode (Huffman optimisation keeps every
 * coefficient), and for a photo too detailed for the byte budget the re-encode search, which holds its raw pixels
 * and encodes them again (a 12 MP phone photo fitted in 4095 px: 187 MiB with jemalloc). A quarter turn (EXIF
 * orientation 5–8) needs the whole resized image at once.
 */
const OUTPUT_BYTES_PER_PIXEL = 16
const TURNED_OUTPUT_BYTES_PER_PIXEL = 19

/** Rows of the decoded width that libvips' pipeline holds between decoder and resize, per sample byte. */
const LINE_BUFFER_ROWS = 128

/**
 * AVIF (and AV1-coded HEIF): libheif and the AV1 decoder hold the full-size planes, libheif converts them to
 * interleaved samples, and libvips copies those: 15–20 bytes a pixel at 8 bits (4:2:0 to 4:4:4, alpha or not), up to
 * 29 at 10 or 12 bits with alpha. The header does not tell the chroma subsampling, so the worst is charged. That
 * memory is freed before the resized photo is encoded, so only the larger of the two counts.
 */
const AVIF_BYTES_PER_PIXEL = 22
const AVIF_DEEP_BYTES_PER_PIXEL = 32

/** A progressive JPEG keeps every coefficient of the image until its last scan: 2 bytes per sample. */
const JPEG_COEFFICIENT_BYTES = 2

/** A WebP with alpha is decoded whole (no scaled decode): RGBA plus libvips' copy of a part of it. */
const WEBP_ALPHA_BYTES_PER_PIXEL = 6
/** A WebP without alpha is decoded straight to the resized size, as RGB(A) and libvips' copy. */
const WEBP_SCALED_BYTES_PER_PIXEL = 5

/**
 * PNG rows in flight, over their raw bytes: an interlaced PNG is decoded whole (half as much again for libvips'
 * copies); even a sequential one was measured to hold up to about 2 700 rows, or all of them when fewer, while it
 * is shrunk (a quarter again).
 */
const PNG_ROWS_HELD = 3_000
const PNG_SEQUENTIAL_OVERHEAD = 1.25
const PNG_INTERLACED_OVERHEAD = 1.5

/** Samples per pixel of a JPEG, from its chroma subsampling: 4:2:0 keeps one chroma sample per four pixels, twice. */
function jpegSamplesPerPixel (metadata: Metadata): number {
  const channels = metadata.channels ?? 3
  if (channels < 3) return channels
  switch (metadata.chromaSubsampling) {
    case '4:2:0': return 1.5
    case '4:2:2': case '4:4:0': return 2
    case '4:2:0:4': return 2.5
    case '4:2:2:4': return 3
    // 4:4:4, 4:4:4:4 (CMYK) and anything unknown: every sample, the most a JPEG can need.
    default: return channels
  }
}

/** Bytes of one raw pixel as decoded: channels × bytes per sample. */
function rawPixelBytes (metadata: Metadata): number {
  const deep = metadata.depth === 'ushort' || (metadata.bitsPerSample ?? 8) > 8
  return (metadata.channels ?? 4) * (deep ? 2 : 1)
}

/**
 * Estimated peak memory, in bytes, of normalising a photo with this header into at most `maxSide` × `maxSide`.
 * Unknown formats are charged as an AVIF, the most costly one the pipeline accepts.
 */
export function estimateDecodeCost (metadata: Metadata, maxSide: number): number {
  const width = metadata.width ?? 0
  const height = metadata.height ?? 0
  const pixels = width * height
  const scale = Math.min(1, maxSide / Math.max(width, height, 1))
  const outputPixels = Math.ceil(width * scale) * Math.ceil(height * scale)
  const turned = (metadata.orientation ?? 1) >= 5
  const output = outputPixels * (turned ? TURNED_OUTPUT_BYTES_PER_PIXEL : OUTPUT_BYTES_PER_PIXEL)
  const lines = width * rawPixelBytes(metadata) * LINE_BUFFER_ROWS

  switch (metadata.format) {
    case 'jpeg':
      // A baseline JPEG streams, shrunk on load: lines and the output are all it holds.
      return Math.ceil(BASE_BYTES + output + lines +
        (metadata.isProgressive === true ? pixels * jpegSamplesPerPixel(metadata) * JPEG_COEFFICIENT_BYTES : 0))
    case 'png': {
      const interlaced = metadata.isProgressive === true
      const rows = interlaced ? height : Math.min(height, PNG_ROWS_HELD)
      return Math.ceil(BASE_BYTES + output + lines +
        width * rows * rawPixelBytes(metadata) * (interlaced ? PNG_INTERLACED_OVERHEAD : PNG_SEQUENTIAL_OVERHEAD))
    }
    case 'webp':
      return Math.ceil(BASE_BYTES + output + lines +
        (metadata.hasAlpha === true ? pixels * WEBP_ALPHA_BYTES_PER_PIXEL : outputPixels * WEBP_SCALED_BYTES_PER_PIXEL))
    default: {
      const decode = pixels * ((metadata.bitsPerSample ?? 8) > 8 ? AVIF_DEEP_BYTES_PER_PIXEL : AVIF_BYTES_PER_PIXEL)
      return Math.ceil(BASE_BYTES + Math.max(decode, output + lines))
    }
  }
}
