/**
 * Names an image format from its first bytes. The declared MIME type and the
 * file name are never consulted: both are whatever the client says.
 *
 * HEIF is a container: its `ftyp` brands tell HEVC-coded HEIC (iPhone photos,
 * which the prebuilt sharp cannot decode) from AV1-coded AVIF (which it can).
 */
export type SniffedFormat =
  | 'jpeg' | 'png' | 'webp' | 'avif' | 'heic' | 'heif'
  | 'gif' | 'svg' | 'tiff' | 'pdf' | 'bmp' | 'ico' | 'psd' | 'jxl' | 'jp2'
  | 'unknown'

/** Enough bytes to decide every format below. */
export const SNIFF_BYTES = 64

const HEVC_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis'])
const AV1_BRANDS = new Set(['avif', 'avis'])

export function sniffFormat (bytes: Buffer): SniffedFormat {
  const head = bytes.subarray(0, 512)
  const ascii = head.toString('latin1')
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'jpeg'
  if (ascii.startsWith('\x89PNG\r\n\x1a\n')) return 'png'
  if (ascii.startsWith('RIFF') && ascii.slice(8, 12) === 'WEBP') return 'webp'
  if (ascii.startsWith('GIF87a') || ascii.startsWith('GIF89a')) return 'gif'
  if (ascii.slice(4, 8) === 'ftyp') return heifFlavour(head)
  if (ascii.startsWith('II*\0') || ascii.startsWith('MM\0*')) return 'tiff'
  if (ascii.startsWith('%PDF-')) return 'pdf'
  if (ascii.startsWith('BM')) return 'bmp'
  if (ascii.startsWith('\0\0\x01\0')) return 'ico'
  if (ascii.startsWith('8BPS')) return 'psd'
  if (ascii.startsWith('\xff\x0a') || ascii.startsWith('\0\0\0\x0cJXL ')) return 'jxl'
  if (ascii.startsWith('\0\0\0\x0cjP  ')) return 'jp2'
  if (/^(\xef\xbb\xbf)?\s*(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*(<!doctype svg[^>]*>\s*)?<svg[\s>]/i.test(ascii)) return 'svg'
  return 'unknown'
}

function heifFlavour (head: Buffer): SniffedFormat {
  const boxSize = head.readUInt32BE(0)
  const end = Math.min(boxSize, head.length)
  const brands = [head.toString('latin1', 8, 12)]
  for (let at = 16; at + 4 <= end; at += 4) brands.push(head.toString('latin1', at, at + 4))
  if (brands.some((brand) => AV1_BRANDS.has(brand))) return 'avif'
  if (brands.some((brand) => HEVC_BRANDS.has(brand))) return 'heic'
  // mif1/msf1 alone: a HEIF whose codec only the decoder can tell.
  return 'heif'
}
