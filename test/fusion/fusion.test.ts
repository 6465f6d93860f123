import t from 'tap'
import { createFusion } from '../../src/fusion/fusion.js'
import { createImagePipeline } from '../../src/images/pipeline.js'
import { createLegacyClient } from '../../src/upstream/legacy/client.js'
import { LEGACY_IMAGE_LIMITS, V3_IMAGE_LIMITS } from '../../src/upstream/image-limits.js'
import { createV3Client } from '../../src/upstream/v3/client.js'
import { EMULATOR_ACCOUNT } from '../../emulator/shared/accounts.js'
import { TEST_TRANSPORT, answerJson, captureLogs, fixture, startEmulator, stubUpstream, until } from '../helper.js'
import { fusionError } from '../../src/errors.js'
import type { ImagePipeline } from '../../src/images/pipeline.js'
import pino from 'pino'

const pipeline = (limits = LEGACY_IMAGE_LIMITS): ReturnType<typeof createImagePipeline> =>
  createImagePipeline({
    policy: { ...limits, maxInputPixels: 50_000_000, maxJpegScans: 100, timeoutSeconds: 10 },
    concurrency: 1,
    queueLimit: 1,
    decodeMemoryBytes: 1024 * 1024 * 1024
  })

/** The legacy client against an emulator, as the service builds it. */
function legacyClient (t: Parameters<typeof startEmulator>[0], url: string): ReturnType<typeof createLegacyClient> {
  const client = createLegacyClient({ ...TEST_TRANSPORT, url, mode: 'emulator', credentials: EMULATOR_ACCOUNT.credentials, signatureTtlSeconds: 300 })
  t.teardown(client.close)
  return client
}

t.test('the fusion runs without HTTP around it: a photo in, the upstream\'s picture and its expiry out', async (t) => {
  const received: Buffer[] = []
  const emulator = await startEmulator(t, { onPhoto: (photo) => received.push(photo) })
  const upstream = legacyClient(t, emulator.legacyUrl)
  const fusion = createFusion({ images: pipeline(), upstream })
  const logs = captureLogs()
  let released = 0
  const before = Date.now()
  const fused = await fusion.fuse(
    { projectId: '100307', modelId: 'qc_100307_152854_1', resultType: 'url', options: {}, photo: fixture('face-exif-orientation-6.jpg') },
    { deadline: Date.now() + 10_000, signal: new AbortController().signal, photoReleased: () => { released++ }, log: pino(logs.stream) }
  )
  t.match(fused.result, { resultType: 'url', imageUrl: /^http:\/\/127\.0\.0\.1:\d+\// })
  t.ok(fused.expiresAt !== undefined && fused.expiresAt >= before + 86_400_000, 'a URL answer carries the upstream\'s documented lifetime')
  t.equal(released, 1, 'the photo is released once, when normalised')
  t.equal(received.length, 1)
  t.equal(received[0]![0], 0xff, 'the upstream received the normalised JPEG')
  t.match(logs.lines(), [{ msg: 'image normalised', image: { format: 'jpeg' } }, { msg: 'upstream call' }])
})

t.test('a caller that gave up before the photo was read gets FUSION_CLIENT_CLOSED_REQUEST, and nothing is sent', async (t) => {
  const received: Buffer[] = []
  const emulator = await startEmulator(t, { onPhoto: (photo) => received.push(photo) })
  const upstream = legacyClient(t, emulator.legacyUrl)
  const fusion = createFusion({ images: pipeline(), upstream })
  const gone = new AbortController()
  gone.abort()
  let released = 0
  await t.rejects(fusion.fuse(
    { projectId: '100307', modelId: 'qc_100307_152854_1', resultType: 'url', options: {}, photo: fixture('face.jpg') },
    { deadline: Date.now() + 10_000, signal: gone.signal, photoReleased: () => { released++ }, log: pino({ level: 'silent' }) }
  ), { code: 'FUSION_CLIENT_CLOSED_REQUEST' })
  t.equal(released, 1, 'its photo is released all the same')
  t.equal(received.length, 0)
})

t.test('stopping in a hurry: a photo still waiting is refused with FUSION_SHUTTING_DOWN; a call already sent is answered', async (t) => {
  let release = (): void => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  t.teardown(() => release())
  const stub = await stubUpstream(t, (_call, response) => {
    void gate.then(() => answerJson(response, { ret: '0', img_url: 'https://example.invalid/fused.jpg' }))
  })
  const upstream = legacyClient(t, stub.url)
  const input = { projectId: '100307', modelId: 'qc_100307_152854_1', resultType: 'url' as const, options: {}, photo: fixture('face.jpg') }
  const stop = new AbortController()
  const context = { deadline: Date.now() + 10_000, signal: new AbortController().signal, stop: stop.signal, log: pino({ level: 'silent' }) }

  const sent = createFusion({ images: pipeline(), upstream }).fuse(input, context)
  await until(() => stub.calls.length === 1)
  // A pipeline whose every job slot is taken: the photo waits, and is refused (as the real one does) when its signal aborts.
  const full: ImagePipeline = {
    ...pipeline(),
    normalize: async (_photo, options) => await new Promise((_resolve, reject) => {
      options?.signal?.addEventListener('abort', () => {
        options.released?.()
        reject(fusionError('FUSION_CLIENT_CLOSED_REQUEST'))
      }, { once: true })
    })
  }
  let released = 0
  const waiting = createFusion({ images: full, upstream }).fuse(input, { ...context, photoReleased: () => { released++ } })

  stop.abort(fusionError('FUSION_SHUTTING_DOWN', { retryAfterSeconds: 1 }))
  await t.rejects(waiting, { code: 'FUSION_SHUTTING_DOWN', statusCode: 503 }, 'the waiting photo: refused, as the service\'s doing')
  t.equal(released, 1, 'its photo released')
  await t.rejects(createFusion({ images: pipeline(), upstream }).fuse(input, context), { code: 'FUSION_SHUTTING_DOWN' },
    'a fusion begun after: refused before any work')
  release()
  t.match((await sent).result, { resultType: 'url', imageUrl: 'https://example.invalid/fused.jpg' }, 'the call already sent: its answer')
  t.equal(stub.calls.length, 1, 'nothing else reached the upstream')
})

t.test('options the upstream cannot honour are refused by name, before any work', async (t) => {
  const client = (version: '2018-12-01' | '2022-09-27'): ReturnType<typeof createV3Client> => createV3Client({
    ...TEST_TRANSPORT, url: 'http://127.0.0.1:9/', mode: 'emulator', credentials: { secretId: 'id', secretKey: 'key' }, region: 'ap-guangzhou', action: 'FuseFace', version
  })
  const old = createFusion({ images: pipeline(V3_IMAGE_LIMITS['2018-12-01']), upstream: client('2018-12-01') })
  t.throws(() => { old.checkOptions({ faceDegree: 10, logoAdd: false }) },
    { code: 'FUSION_UNSUPPORTED_OPTION', statusCode: 400, message: /`logo_add` is not available with API 3.0 FuseFace 2018-12-01/ })
  t.doesNotThrow(() => { createFusion({ images: pipeline(), upstream: client('2022-09-27') }).checkOptions({ faceDegree: 10, logoAdd: false }) })
  const legacy = legacyClient(t, 'http://127.0.0.1:9/')
  const fusion = createFusion({ images: pipeline(), upstream: legacy })
  t.doesNotThrow(() => { fusion.checkOptions({}) }, 'no options: any upstream')
  let released = 0
  await t.rejects(fusion.fuse(
    { projectId: '100307', modelId: 'm', resultType: 'url', options: { faceDegree: 1 }, photo: fixture('face.jpg') },
    { deadline: Date.now() + 10_000, signal: new AbortController().signal, photoReleased: () => { released++ }, log: pino({ level: 'silent' }) }
  ), { code: 'FUSION_UNSUPPORTED_OPTION', message: /`fuse_face_degree` is not available with the legacy API/ })
  t.equal(released, 1)
})

t.test('a fusion whose deadline has passed before its photo got a job is 503 FUSION_OVERLOADED, never the upstream\'s timeout', async (t) => {
  const received: Buffer[] = []
  const emulator = await startEmulator(t, { onPhoto: (photo) => received.push(photo) })
  const fusion = createFusion({ images: pipeline(), upstream: legacyClient(t, emulator.legacyUrl) })
  let released = 0
  await t.rejects(fusion.fuse(
    { projectId: '100307', modelId: 'qc_100307_152854_1', resultType: 'url', options: {}, photo: fixture('face.jpg') },
    { deadline: Date.now() - 1, signal: new AbortController().signal, photoReleased: () => { released++ }, log: pino({ level: 'silent' }) }
  ), { code: 'FUSION_OVERLOADED', statusCode: 503, retryAfterSeconds: 1 })
  t.equal(released, 1)
  t.equal(received.length, 0, 'the upstream was never called')
})
