import t from 'tap'
import { createJobGate, type Lease } from '../../src/images/job-gate.js'

const MB = 1024 * 1024
const gate = (slots = 2, memoryBytes = 100 * MB): ReturnType<typeof createJobGate> => createJobGate({ slots, memoryBytes, retryAfterSeconds: 1 })
const tick = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

t.test('a job needs a slot and its memory; both come back on release, once', async (t) => {
  const jobs = gate(2, 100 * MB)
  const first = await jobs.acquire(60 * MB)
  const second = await jobs.acquire(30 * MB)
  t.same({ running: jobs.running, memory: jobs.memoryInUse }, { running: 2, memory: 90 * MB })
  let third: Lease | undefined
  void jobs.acquire(10 * MB).then((lease) => { third = lease })
  await tick()
  t.equal(third, undefined, 'no slot free')
  first.release()
  first.release()
  await tick()
  t.ok(third !== undefined, 'the freed slot goes to the waiter')
  t.same({ running: jobs.running, memory: jobs.memoryInUse, waiting: jobs.waiting }, { running: 2, memory: 40 * MB, waiting: 0 },
    'a second release of the same lease changes nothing')
  second.release()
  third!.release()
  t.same({ running: jobs.running, memory: jobs.memoryInUse }, { running: 0, memory: 0 })
})

t.test('photos start in arrival order: a large one waiting for memory is not overtaken by small ones', async (t) => {
  const jobs = gate(4, 100 * MB)
  const running = await jobs.acquire(70 * MB)
  const started: string[] = []
  const large = jobs.acquire(60 * MB).then((lease) => { started.push('large'); return lease })
  const small = jobs.acquire(5 * MB).then((lease) => { started.push('small'); return lease })
  await tick()
  t.same(started, [], 'the small one waits behind the large one, though it would fit')
  running.release()
  const leases = await Promise.all([large, small])
  t.same(started, ['large', 'small'])
  t.equal(jobs.memoryInUse, 65 * MB)
  leases.forEach((lease) => { lease.release() })
})

t.test('a wait ends at the deadline with 503 FUSION_OVERLOADED, and the next waiter moves up', async (t) => {
  const jobs = gate(1, 100 * MB)
  const running = await jobs.acquire(10 * MB)
  const before = Date.now()
  await t.rejects(jobs.acquire(10 * MB, { deadline: Date.now() + 100 }), { code: 'FUSION_OVERLOADED', statusCode: 503, retryAfterSeconds: 1 })
  t.ok(Date.now() - before < 1_000, 'answered at the deadline')
  t.equal(jobs.waiting, 0, 'and gone from the queue')
  await t.rejects(jobs.acquire(10 * MB, { deadline: Date.now() - 1 }), { code: 'FUSION_OVERLOADED' }, 'a deadline already passed: at once')

  // A large waiter at the head leaves; the small one behind it fits and starts at once.
  const memory = gate(4, 100 * MB)
  const held = await memory.acquire(50 * MB)
  const large = memory.acquire(80 * MB, { deadline: Date.now() + 50 })
  let small: Lease | undefined
  void memory.acquire(20 * MB).then((lease) => { small = lease })
  await t.rejects(large, { code: 'FUSION_OVERLOADED' })
  await tick()
  t.ok(small !== undefined, 'the waiter behind starts when the head leaves')
  held.release()
  small?.release()
  running.release()
})

t.test('a client that leaves while waiting is refused at once and never starts', async (t) => {
  const jobs = gate(1, 100 * MB)
  const running = await jobs.acquire(10 * MB)
  const gone = new AbortController()
  let started = false
  const waiting = jobs.acquire(10 * MB, { signal: gone.signal }).then((lease) => { started = true; return lease })
  gone.abort()
  await t.rejects(waiting, { code: 'FUSION_CLIENT_CLOSED_REQUEST' })
  running.release()
  await tick()
  t.equal(started, false)
  t.same({ running: jobs.running, waiting: jobs.waiting }, { running: 0, waiting: 0 })
  await t.rejects(jobs.acquire(1, { signal: gone.signal }), { code: 'FUSION_CLIENT_CLOSED_REQUEST' }, 'already gone: refused before queueing')
})

t.test('a cost over the whole budget waits for all of it rather than forever (callers refuse it first)', async (t) => {
  const jobs = gate(2, 100 * MB)
  const lease = await jobs.acquire(500 * MB)
  t.equal(jobs.memoryInUse, 100 * MB)
  lease.release()
})

t.test('onChange sees every change of the load', async (t) => {
  const seen: number[] = []
  const jobs = createJobGate({ slots: 1, memoryBytes: 10, retryAfterSeconds: 1, onChange: () => seen.push(jobs.memoryInUse) })
  const lease = await jobs.acquire(4)
  lease.release()
  t.same(seen, [4, 0])
})
