/**
 * Reads a JPEG's structure from its markers without decoding a pixel: how many
 * scans it has and whether it is progressive.
 *
 * Why: a progressive decoder must finish every scan before it can output a
 * line, and each scan walks every block of the image even when its data is a
 * few bytes of end-of-block runs. A few hundred kilobytes of empty scans keep
 * libjpeg busy for a minute, out of reach of libvips' timeout, which is only
 * checked between output lines. The number of scans, read from the markers,
 * bounds that work before it starts.
 *
 * A sequential Huffman frame whose first scan holds every component (baseline,
 * interleaved: what cameras and phones write) is complete in that scan, and
 * libjpeg reads no other: the walk stops there instead of reading megabytes of
 * entropy-coded data. Progressive and arithmetic-coded frames, and sequential
 * ones split into a scan per component, are walked to the end and counted.
 */
export interface JpegStructure {
  /**
   * Start-of-scan markers before the end of the image (or of the bytes); 1 for a sequential Huffman frame complete in
   * its first scan.
   */
  scans: number
  /** A progressive frame (SOF2, SOF6, SOF10, SOF14). */
  progressive: boolean
}

const SOI = 0xd8
const EOI = 0xd9
const SOS = 0xda
const TEM = 0x01
const PROGRESSIVE_FRAMES = new Set([0xc2, 0xc6, 0xca, 0xce])
/** SOF0 (baseline) and SOF1 (extended sequential), both Huffman-coded. */
const SEQUENTIAL_HUFFMAN_FRAMES = new Set([0xc0, 0xc1])
/** Start-of-frame markers: 0xC0 to 0xCF but for DHT, JPG and DAC. libjpeg refuses a second one. */
const isFrame = (code: number): boolean => code >= 0xc0 && code <= 0xcf && code !== 0xc4 && code !== 0xc8 && code !== 0xcc

/**
 * Walks the marker segments from the start of the image to its end marker (or
 * the scan that completes a sequential Huffman frame), skipping each segment
 * by its length and each scan's entropy-coded data up to the next marker.
 * Stops counting at `stopAfter` scans (the caller's limit, plus one, is enough
 * to refuse). Bytes that break the structure end the walk: the decoder, not
 * this reader, says what is wrong with them.
 */
export function readJpegStructure (bytes: Buffer, stopAfter = Infinity): JpegStructure {
  const structure: JpegStructure = { scans: 0, progressive: false }
  if (bytes[0] !== 0xff || bytes[1] !== SOI) return structure
  let frame: { code: number, components: number | undefined } | undefined
  let at = 2
  while (at < bytes.length && structure.scans < stopAfter) {
    // A marker is 0xFF, any number of 0xFF fill bytes, then its code. Stray bytes before it are skipped, as libjpeg
    // does (with a warning).
    at = nextFF(bytes, at) + 1
    while (bytes[at] === 0xff) at++
    if (at >= bytes.length) break
    const code = bytes[at]!
    at++
    if (code === EOI) break
    // Not a marker (a stuffed zero), or one without a length: restart markers, TEM, a second SOI.
    if (code === 0x00 || code === TEM || code === SOI || (code >= 0xd0 && code <= 0xd7)) continue
    if (at + 2 > bytes.length) break
    const length = (bytes[at]! << 8) | bytes[at + 1]!
    if (length < 2) break
    if (PROGRESSIVE_FRAMES.has(code)) structure.progressive = true
    // The frame's component count follows its precision, height and width; a scan's is its first byte. Each is
    // taken only when the segment's length agrees with it, as libjpeg requires.
    if (frame === undefined && isFrame(code)) frame = { code, components: countAgreeing(bytes[at + 7], length, 8, 3) }
    const scanComponents = code === SOS ? countAgreeing(bytes[at + 2], length, 6, 2) : undefined
    at += length
    if (code === SOS) {
      structure.scans++
      // libjpeg decides at the first scan whether to expect others: only when it lacks a component, or is progressive.
      if (structure.scans === 1 && frame !== undefined && SEQUENTIAL_HUFFMAN_FRAMES.has(frame.code) &&
        scanComponents !== undefined && scanComponents === frame.components) break
      at = endOfEntropyData(bytes, at)
    }
  }
  return structure
}

/** A segment's component count, when its length is `fixed` plus `each` per component. */
function countAgreeing (count: number | undefined, length: number, fixed: number, each: number): number | undefined {
  return count !== undefined && count > 0 && length === fixed + each * count ? count : undefined
}

/** The offset of the first marker after a scan's entropy-coded data (where 0xFF 0x00 and restart markers are data). */
function endOfEntropyData (bytes: Buffer, from: number): number {
  let at = from
  for (;;) {
    const ff = nextFF(bytes, at)
    let next = ff + 1
    while (bytes[next] === 0xff) next++
    const code = bytes[next]
    if (code === undefined) return bytes.length
    if (code !== 0x00 && !(code >= 0xd0 && code <= 0xd7)) return ff
    at = next + 1
  }
}

/**
 * The next 0xFF at or after `from` (or the length). A short plain loop first, then indexOf: indexOf alone is fast on
 * photos (an 0xFF every few hundred bytes) but costs a native call per byte pair on data made of stuffed 0xFF 0x00,
 * and a plain loop alone is ten times slower than indexOf on photos. Either way a 10 MB upload costs milliseconds.
 */
function nextFF (bytes: Buffer, from: number): number {
  const near = Math.min(from + 64, bytes.length)
  for (let at = from; at < near; at++) if (bytes[at] === 0xff) return at
  if (near === bytes.length) return bytes.length
  const far = bytes.indexOf(0xff, near)
  return far === -1 ? bytes.length : far
}
