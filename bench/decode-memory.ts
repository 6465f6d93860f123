/**
 * What decoding one photo costs in memory, per format: each case runs the
 * service's own normalisation (src/images/normalize.ts) on one photo in a
 * fresh process and reports the rise of its peak resident set (VmHWM, reset
 * just before the photo via /proc/self/clear_refs) over what the process held
 * before, in MiB and in bytes per input pixel. These figures are the evidence
 * for the cost table in src/images/decode-cost.ts: the estimate must stay at
 * or above every measured peak, which the last column checks.
 *
 *   npm run bench:decode-memory
 *
 * MAX_SIDE=4095: API 3.0's larger photos; SIZES=1000,7000: other sizes; ONLY=avif: the cases named so;
 * JEMALLOC=1: jemalloc preloaded, as in the container; THREADS=8: libvips threads per photo (the pipeline uses 1).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import sharp from 'sharp'
import { estimateDecodeCost } from '../src/images/decode-cost.js'
import { normalizeImage } from '../src/images/normalize.js'
import { plainImage, scanBombJpeg, type PlainImage } from '../test/hostile/image-corpus.js'
import { containerMallocConf, root } from './support.js'

const MiB = 1024 * 1024

function hwmBytes (field: 'VmHWM' | 'VmRSS'): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'))
  return Number(match?.[1] ?? 0) * 1024
}

const policy = (maxSide: number): Parameters<typeof normalizeImage>[1] =>
  ({ maxSide, maxBytes: maxSide > 1080 ? 3_750_000 : 500_000, maxInputPixels: 268_402_689, minShortSide: 64, maxJpegScans: 1000, timeoutSeconds: 300 })

if (process.argv[2] === '--child') {
  // One photo in a fresh process: warm sharp up on a small one of the same kind, then measure only the real one.
  const [, , , file, maxSideText, warmFile] = process.argv
  const maxSide = Number(maxSideText)
  sharp.cache(false)
  // One libvips thread per photo, as the image pipeline sets it (src/images/pipeline.ts), unless THREADS says otherwise.
  sharp.concurrency(Number(process.env.THREADS ?? 1))
  await normalizeImage(readFileSync(warmFile!), policy(maxSide))
  const input = readFileSync(file!)
  globalThis.gc?.()
  await new Promise((resolve) => setTimeout(resolve, 200))
  const before = hwmBytes('VmRSS')
  writeFileSync('/proc/self/clear_refs', '5')
  const started = performance.now()
  await normalizeImage(input, policy(maxSide))
  const ms = performance.now() - started
  process.stdout.write(JSON.stringify({ peak: hwmBytes('VmHWM') - before, ms }))
  process.exit(0)
}

const maxSide = Number(process.env.MAX_SIDE ?? 1080)
// Squares, then the widest and tallest shapes the legacy upstream's 1080 px and 64 px short side allow.
const sizes = (process.env.SIZES ?? '1000,3000,5000,7000,16000x1000,1000x16000').split(',').map((size) => {
  const [width, height = width] = size.split('x').map(Number)
  return { width: width!, height: height! }
})
const kinds: Array<{ name: string, spec: Omit<PlainImage, 'width' | 'height'> }> = [
  { name: 'jpeg 4:2:0', spec: { format: 'jpeg' } },
  { name: 'jpeg 4:4:4', spec: { format: 'jpeg', chromaSubsampling: '4:4:4' } },
  { name: 'jpeg grey', spec: { format: 'jpeg', channels: 1 } },
  { name: 'jpeg progressive', spec: { format: 'jpeg', progressive: true } },
  { name: 'jpeg progressive 4:4:4', spec: { format: 'jpeg', progressive: true, chromaSubsampling: '4:4:4' } },
  { name: 'jpeg exif 6', spec: { format: 'jpeg', orientation: 6 } },
  { name: 'jpeg progressive exif 6', spec: { format: 'jpeg', progressive: true, orientation: 6 } },
  { name: 'png rgb', spec: { format: 'png' } },
  { name: 'png rgba', spec: { format: 'png', channels: 4 } },
  { name: 'png rgba 16-bit', spec: { format: 'png', channels: 4, bitdepth: 16 } },
  { name: 'png interlaced rgb', spec: { format: 'png', progressive: true } },
  { name: 'png interlaced rgba 16-bit', spec: { format: 'png', progressive: true, channels: 4, bitdepth: 16 } },
  { name: 'webp rgb', spec: { format: 'webp' } },
  { name: 'webp rgba', spec: { format: 'webp', channels: 4 } },
  { name: 'avif 8-bit', spec: { format: 'avif' } },
  { name: 'avif 8-bit alpha', spec: { format: 'avif', channels: 4 } },
  { name: 'avif 4:4:4', spec: { format: 'avif', chromaSubsampling: '4:4:4' } },
  { name: 'avif 4:4:4 alpha', spec: { format: 'avif', channels: 4, chromaSubsampling: '4:4:4' } },
  { name: 'avif 12-bit alpha', spec: { format: 'avif', channels: 4, bitdepth: 12 } },
  { name: 'avif 10-bit', spec: { format: 'avif', bitdepth: 10 } },
  { name: 'avif 12-bit 4:4:4 alpha', spec: { format: 'avif', channels: 4, bitdepth: 12, chromaSubsampling: '4:4:4' } },
  { name: 'png exif 6', spec: { format: 'png', orientation: 6 } },
  { name: 'webp exif 6', spec: { format: 'webp', orientation: 6 } },
  { name: 'avif exif 6', spec: { format: 'avif', orientation: 6 } }
]
const only = process.env.ONLY
const jemalloc = ['/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2'].find((path) => existsSync(path))
// As the container runs: jemalloc with the Dockerfile's MALLOC_CONF; sharp then uses every core (with glibc, one thread).
const childEnv = process.env.JEMALLOC === '1' && jemalloc !== undefined
  ? { ...process.env, LD_PRELOAD: jemalloc, MALLOC_CONF: containerMallocConf() }
  : process.env
console.log(`peak memory of one normalisation (maxSide ${maxSide}), ${childEnv === process.env ? 'glibc malloc' : 'jemalloc'}, ` +
  `libvips threads per photo ${process.env.THREADS ?? 1}`)
console.log('case'.padEnd(28), 'size'.padStart(11), 'pixels'.padStart(11), 'bytes'.padStart(10), 'peak MiB'.padStart(9), 'B/px'.padStart(6),
  'ms'.padStart(7), 'estimate MiB'.padStart(13), 'covered'.padStart(8))
const work = join(tmpdir(), `decode-memory-${process.pid}`)
for (const kind of kinds) {
  if (only !== undefined && !kind.name.includes(only)) continue
  const warm = await plainImage({ ...kind.spec, width: 400, height: 400 })
  writeFileSync(`${work}-warm`, warm)
  for (const { width, height } of sizes) {
    const input = await plainImage({ ...kind.spec, width, height })
    await report(kind.name, input)
  }
}
if (only === undefined || 'phone photo'.includes(only)) {
  // Detailed enough that the first JPEG is over the byte budget: the re-encode search runs.
  const phone = readFileSync(join(root, 'test', 'fixtures', 'images', 'phone-photo-3000x4000.jpg'))
  writeFileSync(`${work}-warm`, await plainImage({ format: 'jpeg', width: 400, height: 400 }))
  await report('phone photo (re-encoded)', phone)
}
if (only === undefined || 'scan bomb'.includes(only)) {
  writeFileSync(`${work}-warm`, await plainImage({ format: 'jpeg', progressive: true, width: 400, height: 400 }))
  await report('jpeg 100 scans (limit)', await scanBombJpeg({ scans: 99 }))
}

async function report (name: string, input: Buffer): Promise<void> {
  writeFileSync(work, input)
  const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', join(root, 'bench', 'decode-memory.ts'), '--child', work,
    String(maxSide), `${work}-warm`], { cwd: root, env: childEnv, encoding: 'utf8', maxBuffer: 1 << 20 })
  if (child.status !== 0) {
    console.log(name.padEnd(28), `failed: ${child.stderr.split('\n').find((line) => line.trim() !== '') ?? child.status}`)
    return
  }
  const { peak, ms } = JSON.parse(child.stdout) as { peak: number, ms: number }
  const metadata = await sharp(input, { limitInputPixels: false }).metadata()
  const pixels = (metadata.width ?? 0) * (metadata.height ?? 0)
  const estimate = estimateDecodeCost(metadata, maxSide)
  console.log(name.padEnd(28), `${metadata.width}x${metadata.height}`.padStart(11), String(pixels).padStart(11), String(input.length).padStart(10), (peak / MiB).toFixed(0).padStart(9),
    (peak / pixels).toFixed(1).padStart(6), ms.toFixed(0).padStart(7), (estimate / MiB).toFixed(0).padStart(13),
    (estimate >= peak ? 'yes' : 'NO').padStart(8))
}
