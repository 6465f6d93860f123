import t from 'tap'
import { checkPhoto, checkPhotoHeader, decodeBase64Photo, PhotoRefused, type PhotoRules } from '../../../emulator/shared/photo.js'
import { fixture } from '../../helper.js'
import { pngDeclaring } from '../declared-png.js'

const rules: PhotoRules = { formats: ['jpeg', 'png'], maxSide: 1080, minSide: 64, maxBase64Chars: 1_000_000 }

async function faultOf (check: () => unknown): Promise<string> {
  try {
    await check()
  } catch (error) {
    if (error instanceof PhotoRefused) return error.fault
    throw error
  }
  return 'accepted'
}

t.test('the one photo checker: base64 text, then the header, then the pixels', async (t) => {
  const face = fixture('face.jpg')
  t.equal(await faultOf(() => decodeBase64Photo('', rules)), 'empty')
  t.equal(await faultOf(() => decodeBase64Photo(`data:image/jpeg;base64,${face.toString('base64')}`, rules)), 'undecodable', 'no data: prefix')
  t.equal(await faultOf(() => decodeBase64Photo('QUJD', { ...rules, maxBase64Chars: 3 })), 'too-long', 'over the text limit')
  t.equal(await faultOf(() => decodeBase64Photo('QUJD', { ...rules, maxBytes: 2 })), 'too-long', 'over the byte limit once decoded')
  t.same(decodeBase64Photo(face.toString('base64'), rules), face)

  t.match(await checkPhoto(face, rules), { width: Number, height: Number })
  t.equal(await faultOf(async () => await checkPhotoHeader(fixture('animated.gif'), rules)), 'undecodable', 'a format not allowed')
  t.equal(await faultOf(async () => await checkPhotoHeader(pngDeclaring(4000, 500), rules)), 'too-large', 'a side over the limit, from the header alone')
  t.equal(await faultOf(async () => await checkPhotoHeader(pngDeclaring(64, 500), rules)), 'too-small', 'a side at the minimum is refused')
  t.equal(await faultOf(async () => await checkPhoto(fixture('truncated.jpg'), { ...rules, maxSide: 4096 })), 'undecodable', 'truncated pixels')
})
