import t from 'tap'
import { availableParallelism } from 'node:os'
import { createImagePipeline, imageConcurrency, placesPerClient } from '../../src/images/pipeline.js'
import { fixture } from '../helper.js'
import { plainImage, scanBombJpeg } from '../hostile/image-corpus.js'

t.test('image jobs: one more than the CPUs, leaving libuv a thread, unless configured', async (t) => {
  const saved = process.env.UV_THREADPOOL_SIZE
  t.teardown(() => {
    if (saved === undefined) delete process.env.UV_THREADPOOL_SIZE
    else process.env.UV_THREADPOOL_SIZE = saved
  })
  process.env.UV_THREADPOOL_SIZE = '64'
  t.equal(imageConcurrency(0), availableParallelism() + 1)
  delete process.env.UV_THREADPOOL_SIZE
  t.equal(imageConcurrency(0), Math.min(availableParallelism() + 1, 3), 'libuv has 4 threads by default: at most 3 jobs')
  process.env.UV_THREADPOOL_SIZE = '2'
  t.equal(imageConcurrency(0), 1)
  t.equal(imageConcurrency(5), 5, 'a configured number is used as given')
})

t.test('the pipeline runs that many jobs, and admits that many plus the queue', async (t) => {
  const pipeline = createImagePipeline({ policy, concurrency: 0, queueLimit: 4, decodeMemoryBytes: 1024 * 1024 * 1024 })
  t.teardown(() => pipeline.uploadBuffers.close())
  t.equal(pipeline.concurrency, imageConcurrency(0))
  t.equal(pipeline.capacity, imageConcurrency(0) + 4)
  const places = Array.from({ length: pipeline.capacity }, (_, index) => pipeline.admit(`client-${index}`))
  t.throws(() => pipeline.admit('another'), { code: 'FUSION_OVERLOADED' })
  places[0]!.release()
  t.doesNotThrow(() => pipeline.admit('another'))
})

t.test('one client holds at most its share of the places; the others are still admitted', async (t) => {
  const policy = { maxSide: 1080, maxBytes: 500_000, maxInputPixels: 50_000_000, minShortSide: 64, timeoutSeconds: 10, maxJpegScans: 100 }
  const pipeline = createImagePipeline({ policy, concurrency: 1, queueLimit: 7, decodeMemoryBytes: 1024 * 1024 * 1024 })
  t.teardown(() => pipeline.uploadBuffers.close())
  t.equal(pipeline.perClient, 2, 'by default a quarter of the eight places')
  const held = [pipeline.admit('ip:203.0.113.7'), pipeline.admit('ip:203.0.113.7')]
  t.throws(() => pipeline.admit('ip:203.0.113.7'), { code: 'FUSION_TOO_MANY_UPLOADS', statusCode: 429, retryAfterSeconds: 1 })
  t.doesNotThrow(() => pipeline.admit('ip:198.51.100.23'), 'another client is admitted')
  held[0]!.release()
  held[0]!.release()
  t.equal(pipeline.admitted, 2, 'a place is given back once, however often it is released')
  t.doesNotThrow(() => pipeline.admit('ip:203.0.113.7'), 'a released place is the client\'s again')
  for (let client = 0; client < 5; client++) pipeline.admit(`ip:192.0.2.${client}`)
  t.throws(() => pipeline.admit('ip:192.0.2.99'), { code: 'FUSION_OVERLOADED' }, 'within their shares, clients still fill the pipeline')

  t.equal(placesPerClient(0, 19), 4, 'a quarter of the places two cores have by default')
  t.equal(placesPerClient(0, 1), 1, 'at least one')
  t.equal(placesPerClient(7, 19), 7, 'a configured share is used as given')
})

// The slow photo below is decoded to its end several times (its job stays taken until then): more than tap's 60 s
// on a busy machine.
t.setTimeout(180_000)

const MiB = 1024 * 1024
const policy = { maxSide: 1080, maxBytes: 500_000, maxInputPixels: 50_000_000, minShortSide: 64, maxJpegScans: 100, timeoutSeconds: 10 }
/**
 * A photo libvips cannot stop: every scan is decoded before the first line, where libvips checks its timeout. About
 * 2.5 s of one idle core (0.1 ms per scan per megapixel).
 */
const slowPhoto = async (): Promise<Buffer> => await scanBombJpeg({ scans: 1_500 })
const SLOW_POLICY = { ...policy, maxJpegScans: 100_000, timeoutSeconds: 300 }

/** Polls for as long as the slow photo may take on a busy machine. */
async function eventually (condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in 60 s')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Resolves when `released` has been called, however long libvips takes. */
async function whenReleased (state: { released: number }): Promise<void> {
  await eventually(() => state.released > 0)
}

t.test('refusals from the header take no job: a scan bomb, a photo whose decode would not fit the whole budget', async (t) => {
  const pipeline = createImagePipeline({ policy, concurrency: 1, queueLimit: 4, decodeMemoryBytes: 64 * MiB })
  t.teardown(() => pipeline.uploadBuffers.close())
  const state = { released: 0 }
  await t.rejects(pipeline.normalize(await scanBombJpeg({ scans: 101 }), { released: () => { state.released++ } }),
    { code: 'FUSION_IMAGE_TOO_MANY_SCANS', statusCode: 422, message: /more than 100 scans/ })
  await t.rejects(pipeline.normalize(await plainImage({ format: 'avif', width: 2000, height: 2000 }), { released: () => { state.released++ } }),
    { code: 'FUSION_IMAGE_DECODE_TOO_LARGE', statusCode: 413, message: /about \d+ MiB to decode; at most 64 MiB/ })
  t.equal(state.released, 2, 'each photo released once, at once')
  t.same(pipeline.load, { running: 0, waiting: 0, decodeMemoryBytes: 0 })
  t.equal((await pipeline.normalize(fixture('face.jpg'))).inputFormat, 'jpeg', 'an ordinary photo fits')
})

t.test('IMAGE_TIMEOUT_SECONDS answers the client even when libvips cannot stop; the job stays counted until it does', async (t) => {
  const pipeline = createImagePipeline({ policy: { ...SLOW_POLICY, timeoutSeconds: 1 }, concurrency: 1, queueLimit: 4, decodeMemoryBytes: 1024 * MiB })
  t.teardown(() => pipeline.uploadBuffers.close())
  const slow = { released: 0 }
  const started = Date.now()
  await t.rejects(pipeline.normalize(await slowPhoto(), { released: () => { slow.released++ } }), { code: 'FUSION_IMAGE_TIMEOUT', statusCode: 422 })
  t.ok(Date.now() - started < 2_500, `answered after ${Date.now() - started} ms`)
  t.equal(slow.released, 0, 'libvips is still reading the photo: its buffer is not given back')
  t.match(pipeline.load, { running: 1, decodeMemoryBytes: Number }, 'and its job and memory are still counted')
  // The next photo waits for the job libvips still holds.
  const next = { released: 0 }
  const normalized = await pipeline.normalize(fixture('face.jpg'), { released: () => { next.released++ } })
  t.equal(slow.released, 1, 'the next photo started only once libvips had finished the slow one')
  t.equal(normalized.inputFormat, 'jpeg')
  t.equal(next.released, 1)
  t.same(pipeline.load, { running: 0, waiting: 0, decodeMemoryBytes: 0 })
})

t.test('no image wait outlasts the deadline: for memory, or being worked on, it is 503 FUSION_OVERLOADED; a client that leaves is let go', async (t) => {
  const face = fixture('face.jpg')
  // Slots to spare, but not memory: the slow photo's estimated decode holds most of the budget.
  const pipeline = createImagePipeline({ policy: SLOW_POLICY, concurrency: 2, queueLimit: 4, decodeMemoryBytes: 100 * MiB })
  t.teardown(() => pipeline.uploadBuffers.close())
  const slow = { released: 0 }
  const holderStarted = Date.now()
  const holding = pipeline.normalize(await slowPhoto(), { deadline: holderStarted + 1_500, released: () => { slow.released++ } })
  // (Photos are inspected before they queue: the slow one is first once it holds the job.)
  await eventually(() => pipeline.load.running === 1)

  const waitStarted = Date.now()
  const memoryWait = pipeline.normalize(face, { deadline: waitStarted + 500 })
  await eventually(() => pipeline.load.waiting === 1)
  t.equal(pipeline.load.running, 1, 'a slot is free: the ordinary photo waits for memory')
  await t.rejects(memoryWait, { code: 'FUSION_OVERLOADED', statusCode: 503, retryAfterSeconds: 1 })
  t.ok(Date.now() - waitStarted < 1_500, `answered at its deadline (${Date.now() - waitStarted} ms)`)

  const gone = new AbortController()
  const leaving = { released: 0 }
  const left = pipeline.normalize(face, { signal: gone.signal, released: () => { leaving.released++ } })
  await eventually(() => pipeline.load.waiting === 1)
  gone.abort()
  await t.rejects(left, { code: 'FUSION_CLIENT_CLOSED_REQUEST' }, 'a client that leaves while its photo waits: answered at once')
  t.equal(leaving.released, 1, 'and its photo released unread')

  await t.rejects(holding, { code: 'FUSION_OVERLOADED', statusCode: 503 }, 'the photo being worked on, at its own deadline')
  t.ok(Date.now() - holderStarted < 3_000, `(${Date.now() - holderStarted} ms)`)
  t.equal(slow.released, 0, 'while libvips still reads it')
  await whenReleased(slow)
  t.same(pipeline.load, { running: 0, waiting: 0, decodeMemoryBytes: 0 })
})
