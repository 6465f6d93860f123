import t from 'tap'
import { sniffFormat } from '../../src/images/sniff.js'
import { fixture } from '../helper.js'

t.test('formats are named from their bytes', async (t) => {
  const expected: Record<string, string> = {
    'face.jpg': 'jpeg',
    'face-alpha.png': 'png',
    'face.webp': 'webp',
    'face.avif': 'avif',
    'still.gif': 'gif',
    'iphone.heic': 'heic',
    'vector.svg': 'svg',
    'scan.tiff': 'tiff',
    'document.pdf': 'pdf',
    'not-an-image.jpg': 'unknown',
    'empty.jpg': 'unknown'
  }
  for (const [file, format] of Object.entries(expected)) t.equal(sniffFormat(fixture(file)), format, file)
})

t.test('HEIF brands: HEVC is HEIC, AV1 is AVIF, neither is left to the decoder', async (t) => {
  const ftyp = (major: string, ...compatible: string[]): Buffer => {
    const body = Buffer.from(`ftyp${major}\0\0\0\0${compatible.join('')}`, 'latin1')
    const size = Buffer.alloc(4)
    size.writeUInt32BE(body.length + 4)
    return Buffer.concat([size, body])
  }
  t.equal(sniffFormat(ftyp('heic', 'mif1', 'heic')), 'heic')
  t.equal(sniffFormat(ftyp('mif1', 'mif1', 'heix')), 'heic')
  t.equal(sniffFormat(ftyp('avif', 'mif1', 'avif')), 'avif')
  t.equal(sniffFormat(ftyp('mif1', 'mif1', 'miaf')), 'heif')
})

t.test('SVG with an XML prolog, a comment or a BOM', async (t) => {
  t.equal(sniffFormat(Buffer.from('<?xml version="1.0"?>\n<!-- drawn -->\n<svg xmlns="http://www.w3.org/2000/svg"/>')), 'svg')
  t.equal(sniffFormat(Buffer.from('\ufeff<svg width="1" height="1"></svg>')), 'svg')
  t.equal(sniffFormat(Buffer.from('<html><svg></svg></html>')), 'unknown')
})
