import t from 'tap'
import { createUploadBuffers, type UploadBuffers } from '../../src/images/upload-buffers.js'
import { until } from '../helper.js'

const MiB = 1024 * 1024

function pool (t: { teardown: (fn: () => void) => void }, maxFree = 4, trimIntervalMs = 60_000): UploadBuffers {
  const buffers = createUploadBuffers({ maxFree, trimIntervalMs })
  t.teardown(() => buffers.close())
  return buffers
}

// (Tests keep references to released buffers to look at them; in the service nothing holds a buffer once released.)

t.test('a buffer is at least the size asked for, in whole MiB', async (t) => {
  const buffers = pool(t)
  t.equal(buffers.take(10).bytes.length, MiB)
  t.equal(buffers.take(3_000_123).bytes.length, 3 * MiB)
  t.equal(buffers.take(2 * MiB).bytes.length, 2 * MiB)
  t.equal(buffers.allocations, 3)
})

t.test('a released buffer is handed out again; one still in use never is', async (t) => {
  const buffers = pool(t)
  const first = buffers.take(3_000_000)
  const second = buffers.take(3_000_000)
  t.not(second.bytes.buffer, first.bytes.buffer, 'two holders never share a buffer')
  first.release()
  t.equal(buffers.freeBytes, 3 * MiB)
  const third = buffers.take(2_500_000)
  t.equal(third.bytes.buffer, first.bytes.buffer, 'the free buffer is reused')
  t.equal(buffers.freeBytes, 0)
  t.equal(buffers.allocations, 2)
  const fourth = buffers.take(1000)
  t.not(fourth.bytes.buffer, first.bytes.buffer)
  t.not(fourth.bytes.buffer, second.bytes.buffer)
})

t.test('the smallest free buffer that fits is chosen', async (t) => {
  const buffers = pool(t)
  const large = buffers.take(8 * MiB)
  const small = buffers.take(MiB)
  const medium = buffers.take(3 * MiB)
  for (const loan of [large, small, medium]) loan.release()
  t.equal(buffers.take(2 * MiB).bytes.buffer, medium.bytes.buffer)
  t.equal(buffers.take(5 * MiB).bytes.buffer, large.bytes.buffer)
  t.not(buffers.take(5 * MiB).bytes.buffer, small.bytes.buffer, 'too small: a new one')
})

t.test('a loan is released once: a late second release cannot give away a buffer that is back in use', async (t) => {
  const buffers = pool(t)
  const first = buffers.take(MiB)
  first.release()
  // The same memory, lent again to another upload.
  const second = buffers.take(MiB)
  t.equal(second.bytes.buffer, first.bytes.buffer)
  // A stale release of the first loan (an error event after the fact, say) must not put it back in the free list.
  first.release()
  t.equal(buffers.freeBytes, 0, 'the stale release is ignored')
  const third = buffers.take(MiB)
  t.not(third.bytes.buffer, second.bytes.buffer, 'so the next upload gets another buffer')
  second.release()
  second.release()
  t.equal(buffers.freeBytes, MiB, 'a repeated release counts once')
})

t.test('at most maxFree buffers are kept: the one idle longest makes room, its memory freed at once', async (t) => {
  const buffers = pool(t, 2)
  const loans = [buffers.take(MiB), buffers.take(MiB), buffers.take(MiB)]
  for (const loan of loans) loan.release()
  t.equal(buffers.freeBytes, 2 * MiB)
  t.same(loans.map((loan) => loan.bytes.buffer.byteLength), [0, MiB, MiB], 'the first given back is freed, not left to the garbage collector')
})

t.test('closing frees the free buffers, and any released afterwards', async (t) => {
  const buffers = createUploadBuffers({ maxFree: 4, trimIntervalMs: 60_000 })
  const kept = buffers.take(MiB)
  const inUse = buffers.take(MiB)
  kept.release()
  buffers.close()
  t.equal(buffers.freeBytes, 0)
  t.equal(kept.bytes.buffer.byteLength, 0, 'freed')
  t.equal(inUse.bytes.buffer.byteLength, MiB, 'a buffer still in use is left alone')
  inUse.release()
  t.equal(inUse.bytes.buffer.byteLength, 0, 'and freed once released')
})

t.test('free buffers no upload needed are freed at the next trim; those in steady use are kept', async (t) => {
  const buffers = pool(t, 8, 100)
  // A burst: four uploads at once, all released.
  const burst = [buffers.take(MiB), buffers.take(MiB), buffers.take(MiB), buffers.take(MiB)]
  for (const loan of burst) loan.release()
  t.equal(buffers.freeBytes, 4 * MiB)
  // Then one upload at a time, more often than the trim interval: one buffer is all that is needed.
  const steady = (async () => {
    for (let i = 0; i < 15; i++) {
      const loan = buffers.take(MiB)
      await new Promise((resolve) => setTimeout(resolve, 20))
      loan.release()
    }
  })()
  await steady
  t.equal(buffers.freeBytes, MiB, 'the three the steady uploads never needed are gone')
  t.equal(burst.filter((loan) => loan.bytes.buffer.byteLength === 0).length, 3, 'and their memory freed')
  t.equal(buffers.allocations, 4, 'the steady uploads reused a buffer')
  // Idle: the last one goes too.
  await until(() => buffers.freeBytes === 0)
  t.equal(buffers.freeBytes, 0, 'an idle pool holds nothing')
  t.equal(burst.filter((loan) => loan.bytes.buffer.byteLength === 0).length, 4)
})

t.test('with mixed sizes, the buffer that is used stays and the one that is not goes', async (t) => {
  const buffers = pool(t, 8, 100)
  const small = buffers.take(MiB)
  const large = buffers.take(8 * MiB)
  small.release()
  large.release()
  // One large upload at a time for several trims; the small buffer is never needed.
  for (let i = 0; i < 12; i++) {
    const loan = buffers.take(8 * MiB)
    await new Promise((resolve) => setTimeout(resolve, 30))
    loan.release()
  }
  t.equal(buffers.allocations, 2, 'the large buffer was reused throughout, never freed while in use')
  t.equal(small.bytes.buffer.byteLength, 0, 'the small one, unused, was freed')
  t.equal(buffers.freeBytes, 8 * MiB)
})
