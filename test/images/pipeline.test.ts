import t from 'tap'
import { availableParallelism } from 'node:os'
import { imageConcurrency } from '../../src/images/pipeline.js'

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
