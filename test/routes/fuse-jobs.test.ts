import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { request } from 'undici'
import { MAX_STREAMS_PER_JOB } from '../../src/routes/fuse-jobs.js'
import {
  answerJson, captureLogs, finishedJob, fixture, fuseForm, heldUpstream, JOB_LINES, LEGACY_OK, ownRedis, redisPrefix, startService, stubEnv, stubUpstream, until
} from '../helper.js'

const photo = fixture('orientation-1.jpg')
const legacyBase64 = { ret: '0', msg: 'ok', img_base64: fixture('face.jpg').toString('base64') }


async function getJob (url: string, location: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: Record<string, unknown>, body: any, bytes: Buffer }> {
  const reply = await request(`${url}${location}`, { headers })
  const bytes = Buffer.from(await reply.body.arrayBuffer())
  const type = String(reply.headers['content-type'] ?? '')
  return { status: reply.statusCode, headers: reply.headers, body: type.startsWith('application/json') ? JSON.parse(bytes.toString()) : undefined, bytes }
}

/** Follows an event stream: its events as they come, and whether it has ended. */
function followEvents (body: AsyncIterable<Buffer>): { events: any[], end: Promise<void>, ended: () => boolean } {
  const events: any[] = []
  let ended = false
  const end = (async () => {
    let text = ''
    for await (const chunk of body) {
      text += chunk.toString()
      const blocks = text.split('\n\n')
      text = blocks.pop()!
      for (const block of blocks) {
        const data = block.split('\n').find((line) => line.startsWith('data: '))
        if (data !== undefined) events.push(JSON.parse(data.slice(6)))
      }
    }
    ended = true
  })()
  return { events, end, ended: () => ended }
}

for (const [line, lineEnv] of Object.entries(JOB_LINES)) {
  t.test(`${line} line: respond-async queues the fusion and the job answers what the request would have`, async (t) => {
    const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, LEGACY_OK) })
    const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...lineEnv() })
    const accepted = await fuseForm(url, photo, {}, { prefer: 'respond-async' })
    t.equal(accepted.status, 202)
    t.equal(accepted.headers['preference-applied'], 'respond-async')
    t.match(accepted.headers.location, /^\/fuse\/jobs\/[A-Za-z0-9_-]{22}$/)
    t.ok(Number(accepted.headers['retry-after']) >= 1, 'a first poll is suggested')
    const body = accepted.json()
    t.match(body, { jobId: /^[A-Za-z0-9_-]{22}$/, status: 'queued', position: Number, etaSeconds: Number, requestId: String })
    t.equal(accepted.headers.location, `/fuse/jobs/${body.jobId}`)

    const done = await finishedJob(url, accepted.headers.location as string)
    t.equal(done.status, 'succeeded')
    t.same(Object.keys(done.result).sort(), ['expiresAt', 'imageUrl', 'requestId'], 'the synchronous success body')
    t.equal(done.result.imageUrl, LEGACY_OK.img_url)
    t.equal(done.result.requestId, body.requestId)
    t.ok(Date.parse(done.startedAt) >= Date.parse(done.createdAt), 'started after it was created')
    t.ok(Date.parse(done.finishedAt) >= Date.parse(done.startedAt), 'finished after it started')
    t.equal(upstream.calls.length, 1, 'one upstream call')
  })

  t.test(`${line} line: a refusal the client can fix is answered at once, not queued`, async (t) => {
    const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, LEGACY_OK) })
    const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...lineEnv() })
    const refused = await fuseForm(url, fixture('not-an-image.jpg'), {}, { prefer: 'respond-async' })
    t.equal(refused.status, 415)
    t.equal(refused.json().code, 'FUSION_UNSUPPORTED_IMAGE_FORMAT')
    t.equal(upstream.calls.length, 0)
  })

  t.test(`${line} line: Prefer wait=N answers like the synchronous request when the job is done in time`, async (t) => {
    const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, legacyBase64) })
    const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...lineEnv() })
    const reply = await fuseForm(url, photo, { rsp_img_type: 'base64' }, { prefer: 'respond-async, wait=10' })
    t.equal(reply.status, 200)
    t.equal(reply.headers['preference-applied'], 'wait=10')
    t.same(Object.keys(reply.json()).sort(), ['imageBase64', 'requestId'])
    const synchronous = await fuseForm(url, photo, { rsp_img_type: 'base64' })
    t.equal(reply.headers['content-type'], synchronous.headers['content-type'], 'the same Content-Type as the synchronous answer')

    const picture = await fuseForm(url, photo, {}, { prefer: 'wait=10', accept: 'image/jpeg' })
    t.equal(picture.status, 200)
    t.equal(picture.headers['content-type'], 'image/jpeg')
    t.same(picture.body, fixture('face.jpg'), 'the picture itself, as Accept: image/jpeg asks')
  })

  t.test(`${line} line: a failed job carries the synchronous error body; wait=N answers with its status`, async (t) => {
    const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, { ret: '1000', msg: 'no face' }) })
    const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...lineEnv() })
    const accepted = await fuseForm(url, photo, {}, { prefer: 'respond-async' })
    const done = await finishedJob(url, accepted.headers.location as string)
    t.equal(done.status, 'failed')
    t.match(done.error, { statusCode: 422, code: 'FUSION_NO_FACE', upstreamCode: '1000', requestId: accepted.json().requestId })
    const waited = await fuseForm(url, photo, {}, { prefer: 'wait=10' })
    t.equal(waited.status, 422)
    t.equal(waited.json().code, 'FUSION_NO_FACE')
    const synchronous = await fuseForm(url, photo)
    t.equal(waited.headers['content-type'], synchronous.headers['content-type'], 'the same Content-Type as the synchronous refusal')
  })

  t.test(`${line} line: a queued job is canceled and never sent; a running one is not; a finished one is deleted`, async (t) => {
    const upstream = await heldUpstream(t)
    const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...lineEnv(), QUEUE_WORKERS: '1' })
    const first = (await fuseForm(url, photo, {}, { prefer: 'respond-async' })).headers.location as string
    const second = (await fuseForm(url, photo, {}, { prefer: 'respond-async' })).headers.location as string
    await until(() => upstream.calls.length > 0)
    t.equal((await getJob(url, first)).body.status, 'running')
    const queued = await getJob(url, second)
    t.match(queued.body, { status: 'queued', position: 1 })

    const running = await request(`${url}${first}`, { method: 'DELETE' })
    t.equal(running.statusCode, 409)
    t.equal((await running.body.json() as any).code, 'FUSION_JOB_RUNNING')

    const canceled = await request(`${url}${second}`, { method: 'DELETE' })
    t.equal(canceled.statusCode, 200)
    t.equal((await canceled.body.json() as any).status, 'canceled')
    upstream.release()
    t.equal((await finishedJob(url, first)).status, 'succeeded')
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.equal(upstream.calls.length, 1, 'the canceled job never reached the upstream')

    const deleted = await request(`${url}${first}`, { method: 'DELETE' })
    t.equal(deleted.statusCode, 200)
    t.equal((await deleted.body.json() as any).status, 'succeeded')
    t.equal((await getJob(url, first)).status, 404, 'deleted with its result')
  })

  t.test(`${line} line: unknown ids and another API key's jobs are 404`, async (t) => {
    const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, LEGACY_OK) })
    const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...lineEnv(), CLIENT_API_KEYS: 'key-a,key-b' })
    for (const id of ['AAAAAAAAAAAAAAAAAAAAAA', 'not-a-job', '..%2F..%2Fetc']) {
      const missing = await getJob(url, `/fuse/jobs/${id}`)
      t.equal(missing.status, 404)
      t.equal(missing.body.code, 'FUSION_JOB_NOT_FOUND')
    }
    const location = (await fuseForm(url, photo, {}, { prefer: 'respond-async', 'x-api-key': 'key-a' })).headers.location as string
    t.equal((await getJob(url, location, { 'x-api-key': 'key-b' })).status, 404, 'another key cannot see it')
    t.equal((await getJob(url, location)).status, 404, 'nor a client without a key')
    t.equal((await request(`${url}${location}`, { method: 'DELETE', headers: { 'x-api-key': 'key-b' } })).statusCode, 404)
    t.equal((await finishedJob(url, location, { 'x-api-key': 'key-a' })).status, 'succeeded', 'its own key can')
  })

  t.test(`${line} line: admission refuses what the line cannot take in time, per client too`, async (t) => {
    const upstream = await heldUpstream(t)
    const { url } = await startService(t, {
      ...stubEnv('legacy', upstream.url), ...lineEnv(), QUEUE_WORKERS: '1', QUEUE_MAX_JOBS: '2', QUEUE_MAX_JOBS_PER_CLIENT: '2'
    })
    const statuses = []
    for (let i = 0; i < 3; i++) statuses.push((await fuseForm(url, photo, {}, { prefer: 'respond-async' })))
    t.same(statuses.map((reply) => reply.status), [202, 202, 429])
    t.equal(statuses[2]!.json().code, 'FUSION_TOO_MANY_JOBS')
    t.ok(Number(statuses[2]!.headers['retry-after']) >= 1)
    upstream.release()
    for (const reply of statuses.slice(0, 2)) await finishedJob(url, reply.headers.location as string)
    t.equal((await fuseForm(url, photo, {}, { prefer: 'respond-async' })).status, 202, 'finished jobs give the client its share back')
  })

  t.test(`${line} line: a client's share holds when its submissions arrive together`, async (t) => {
    const upstream = await heldUpstream(t)
    const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...lineEnv(), QUEUE_WORKERS: '1', QUEUE_MAX_JOBS_PER_CLIENT: '2' })
    const replies = await Promise.all(Array.from({ length: 8 }, async () => await fuseForm(url, photo, {}, { prefer: 'respond-async' })))
    const outcomes = replies.map((reply) => reply.status === 202 ? 'queued' : reply.json().code as string).sort()
    t.same(outcomes, ['FUSION_TOO_MANY_JOBS', 'FUSION_TOO_MANY_JOBS', 'FUSION_TOO_MANY_JOBS', 'FUSION_TOO_MANY_JOBS',
      'FUSION_TOO_MANY_JOBS', 'FUSION_TOO_MANY_JOBS', 'queued', 'queued'], 'two taken, the rest refused for the share')
    upstream.release()
  })

  t.test(`${line} line: a submission refused for a full line gives the client's place back`, async (t) => {
    const upstream = await heldUpstream(t)
    const { url } = await startService(t, {
      ...stubEnv('legacy', upstream.url), ...lineEnv(), QUEUE_WORKERS: '1', QUEUE_MAX_JOBS: '2', QUEUE_MAX_JOBS_PER_CLIENT: '3',
      CLIENT_API_KEYS: 'key-a,key-b'
    })
    const asA = { 'x-api-key': 'key-a', prefer: 'respond-async' }
    const asB = { 'x-api-key': 'key-b', prefer: 'respond-async' }
    const filling = [await fuseForm(url, photo, {}, asB)]
    await until(() => upstream.calls.length === 1)
    filling.push(await fuseForm(url, photo, {}, asB), await fuseForm(url, photo, {}, asB))
    t.same(filling.map((reply) => reply.status), [202, 202, 202], 'B: one running, two waiting, the line full')
    const refused = []
    for (let i = 0; i < 3; i++) refused.push(await fuseForm(url, photo, {}, asA))
    t.same(refused.map((reply) => [reply.status, reply.json().code]), refused.map(() => [503, 'FUSION_QUEUE_FULL']),
      'A, refused as many times as its share')
    upstream.release()
    for (const reply of filling) await finishedJob(url, reply.headers.location as string, { 'x-api-key': 'key-b' })
    // Held again, so A's jobs stay in the line: each of its three places must be free.
    upstream.hold()
    const taken = [await fuseForm(url, photo, {}, asA)]
    // A's first job running, so the next two wait in a line of two.
    await until(() => upstream.calls.length >= 4)
    taken.push(await fuseForm(url, photo, {}, asA), await fuseForm(url, photo, {}, asA))
    t.same(taken.map((reply) => reply.status), [202, 202, 202], 'A\'s whole share is free: the refusals took no place')
    upstream.release()
    for (const reply of taken.filter((reply) => reply.status === 202)) {
      await finishedJob(url, reply.headers.location as string, { 'x-api-key': 'key-a' })
    }
  })

  t.test(`${line} line: a full line, or one whose wait would pass QUEUE_MAX_WAIT_SECONDS, is 503 FUSION_QUEUE_FULL`, async (t) => {
    const upstream = await heldUpstream(t)
    const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...lineEnv(), QUEUE_WORKERS: '1', QUEUE_MAX_JOBS: '2' })
    t.equal((await fuseForm(url, photo, {}, { prefer: 'respond-async' })).status, 202)
    await until(() => upstream.calls.length > 0)
    const more = []
    for (let i = 0; i < 3; i++) more.push(await fuseForm(url, photo, {}, { prefer: 'respond-async' }))
    t.same(more.map((reply) => reply.status), [202, 202, 503], 'one running, two waiting, then full')
    t.equal(more[2]!.json().code, 'FUSION_QUEUE_FULL')
    t.ok(Number(more[2]!.headers['retry-after']) >= 1)
    upstream.release()

    const slow = await heldUpstream(t)
    const quick = await startService(t, {
      ...stubEnv('legacy', slow.url), ...lineEnv(), QUEUE_WORKERS: '1', UPSTREAM_QPS: '1', QUEUE_MAX_WAIT_SECONDS: '2'
    })
    const etas = []
    for (let i = 0; i < 4; i++) etas.push(await fuseForm(quick.url, photo, {}, { prefer: 'respond-async' }))
    t.equal(etas.at(-1)!.status, 503, 'at 1 job a second, a wait over 2 s is refused')
    t.equal(etas.at(-1)!.json().code, 'FUSION_QUEUE_FULL')
    t.ok(etas.filter((reply) => reply.status === 202).every((reply) => reply.json().etaSeconds <= 2), 'every job taken was promised at most 2 s')
    slow.release()
  })

  t.test(`${line} line: the events stream follows the job to its end`, async (t) => {
    const upstream = await heldUpstream(t)
    const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...lineEnv(), QUEUE_WORKERS: '1' })
    await fuseForm(url, photo, {}, { prefer: 'respond-async' })
    const location = (await fuseForm(url, photo, {}, { prefer: 'respond-async' })).headers.location as string
    const stream = await request(`${url}${location}/events`)
    t.match(stream.headers['content-type'], /^text\/event-stream/)
    setTimeout(() => { upstream.release() }, 500)
    const { events, end } = followEvents(stream.body)
    await end
    t.match(events[0], { status: 'queued', position: 1 }, 'the current state at once')
    t.match(events.at(-1), { status: 'succeeded', result: { imageUrl: LEGACY_OK.img_url } }, 'a final event with the GET body, then the end')
    t.ok(events.every((event, index) => index === 0 || JSON.stringify(event) !== JSON.stringify(events[index - 1])), 'an event per change')
  })

  t.test(`${line} line: a job's events go to ${MAX_STREAMS_PER_JOB} streams at most on a replica: one more closes the oldest`, async (t) => {
    const upstream = await heldUpstream(t)
    const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), ...lineEnv(), QUEUE_WORKERS: '1' })
    await fuseForm(url, photo, {}, { prefer: 'respond-async' })
    const location = (await fuseForm(url, photo, {}, { prefer: 'respond-async' })).headers.location as string
    const open = async (): Promise<ReturnType<typeof followEvents>> => {
      const followed = followEvents((await request(`${url}${location}/events`)).body)
      await until(() => followed.events.length === 1)
      return followed
    }
    const streams = []
    for (let i = 0; i < MAX_STREAMS_PER_JOB; i++) streams.push(await open())
    const oldest = streams[0]!
    const newest = await open()
    await until(() => oldest.ended())
    t.same(oldest.events.map((event) => event.status), ['queued'], 'the oldest ended, before the job did')
    t.notOk(streams.slice(1).some((stream) => stream.ended()), 'the others stay open')
    t.match(newest.events[0], { status: 'queued', position: 1 }, 'the new one has the current state')

    upstream.release()
    for (const stream of [...streams.slice(1), newest]) {
      await stream.end
      t.match(stream.events.at(-1), { status: 'succeeded' }, 'each open stream follows the job to its end')
    }
  })
}

t.test('no job id, photo or result in a log line', async (t) => {
  const logs = captureLogs()
  const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, legacyBase64) })
  const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), LOG_LEVEL: 'info' }, { logStream: logs.stream })
  const accepted = await fuseForm(url, photo, { rsp_img_type: 'base64' }, { prefer: 'respond-async' })
  const { jobId } = accepted.json()
  await finishedJob(url, `/fuse/jobs/${jobId}`)
  await request(`${url}/fuse/jobs/${jobId}/events`).then(async (reply) => await reply.body.dump())
  // Refusals that quote the path, and a path the router decodes to the job's.
  const asked = [
    [`/fuse/jobs/${jobId}`, 'PUT', 405], [`/fuse/jobs/${jobId}/`, 'GET', 404], [`/fuse/jobs/${jobId}/event`, 'GET', 404],
    [`/fuse/%6Aobs/${jobId}`, 'GET', 200], [`/fuse/%6Aobs/${jobId}?x=%`, 'GET', 200]
  ] as const
  for (const [path, method, status] of asked) {
    const reply = await request(`${url}${path}`, { method })
    // Read whole: the job's answer holds the picture, more than dump() reads before it cuts the connection.
    await reply.body.text()
    t.equal(reply.statusCode, status, `${method} ${path.replace(jobId, '…')}`)
  }
  await request(`${url}/fuse/jobs/${jobId}`, { method: 'DELETE' }).then(async (reply) => await reply.body.dump())
  t.ok(logs.lines().some((line) => line.req !== undefined), 'the requests were logged')
  t.notOk(logs.text().includes(jobId), 'the job id is in no line')
  t.notOk(logs.text().includes(legacyBase64.img_base64.slice(0, 40)), 'nor the result')
  t.match(logs.text(), /\/fuse\/jobs\/\[job\]/)
})

t.test('redis line: the same Idempotency-Key gives the same job from another replica', async (t) => {
  const upstream = await stubUpstream(t, (_call, response) => { answerJson(response, LEGACY_OK) })
  const env = { ...stubEnv('legacy', upstream.url), ...JOB_LINES.redis() }
  const [one, two] = [await startService(t, env), await startService(t, env)]
  const first = await fuseForm(one.url, photo, {}, { prefer: 'respond-async', 'idempotency-key': 'same-photo-1' })
  const again = await fuseForm(two.url, photo, {}, { prefer: 'respond-async', 'idempotency-key': 'same-photo-1' })
  t.equal(first.status, 202)
  t.equal(again.status, 202)
  t.equal(again.json().jobId, first.json().jobId)
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(again.headers.location, first.headers.location, 'the replay says where the job is')
  t.equal(again.headers['preference-applied'], 'respond-async')
  t.ok(Number(again.headers['retry-after']) >= 1, 'and when to look')
  const other = await fuseForm(two.url, fixture('orientation-6.jpg'), {}, { prefer: 'respond-async', 'idempotency-key': 'same-photo-1' })
  t.equal(other.status, 422)
  t.equal(other.json().code, 'FUSION_IDEMPOTENCY_KEY_REUSED')
  t.equal((await finishedJob(two.url, first.headers.location as string)).status, 'succeeded', 'any replica shows the job')
  t.equal(upstream.calls.length, 1)
})

t.test('redis line: a client that leaves while its job is looked up leaves no stream following it', async (t) => {
  // A Redis of this test's own, to count the looks at the job.
  const { url: redisUrl, admin } = await ownRedis(t)
  const upstream = await heldUpstream(t)
  const { url } = await startService(t, { ...stubEnv('legacy', upstream.url), REDIS_URL: redisUrl, REDIS_KEY_PREFIX: redisPrefix(), QUEUE_WORKERS: '1' })
  await fuseForm(url, photo, {}, { prefer: 'respond-async' })
  const location = (await fuseForm(url, photo, {}, { prefer: 'respond-async' })).headers.location as string
  await until(() => upstream.calls.length === 1)
  const { port } = new URL(url)
  for (let i = 0; i < 20; i++) {
    const socket = connect(Number(port), '127.0.0.1')
    socket.write(`GET ${location}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, () => { socket.destroy() })
  }
  await sleep(500)
  await admin.config('RESETSTAT')
  await sleep(3_000)
  const looks = Number(/^cmdstat_hgetall:calls=(\d+)/m.exec(await admin.info('commandstats'))?.[1] ?? 0)
  t.ok(looks < 5, `no stream goes on looking at the job for a client gone (${looks} looks in 3 s)`)
  upstream.release()
})
