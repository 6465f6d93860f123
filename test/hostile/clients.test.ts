import t, { type Test } from 'tap'
import { captureLogs, post, startService, until } from '../helper.js'
import {
  hostileRequests, hugeFileNameForm, longestBoundaryForm, NASTY, ordinaryClient, slowSender, type RawAnswer, type SlowSender
} from './client-corpus.js'

/**
 * The hostile corpus through the real server, over real sockets. Every bound is generous (several times what an idle
 * machine needs) so the file passes beside busy loops on two cores; waits poll for a state instead of sleeping.
 */

/** Another loopback address for the attacker: the ordinary clients stay on 127.0.0.1 (or another key). */
const ATTACKER = '127.0.0.2'

/** Whatever the server wrote: one line each, none an error, none long, none with a stack. */
function checkLogs (t: Test, logs: ReturnType<typeof captureLogs>): void {
  const lines = logs.text().split('\n').filter(Boolean)
  const longest = Math.max(...lines.map((line) => line.length))
  t.ok(longest < 2_000, `no log line over 2 000 characters (longest: ${longest})`)
  t.same(logs.lines().filter((line) => Number(line.level) >= 50).map((line) => line.msg), [], 'nothing logged at error level')
  t.notOk(logs.text().includes('"stack"'), 'no stack in the logs')
  t.notOk(logs.text().includes('n'.repeat(200)), 'no long run of a client\'s bytes in the logs')
}

t.test('every hostile request is a clear 4xx with its code, quickly, with a short escaped message', async (t) => {
  const logs = captureLogs()
  const { url, app } = await startService(t, { LOG_LEVEL: 'info' }, { logStream: logs.stream })
  for (const hostile of hostileRequests()) {
    const startedAt = Date.now()
    const reply = await post(`${url}${hostile.path ?? '/fuse'}`, hostile.body, hostile.headers)
    const elapsed = Date.now() - startedAt
    const answer = reply.json()
    t.same({
      status: reply.status,
      code: answer.code,
      quick: elapsed < 10_000,
      short: reply.body.length < 1_024,
      // Printable ASCII (and the excerpt's ellipsis) only: no control character or bidi override of the client's.
      printable: /^[\x20-\x7e…]+$/.test(answer.message)
    }, { status: hostile.status, code: hostile.code, quick: true, short: true, printable: true },
    `${hostile.name}: ${answer.message} (${elapsed} ms, ${reply.body.length} bytes)`)
  }
  const nasty = await post(`${url}/fuse`, JSON.stringify({ project_id: '100307', model_id: 'm', image: 'AAAA', [NASTY]: 1 }),
    { 'content-type': 'application/json' })
  t.match(nasty.json().message, /^Unknown field `\\x60\\x5c"\\u\{202e\}\\x07<script>`/, 'a hostile name is quoted escaped: its backtick cannot close the quote')
  t.equal(app.imagePipeline.admitted, 0, 'every place was given back')
  t.equal((await post(`${url}/fuse`, longestBoundaryForm().body, longestBoundaryForm().headers)).status, 200, 'a 70-character boundary is fine')
  const named = await post(`${url}/fuse`, hugeFileNameForm().body, hugeFileNameForm().headers)
  t.equal(named.status, 200, 'a 100 KB file name is cut by the parser, not refused: it is never used')
  checkLogs(t, logs)
})

t.test('a boundary over 70 characters is refused from the header, before a place is taken or the body read', async (t) => {
  const { url, app } = await startService(t)
  // Five megabytes announced, none sent: only the header can have been judged.
  const sender = slowSender(url, { bytesPerSecond: 0, headers: { 'content-type': `multipart/form-data; boundary=${'b'.repeat(71)}` } })
  t.teardown(sender.stop)
  const answer = await answerOf(t, sender)
  t.match({ status: answer?.status, code: answer?.json().code }, { status: 400, code: 'FUSION_MALFORMED_BODY' })
  t.match(answer?.json().message, /boundary is 71 characters long: at most 70/)
  t.equal(app.imagePipeline.admitted, 0)
})

for (const kind of ['multipart', 'json'] as const) {
  t.test(`a slow ${kind} sender is cut off after the grace with 408 FUSION_UPLOAD_TOO_SLOW, not reset`, async (t) => {
    const logs = captureLogs()
    const { url, app } = await startService(t, {
      LOG_LEVEL: 'info', UPLOAD_RATE_GRACE_MS: '1000', UPLOAD_MIN_BYTES_PER_SECOND: '1024'
    }, { logStream: logs.stream })
    const sender = slowSender(url, { kind, bytesPerSecond: 10 })
    t.teardown(sender.stop)
    await until(() => app.imagePipeline.admitted === 1)
    const answer = await answerOf(t, sender)
    t.match({ status: answer?.status, code: answer?.json().code }, { status: 408, code: 'FUSION_UPLOAD_TOO_SLOW' })
    t.equal(answer?.headers.connection, 'close', 'the connection closes after the answer')
    t.ok(answer !== undefined && answer.elapsedMs >= 900, `not before the grace (${answer?.elapsedMs} ms)`)
    t.ok(answer !== undefined && answer.elapsedMs < 10_000, `soon after it (${answer?.elapsedMs} ms)`)
    await until(() => app.imagePipeline.admitted === 0)
    const line = logs.lines().find((entry) => entry.code === 'FUSION_UPLOAD_TOO_SLOW')
    t.match(line, { level: 30, statusCode: 408 }, 'logged at info with its code, not as a 499')
    checkLogs(t, logs)
  })
}

t.test('an upload that keeps the minimum rate but is still arriving at the deadline: 408 FUSION_UPLOAD_TIMEOUT', async (t) => {
  const { url, app } = await startService(t, { REQUEST_DEADLINE_MS: '2000', UPLOAD_RATE_GRACE_MS: '1000', UPLOAD_MIN_BYTES_PER_SECOND: '1024' })
  // Sixteen times the minimum, so a busy machine's late timers cannot make it "too slow".
  const sender = slowSender(url, { bytesPerSecond: 16_384 })
  t.teardown(sender.stop)
  const answer = await answerOf(t, sender)
  t.match({ status: answer?.status, code: answer?.json().code }, { status: 408, code: 'FUSION_UPLOAD_TIMEOUT' })
  t.ok(answer !== undefined && answer.elapsedMs >= 1_900 && answer.elapsedMs < 12_000, `at the deadline (${answer?.elapsedMs} ms)`)
  await until(() => app.imagePipeline.admitted === 0)
})

t.test('a client at its share of places is refused 429 before its body is read; other clients are admitted', async (t) => {
  const { url, app } = await startService(t, {
    IMAGE_CONCURRENCY: '1', IMAGE_QUEUE_LIMIT: '3', IMAGE_PLACES_PER_CLIENT: '1', CLIENT_API_KEYS: 'partner-key',
    UPLOAD_RATE_GRACE_MS: '60000'
  })
  t.equal(app.imagePipeline.perClient, 1)
  const holder = slowSender(url, { localAddress: ATTACKER })
  t.teardown(holder.stop)
  await until(() => app.imagePipeline.admitted === 1)
  // Announces five megabytes and sends none of them: only refusing before the body can answer it.
  const second = slowSender(url, { localAddress: ATTACKER, bytesPerSecond: 0 })
  t.teardown(second.stop)
  const refused = await answerOf(t, second)
  t.match({ status: refused?.status, code: refused?.json().code }, { status: 429, code: 'FUSION_TOO_MANY_UPLOADS' })
  t.equal(refused?.headers['retry-after'], '1')

  const neighbour = ordinaryClient(url, '127.0.0.3')
  const partner = ordinaryClient(url, ATTACKER, { 'x-api-key': 'partner-key' })
  t.teardown(async () => { await neighbour.close(); await partner.close() })
  t.match(await neighbour.fuse(), { status: 200 }, 'another address is served')
  t.match(await partner.fuse(), { status: 200 }, 'an API key from the same address is a client of its own')
  t.equal(app.imagePipeline.admitted, 1, 'the first upload still holds its place')
  holder.stop()
  await until(() => app.imagePipeline.admitted === 0)
})

t.test('one address holding many slow uploads, reconnecting at every cut-off: everyone else is still served', async (t) => {
  const logs = captureLogs()
  // Eight places; without a share, nineteen slow sockets would hold all of them and everyone else would get 503.
  const { url, app } = await startService(t, {
    LOG_LEVEL: 'info', IMAGE_CONCURRENCY: '1', IMAGE_QUEUE_LIMIT: '7', IMAGE_PLACES_PER_CLIENT: '0',
    UPLOAD_RATE_GRACE_MS: '3000', UPLOAD_MIN_BYTES_PER_SECOND: '1024'
  }, { logStream: logs.stream })
  t.equal(app.imagePipeline.perClient, 2, 'a quarter of the eight places')

  // The attack: nineteen sockets, each announcing 5 MB and sending 10 bytes a second, each replaced as soon as it is
  // answered (after Retry-After, like a client that obeys it).
  const tally: Record<string, number> = {}
  let unanswered = 0
  let running = true
  const live = new Set<SlowSender>()
  const open = (): void => {
    if (!running) return
    const sender = slowSender(url, { localAddress: ATTACKER })
    live.add(sender)
    void sender.answer.then((answer) => {
      live.delete(sender)
      if (!running) return
      if (answer === undefined) unanswered++
      const key = answer === undefined ? 'reset' : `${answer.status} ${String(answer.json().code)}`
      tally[key] = (tally[key] ?? 0) + 1
      setTimeout(open, Number(answer?.headers['retry-after'] ?? 0) * 1000)
    })
  }
  for (let socket = 0; socket < 19; socket++) open()
  t.teardown(() => {
    running = false
    for (const sender of live) sender.stop()
  })
  await until(() => app.imagePipeline.admitted === 2 && (tally['429 FUSION_TOO_MANY_UPLOADS'] ?? 0) >= 17)

  // Meanwhile, ordinary clients on other addresses keep fusing, through at least one round of cut-offs and reconnects.
  const neighbours = ['127.0.0.1', '127.0.0.3', '127.0.0.4'].map((address) => ordinaryClient(url, address))
  t.teardown(async () => { for (const neighbour of neighbours) await neighbour.close() })
  const served: Array<{ status: number, code?: string }> = []
  while ((tally['408 FUSION_UPLOAD_TOO_SLOW'] ?? 0) < 4) {
    served.push(...await Promise.all(neighbours.map(async (neighbour) => await neighbour.fuse())))
    if (served.length > 300) break
  }
  t.ok(served.length >= 3, `${served.length} ordinary fusions while the attack ran`)
  t.same(served.filter((reply) => reply.status !== 200), [], 'every one of them was served')
  t.ok((tally['408 FUSION_UPLOAD_TOO_SLOW'] ?? 0) >= 4, 'the slow uploads holding places were cut off, and the places taken again')
  t.equal(unanswered, 0, `no connection was closed without an answer: ${JSON.stringify(tally)}`)
  t.ok(app.imagePipeline.admitted <= 2, 'the attacker never held more than its share')

  running = false
  for (const sender of live) sender.stop()
  await until(() => app.imagePipeline.admitted === 0)
  checkLogs(t, logs)
})

/** The sender's answer, failing the test rather than hanging when none comes. */
async function answerOf (t: Test, sender: SlowSender): Promise<RawAnswer | undefined> {
  const timer = setTimeout(() => { t.fail('no answer within 20 s'); sender.stop() }, 20_000)
  try {
    return await sender.answer
  } finally {
    clearTimeout(timer)
  }
}
