import t from 'tap'
import { availableParallelism } from 'node:os'
import { createImagePipeline, imageConcurrency, placesPerClient } from '../../src/images/pipeline.js'

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
  const places = Array.from({ length: pipeline.capacity }, (_, index) => pipeline.admit(`client-${index}`))
  t.throws(() => pipeline.admit('another'), { code: 'FUSION_OVERLOADED' })
  places[0]!.release()
  t.doesNotThrow(() => pipeline.admit('another'))
})

t.test('one client holds at most its share of the places; the others are still admitted', async (t) => {
  const policy = { maxSide: 1080, maxBytes: 500_000, maxInputPixels: 50_000_000, minShortSide: 64, timeoutSeconds: 10 }
  const pipeline = createImagePipeline({ policy, concurrency: 1, queueLimit: 7 })
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
