import t from 'tap'
import { availableParallelism } from 'node:os'
import { createImagePipeline, imageConcurrency } from '../../src/images/pipeline.js'

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
  const policy = { maxSide: 1080, maxBytes: 500_000, maxInputPixels: 50_000_000, minShortSide: 64, timeoutSeconds: 10 }
  const pipeline = createImagePipeline({ policy, concurrency: 0, queueLimit: 4 })
  t.teardown(() => pipeline.uploadBuffers.close())
  t.equal(pipeline.concurrency, imageConcurrency(0))
  t.equal(pipeline.capacity, imageConcurrency(0) + 4)
  const places = Array.from({ length: pipeline.capacity }, () => pipeline.admit())
  t.throws(() => pipeline.admit(), { code: 'FUSION_OVERLOADED' })
  places[0]!.release()
  t.doesNotThrow(() => pipeline.admit())
})
