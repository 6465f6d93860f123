/**
 * The hostile image corpus through the real service: each photo gets its
 * status and code well within the request's deadline, ordinary clients are
 * served while it is handled, and the memory the service uses for decoding
 * stays under the configured budget. Bounds are generous: these pass on a
 * busy two-core machine.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { request } from 'undici'
import { fixture, fuseForm, multipart, runOnFreePort, startService, type Reply } from '../helper.js'
import { HOSTILE_IMAGES, componentScansJpeg, plainImage, scanBombJpeg } from './image-corpus.js'

// Some cases decode a deliberately slow photo to its end (its job stays taken until then): more than tap's 60 s on a
// busy machine.
t.setTimeout(180_000)

const MiB = 1024 * 1024
/** A progressive JPEG at the highest scan limit the settings allow (1000): seconds of libjpeg work, past any timeout. */
const slowPhoto = async (): Promise<Buffer> => await scanBombJpeg({ width: 6000, height: 4000, scans: 999 })

/** POST /fuse as a form, waiting up to `ms` for the answer (the helper's own gives up after 15 s). */
async function fuseFormWithin (url: string, photo: Buffer, ms: number): Promise<Reply> {
  const { body, contentType } = multipart([
    { name: 'project_id', value: '100307' },
    { name: 'model_id', value: 'qc_100307_152854_1' },
    { name: 'image', value: photo, filename: 'photo.jpg', contentType: 'image/jpeg' }
  ])
  const response = await request(`${url}/fuse`, {
    method: 'POST', body, headers: { 'content-type': contentType }, headersTimeout: ms, bodyTimeout: ms
  })
  const bytes = Buffer.from(await response.body.arrayBuffer())
  return { status: response.statusCode, headers: response.headers, body: bytes, json: () => JSON.parse(bytes.toString('utf8')) }
}

/** Polls for as long as a slow decode may take on a busy machine. */
async function eventually (condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in 60 s')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Ordinary clients sent beside each hostile photo. */
const ORDINARY = 4
/** Load shedding off: these cases measure the image pipeline's own bounds, and a busy machine's event loop lags. */
const UNSHED = { PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0' }

const ordinaryClients = (url: string): Array<Promise<Reply>> => Array.from({ length: ORDINARY }, async () => await fuseForm(url, fixture('face.jpg')))

function allServed (t: { same: (found: unknown, wanted: unknown, message: string) => unknown }, replies: Reply[], about: string): void {
  t.same(replies.map((reply) => reply.status), replies.map(() => 200), `${about}: every ordinary client served`)
}

t.test('each hostile photo is answered with its own code well within the deadline, while ordinary clients are served', async (t) => {
  const { url, app } = await startService(t, UNSHED)
  for (const entry of HOSTILE_IMAGES) {
    const photo = await entry.build()
    const started = Date.now()
    const [hostile, ...ordinary] = await Promise.all([
      fuseForm(url, photo).then((reply) => ({ reply, ms: Date.now() - started })),
      ...ordinaryClients(url)
    ])
    t.equal(hostile!.reply.status, entry.status, `${entry.name}: ${entry.about}`)
    if (entry.code !== undefined) t.equal(hostile!.reply.json().code, entry.code, `${entry.name} → ${entry.code}`)
    t.ok(hostile!.ms < 10_000, `${entry.name} answered in ${hostile!.ms} ms (deadline 30 000)`)
    allServed(t, ordinary as Reply[], entry.name)
  }
  t.same(app.imagePipeline.load, { running: 0, waiting: 0, decodeMemoryBytes: 0 }, 'nothing left holding a job or memory')
})

t.test('three scan bombs at once hold no image job: refused from their markers, and ordinary requests go on', async (t) => {
  const { url, app } = await startService(t, UNSHED)
  const bomb = await scanBombJpeg()
  let mostRunning = 0
  const sampler = setInterval(() => { mostRunning = Math.max(mostRunning, app.imagePipeline.load.running) }, 5)
  t.teardown(() => { clearInterval(sampler) })
  const started = Date.now()
  const replies = await Promise.all([fuseForm(url, bomb), fuseForm(url, bomb), fuseForm(url, bomb), ...ordinaryClients(url)])
  const bombs = replies.slice(0, 3)
  t.same(bombs.map((reply) => [reply.status, reply.json().code]), bombs.map(() => [422, 'FUSION_IMAGE_TOO_MANY_SCANS']))
  t.ok(Date.now() - started < 10_000, `all answered in ${Date.now() - started} ms, not the minute libjpeg would take`)
  allServed(t, replies.slice(3), 'beside three scan bombs')
  t.ok(mostRunning <= ORDINARY, 'the bombs never took a job')
})

t.test('a baseline JPEG split into thousands of scans, one per component, is counted and refused like a progressive one', async (t) => {
  const { url } = await startService(t, UNSHED)
  const reply = await fuseForm(url, componentScansJpeg())
  t.same([reply.status, reply.json().code], [422, 'FUSION_IMAGE_TOO_MANY_SCANS'])
})

t.test('IMAGE_TIMEOUT_SECONDS answers a photo libvips cannot stop, and others are served meanwhile', async (t) => {
  // The scan limit raised so that a slow progressive JPEG reaches the decoder: every scan is decoded before the first
  // output line, where libvips would check its own timeout.
  const { url, app } = await startService(t, { ...UNSHED, IMAGE_MAX_JPEG_SCANS: '1000', IMAGE_TIMEOUT_SECONDS: '1' })
  const slow = await slowPhoto()
  const started = Date.now()
  const [refused, ...ordinary] = await Promise.all([
    fuseForm(url, slow).then((reply) => ({ reply, ms: Date.now() - started })),
    ...ordinaryClients(url)
  ])
  t.match({ status: refused!.reply.status, ...refused!.reply.json() }, { status: 422, code: 'FUSION_IMAGE_TIMEOUT' })
  t.ok(refused!.ms < 4_000, `answered after ${refused!.ms} ms, at the timeout, not when libjpeg was done`)
  allServed(t, ordinary as Reply[], 'beside a photo past its timeout')
  // Its job and memory stay counted until libvips has really finished with it.
  t.equal(app.imagePipeline.load.running, 1, 'its job is still taken: libvips is still decoding')
  await eventually(() => app.imagePipeline.load.running === 0)
  t.equal(app.imagePipeline.load.decodeMemoryBytes, 0)
})

t.test('a wait for an image job never outlasts the deadline: 503 FUSION_OVERLOADED with Retry-After, never a 504', async (t) => {
  const { url, app } = await startService(t, {
    ...UNSHED,
    IMAGE_CONCURRENCY: '1', REQUEST_DEADLINE_MS: '1000', IMAGE_MAX_JPEG_SCANS: '1000', IMAGE_TIMEOUT_SECONDS: '30'
  })
  // The one job held by a slow photo given straight to the pipeline, so that no deadline of its own can end it first.
  const holding = app.imagePipeline.normalize(await slowPhoto())
  await eventually(() => app.imagePipeline.load.running === 1)
  const started = Date.now()
  const waiting = await fuseForm(url, fixture('face.jpg'))
  const ms = Date.now() - started
  t.match({ status: waiting.status, ...waiting.json() }, { status: 503, code: 'FUSION_OVERLOADED' })
  t.equal(waiting.headers['retry-after'], '1')
  t.ok(ms >= 900 && ms < 8_000, `answered at its deadline (${ms} ms), not when the job came free`)
  t.equal(app.imagePipeline.load.running, 1, 'the job was still taken')
  await holding
})

t.test('decode memory stays within IMAGE_DECODE_MEMORY_BYTES: the service process\'s peak, under costly photos', async (t) => {
  const budget = 320 * MiB
  const { process: service, url } = await runOnFreePort(t, 'src/server.ts', {
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    RATE_LIMIT_MAX: '1000000',
    // Every request of this test comes from one address: its share of the image places is not what is measured.
    IMAGE_PLACES_PER_CLIENT: '10000',
    ...UNSHED,
    // The costly photos take their turns: on a busy machine that can take longer than the default 30 s.
    REQUEST_DEADLINE_MS: '120000',
    IMAGE_DECODE_MEMORY_BYTES: String(budget)
  }, /EMULATOR MODE/)
  const status = (field: 'VmRSS' | 'VmHWM'): number =>
    Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${service.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024
  // Warm: the first photo loads libvips' decoders and the emulator's.
  t.equal((await fuseForm(url, fixture('face.jpg'))).status, 200)
  const idle = status('VmRSS')

  // Each about 185 MiB to decode (estimated 290), so one at a time fits the budget; three at once, as the job slots
  // alone would allow, would take about 560 MiB.
  const costly = await plainImage({ format: 'avif', width: 3500, height: 3500 })
  const refusedAtOnce = await Promise.all(HOSTILE_IMAGES.filter((entry) => entry.status === 413).map(async (entry) => await entry.build()))
  const patiently = async (photo: Buffer): Promise<Reply> => await fuseFormWithin(url, photo, 120_000)
  const replies = await Promise.all([
    ...[1, 2, 3].map(async () => await patiently(costly)),
    ...refusedAtOnce.map(async (photo) => await patiently(photo)),
    ...Array.from({ length: ORDINARY }, async () => await patiently(fixture('face.jpg')))
  ])
  t.same(replies.slice(0, 3).map((reply) => reply.status), [200, 200, 200], 'the costly photos are served, in turn')
  t.same(replies.slice(3, 3 + refusedAtOnce.length).map((reply) => reply.json().code), refusedAtOnce.map(() => 'FUSION_IMAGE_DECODE_TOO_LARGE'))
  allServed(t, replies.slice(3 + refusedAtOnce.length), 'beside them')
  const rise = status('VmHWM') - idle
  t.ok(rise < budget + 128 * MiB, `peak ${Math.round(rise / MiB)} MiB over idle, within the ${budget / MiB} MiB budget and 128 MiB for ` +
    'the uploads and the heap')
})
