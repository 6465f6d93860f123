import { getEventListeners } from 'node:events'
import t from 'tap'
import { linkSignals } from '../src/linked-signal.js'

t.test('aborts with the reason of whichever source aborts first', async (t) => {
  const request = new AbortController()
  const stop = new AbortController()
  const { signal } = linkSignals([request.signal, stop.signal])
  t.notOk(signal.aborted)
  stop.abort(new Error('stopping'))
  t.ok(signal.aborted)
  t.match(signal.reason, { message: 'stopping' })
  request.abort(new Error('gone'))
  t.match(signal.reason, { message: 'stopping' }, 'the first reason stays')
  t.equal(getEventListeners(request.signal, 'abort').length, 0, 'nothing left on the other source once aborted')
})

t.test('unlink leaves no listener on a process-long signal, and stops following it', async (t) => {
  const stop = new AbortController()
  for (let request = 0; request < 100; request++) linkSignals([new AbortController().signal, stop.signal]).unlink()
  t.equal(getEventListeners(stop.signal, 'abort').length, 0)
  const linked = linkSignals([new AbortController().signal, stop.signal])
  linked.unlink()
  stop.abort(new Error('stopping'))
  t.notOk(linked.signal.aborted, 'an unlinked signal no longer follows its sources')
})

t.test('a source already aborted, or a single one', async (t) => {
  const gone = new AbortController()
  gone.abort(new Error('gone'))
  const linked = linkSignals([gone.signal, new AbortController().signal])
  t.ok(linked.signal.aborted)
  t.match(linked.signal.reason, { message: 'gone' })

  const only = new AbortController().signal
  t.equal(linkSignals([only, null, undefined]).signal, only, 'a single source is itself')
})
