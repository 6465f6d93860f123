/**
 * Upstream request bodies carry the photo as base64 inside JSON. Only the
 * short fields go through JSON.stringify; the base64 (which needs no escaping)
 * is written into the body buffer directly, instead of being copied through
 * string concatenation and encoded again by the HTTP client.
 */

/**
 * The photo is encoded a slice at a time, each a multiple of 3 bytes so the
 * pieces join into one base64 text. A 64 KiB string is young garbage, gone at
 * the next scavenge; the photo's whole base64 at once (260 KB for a 1080 px
 * photo) would be a large object, left in the old generation until a full
 * collection.
 */
const SLICE_BYTES = 3 * 16 * 1024

export function jsonWithPhoto (head: string, photo: Buffer, tail: string): Buffer {
  const headBytes = Buffer.from(head)
  const base64Length = Math.ceil(photo.length / 3) * 4
  const body = Buffer.allocUnsafe(headBytes.length + base64Length + Buffer.byteLength(tail))
  headBytes.copy(body, 0)
  let at = headBytes.length
  for (let from = 0; from < photo.length; from += SLICE_BYTES) {
    at += body.write(photo.subarray(from, from + SLICE_BYTES).toString('base64'), at, 'latin1')
  }
  body.write(tail, at)
  return body
}
