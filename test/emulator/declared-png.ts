import { declaringSize } from '../fixtures/declared-png.js'
import { fixture } from '../helper.js'

/** The 1×1 pixel-bomb.png fixture, declaring `width` × `height` pixels. */
export function pngDeclaring (width: number, height: number): Buffer {
  return declaringSize(fixture('pixel-bomb.png'), width, height)
}
