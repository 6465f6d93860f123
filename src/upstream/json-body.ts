/**
 * Upstream request bodies carry the photo as base64 inside JSON. Only the
 * short fields go through JSON.stringify; the base64 (which needs no escaping)
 * is written into the body buffer once, instead of being copied through string
 * concatenation and encoded again by the HTTP client.
 */
export function jsonWithPhoto (head: string, photo: Buffer, tail: string): Buffer {
  const headBytes = Buffer.from(head)
  const base64Length = Math.ceil(photo.length / 3) * 4
  const body = Buffer.allocUnsafe(headBytes.length + base64Length + Buffer.byteLength(tail))
  headBytes.copy(body, 0)
  body.write(photo.toString('base64'), headBytes.length, 'latin1')
  body.write(tail, headBytes.length + base64Length)
  return body
}

