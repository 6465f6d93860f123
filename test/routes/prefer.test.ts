import t from 'tap'
import { parsePrefer } from '../../src/routes/prefer.js'

t.test('respond-async and wait=N, in any case, among other preferences', async (t) => {
  t.same(parsePrefer(undefined, 60), { respondAsync: false, wait: undefined })
  t.same(parsePrefer('respond-async', 60), { respondAsync: true, wait: undefined })
  t.same(parsePrefer('Respond-Async, WAIT=5', 60), { respondAsync: true, wait: 5 })
  t.same(parsePrefer(['return=minimal', 'wait=7'], 60), { respondAsync: false, wait: 7 }, 'several headers')
  t.same(parsePrefer('wait="9"', 60), { respondAsync: false, wait: 9 }, 'a quoted value')
  t.same(parsePrefer('respond-async; foo=bar, wait = 3', 60), { respondAsync: true, wait: 3 }, 'parameters and spaces')
})

t.test('a wait past the maximum is capped; one that is no whole number of seconds is ignored', async (t) => {
  t.equal(parsePrefer('wait=600', 60).wait, 60)
  t.equal(parsePrefer('wait=0', 60).wait, 0)
  for (const bad of ['wait=-1', 'wait=1.5', 'wait=abc', 'wait=', 'wait', 'wait=1234567', 'wait=1e3']) {
    t.equal(parsePrefer(bad, 60).wait, undefined, bad)
  }
  t.notOk(parsePrefer('respond-asynchronously', 60).respondAsync, 'only the exact token')
})
