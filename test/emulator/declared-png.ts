import { fixture } from '../helper.js'

/** CRC-32 as PNG chunks use it (IEEE, reflected). */
function crc32 (bytes: Buffer): number {
  let crc = 0xffffffff
  for (const byte of bytes) {
    crc ^= byte
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1))
  }
  return (crc ^ 0xffffffff) >>> 0
}

/**
 * A PNG of about 90 bytes whose header declares `width` × `height` pixels (a
 * decompression bomb's header, without the megabytes of deflated zeros behind
 * it): the 1×1 pixel-bomb.png fixture with its IHDR rewritten.
 */
export function pngDeclaring (width: number, height: number): Buffer {
  const png = Buffer.from(fixture('pixel-bomb.png'))
  // IHDR: length(4) type(4) at offset 8; width and height at 16 and 20; CRC after the 13 data bytes.
  png.writeUInt32BE(width, 16)
  png.writeUInt32BE(height, 20)
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29)
  return png
}
