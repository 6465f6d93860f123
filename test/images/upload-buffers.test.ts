import t from 'tap'
import { createUploadBuffers } from '../../src/images/upload-buffers.js'

const MiB = 1024 * 1024

t.test('a buffer is at least the size asked for, in whole MiB', async (t) => {
  const buffers = createUploadBuffers({ maxFree: 4, idleMs: 60_000 })
  t.equal(buffers.take(10).length, MiB)
  t.equal(buffers.take(3_000_123).length, 3 * MiB)
  t.equal(buffers.take(2 * MiB).length, 2 * MiB)
})

t.test('a recycled buffer is handed out again; one still in use never is', async (t) => {
  const buffers = createUploadBuffers({ maxFree: 4, idleMs: 60_000 })
  const first = buffers.take(3_000_000)
  const second = buffers.take(3_000_000)
  t.not(second.buffer, first.buffer, 'two holders never share a buffer')
  // The photo's view, as the intake hands it on, gives back the whole buffer.
  buffers.recycle(first.subarray(0, 2_999_000))
  t.equal(buffers.freeBytes, 3 * MiB)
  const third = buffers.take(2_500_000)
  t.equal(third.buffer, first.buffer, 'the free buffer is reused')
  t.equal(third.length, 3 * MiB, 'whole, not the view it came back as')
  t.equal(buffers.freeBytes, 0)
  const fourth = buffers.take(1000)
  t.not(fourth.buffer, first.buffer)
  t.not(fourth.buffer, second.buffer)
})

t.test('the smallest free buffer that fits is chosen', async (t) => {
  const buffers = createUploadBuffers({ maxFree: 4, idleMs: 60_000 })
  const large = buffers.take(8 * MiB)
  const small = buffers.take(MiB)
  const medium = buffers.take(3 * MiB)
  for (const buffer of [large, small, medium]) buffers.recycle(buffer)
  t.equal(buffers.take(2 * MiB).buffer, medium.buffer)
  t.equal(buffers.take(5 * MiB).buffer, large.buffer)
  t.not(buffers.take(5 * MiB).buffer, small.buffer, 'too small: a new one')
})

t.test('only buffers it lent are taken back, each once', async (t) => {
  const buffers = createUploadBuffers({ maxFree: 4, idleMs: 60_000 })
  buffers.recycle(Buffer.alloc(MiB))
  buffers.recycle(Buffer.from('a small one from Node’s shared pool'))
  t.equal(buffers.freeBytes, 0, 'foreign buffers are ignored')
  const lent = buffers.take(MiB)
  buffers.recycle(lent)
  buffers.recycle(lent)
  t.equal(buffers.freeBytes, MiB, 'a second recycle is ignored')
  const again = buffers.take(MiB)
  t.equal(again.buffer, lent.buffer)
  t.not(buffers.take(MiB).buffer, lent.buffer, 'so the same buffer is never handed to two holders')
})

t.test('at most maxFree buffers are kept; the memory of the others is freed at once', async (t) => {
  const buffers = createUploadBuffers({ maxFree: 2, idleMs: 60_000 })
  const taken = [buffers.take(MiB), buffers.take(MiB), buffers.take(MiB)]
  for (const buffer of taken) buffers.recycle(buffer)
  t.equal(buffers.freeBytes, 2 * MiB)
  // (These references are the test's own: in the service nothing holds a buffer once it is given back.)
  t.same(taken.map((buffer) => buffer.buffer.byteLength), [MiB, MiB, 0], 'the third is released, not left to the garbage collector')
  buffers.clear()
  t.equal(buffers.freeBytes, 0)
  t.same(taken.map((buffer) => buffer.buffer.byteLength), [0, 0, 0], 'clear releases the free ones')
  t.not(buffers.take(MiB).buffer, taken[0]!.buffer, 'and hands out new ones afterwards')
})

t.test('an idle pool gives its free buffers’ memory back', async (t) => {
  const buffers = createUploadBuffers({ maxFree: 4, idleMs: 50 })
  const buffer = buffers.take(MiB)
  buffers.recycle(buffer)
  t.equal(buffers.freeBytes, MiB)
  const until = Date.now() + 5_000
  while (buffers.freeBytes > 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(buffers.freeBytes, 0, 'dropped after idleMs without use')
  t.equal(buffer.buffer.byteLength, 0, 'and its memory released')
  // And the pool keeps working afterwards, its idle timer re-armed.
  buffers.recycle(buffers.take(MiB))
  t.equal(buffers.freeBytes, MiB)
  while (buffers.freeBytes > 0 && Date.now() < until + 5_000) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(buffers.freeBytes, 0)
})
