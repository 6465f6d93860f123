/**
 * Memory under a burst: 50 concurrent uploads of a large phone photo, the
 * service's resident set sampled every 20 ms. Prints peak RSS, RSS a few
 * seconds after the burst, and how the 50 were answered (the image pipeline
 * admits IMAGE_CONCURRENCY + IMAGE_QUEUE_LIMIT at once and sheds the rest with
 * 503 before reading them). Runs once per allocator setting and body type, side
 * by side, each on a fresh service: the photo as a multipart form and as a JSON
 * body with the photo in base64 (as server-side callers send it); glibc's
 * default, MALLOC_ARENA_MAX=2, and jemalloc when installed (Debian:
 * libjemalloc2), as the container uses it.
 *
 * Each on both paths upstream: the legacy API and FuseFace 2022-09-27.
 *
 *   npm run bench:memory            (UPLOADS, ROUNDS, BODIES=multipart,json, PATHS=legacy,fuseface-2022,
 *                                    SETTINGS=glibc,container,... to change the run)
 */
import { existsSync, readFileSync } from 'node:fs'
import { request } from 'undici'
import { containerMallocConf, instantUpstream, jsonPhoto, median, multipartPhoto, pathsFromEnv, root, startBuiltService } from './support.js'
import { join } from 'node:path'

const uploads = Number(process.env.UPLOADS ?? 50)
const rounds = Number(process.env.ROUNDS ?? 3)
const list = (value: string | undefined): string[] | undefined => value?.split(',').map((item) => item.trim()).filter(Boolean)
const bodyKinds = list(process.env.BODIES) ?? ['multipart', 'json']
const paths = pathsFromEnv()
const photo = readFileSync(join(root, 'test', 'fixtures', 'images', 'phone-photo-3000x4000.jpg'))
const jemalloc = ['/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2'].find((path) => existsSync(path))

const settings: Record<string, Record<string, string>> = {
  glibc: {},
  'MALLOC_ARENA_MAX=2': { MALLOC_ARENA_MAX: '2' },
  ...(jemalloc !== undefined
    ? {
        jemalloc: { LD_PRELOAD: jemalloc },
        // What the container sets (the Dockerfile's MALLOC_CONF): one arena, and a background thread that returns freed
        // pages within a second.
        container: { LD_PRELOAD: jemalloc, MALLOC_CONF: containerMallocConf() }
      }
    : {})
}
const chosen = list(process.env.SETTINGS)
for (const name of Object.keys(settings)) if (chosen !== undefined && !chosen.includes(name)) delete settings[name]
if (Object.keys(settings).length === 0) throw new Error(`SETTINGS: none of ${chosen?.join(', ')} is available`)
if (jemalloc === undefined) console.log('jemalloc not installed (apt-get install libjemalloc2): measuring glibc only')

const rssMiB = (pid: number): number => {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(match?.[1] ?? 0) / 1024
}
// The service process also gets MALLOC_CONF when a setting names it.
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

const upstream = await instantUpstream()
const bodies: Record<string, { body: Buffer, contentType: string }> = { multipart: multipartPhoto(photo), json: jsonPhoto(photo) }
for (const kind of bodyKinds) if (bodies[kind] === undefined) throw new Error(`BODIES: unknown body type ${kind} (multipart, json)`)
console.log(`${uploads} concurrent uploads of a ${(photo.length / 1e6).toFixed(1)} MB, 12 MP photo ` +
  `(${bodyKinds.map((kind) => `${kind}: a ${(bodies[kind]!.body.length / 1e6).toFixed(1)} MB body`).join(', ')}); ${rounds} rounds per setting`)

const results: Record<string, { idle: number[], peak: number[], after: number[], later: number[] }> = {}
for (let round = 1; round <= rounds; round++) {
  for (const [setting, env] of Object.entries(settings)) {
    for (const path of paths) {
      for (const kind of bodyKinds) await measure(round, `${path} ${kind} ${setting}`, { ...upstream.env(path), ...env }, bodies[kind]!)
    }
  }
}

async function measure (round: number, name: string, env: Record<string, string>, { body, contentType }: { body: Buffer, contentType: string }): Promise<void> {
  const service = await startBuiltService(env)
  const pid = service.child.pid!
  await sleep(500)
  const idle = rssMiB(pid)
  let peak = idle
  const sampler = setInterval(() => { peak = Math.max(peak, rssMiB(pid)) }, 20)
  const statuses: Record<number, number> = {}
  await Promise.all(Array.from({ length: uploads }, async () => {
    try {
      const response = await request(`${service.url}/fuse`, { method: 'POST', body, headers: { 'content-type': contentType } })
      await response.body.dump()
      statuses[response.statusCode] = (statuses[response.statusCode] ?? 0) + 1
    } catch {
      // A shed upload's connection is closed while it is still being sent.
      statuses[0] = (statuses[0] ?? 0) + 1
    }
  }))
  await sleep(3000)
  clearInterval(sampler)
  const after = rssMiB(pid)
  await sleep(12_000)
  const later = rssMiB(pid)
  service.child.kill('SIGTERM')
  results[name] ??= { idle: [], peak: [], after: [], later: [] }
  results[name].idle.push(idle)
  results[name].peak.push(peak)
  results[name].after.push(after)
  results[name].later.push(later)
  console.log(`round ${round} ${name.padEnd(44)} idle ${idle.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB, ` +
    `3 s after ${after.toFixed(0)} MiB, 15 s after ${later.toFixed(0)} MiB; answers ${JSON.stringify(statuses)}`)
}
for (const [name, r] of Object.entries(results)) {
  console.log(`median ${name.padEnd(44)} idle ${median(r.idle).toFixed(0)} MiB, peak ${median(r.peak).toFixed(0)} MiB, ` +
    `3 s after ${median(r.after).toFixed(0)} MiB, 15 s after ${median(r.later).toFixed(0)} MiB`)
}
upstream.server.close()
process.exit(0)
