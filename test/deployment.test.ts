import t from 'tap'
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { loadConfig } from '../src/config/load.js'
import { ConfigSchema } from '../src/config/schema.js'
import { startService } from './helper.js'

const read = (path: string): string => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8')
const variables = Object.keys(ConfigSchema.properties)

interface Compose {
  services: Record<string, { environment?: Record<string, string>, mem_limit?: string }>
  networks?: { default?: { ipam?: { config?: Array<{ subnet?: string }> } } }
}
/** What compose hands the service for a variable when neither .env nor the shell sets it: `${NAME:-default}`'s default. */
const composed = (value: string | undefined): string | undefined => value?.replace(/^\$\{\w+:-(.*)\}$/, '$1')
/** Docker's byte sizes: 512m, 2g. */
const bytes = (size: string): number => {
  const [, number = '', unit = ''] = /^(\d+)([bkmg]?)$/i.exec(size) ?? []
  return Number(number) * 1024 ** 'bkmg'.indexOf(unit.toLowerCase() || 'b')
}
const MiB = 1024 * 1024

t.test('docker-compose.yml sets only variables the config schema knows', async (t) => {
  const compose = parse(read('docker-compose.yml')) as { services: Record<string, { environment?: Record<string, unknown> }> }
  const services = Object.entries(compose.services)
  t.ok(services.length > 0)
  for (const [name, service] of services) {
    if (name !== 'face-fusion-bff') continue
    const environment = Object.keys(service.environment ?? {})
    t.ok(environment.length > 0, `${name} sets variables`)
    for (const variable of environment) t.ok(variables.includes(variable), `${name}: ${variable} is in the schema`)
  }
})

t.test('docker-compose.yml runs the service with Redis', async (t) => {
  const compose = parse(read('docker-compose.yml')) as { services: Record<string, { environment?: Record<string, unknown>, image?: string, depends_on?: Record<string, unknown> }> }
  t.match(compose.services.redis?.image, /^redis:/)
  t.match(String(compose.services['face-fusion-bff']?.environment?.REDIS_URL), /^redis:\/\/redis:6379$/)
  t.ok(compose.services['face-fusion-bff']?.depends_on?.redis, 'the service waits for Redis')
})

t.test('docker-compose.yml gives the job line a Redis that never evicts', async (t) => {
  const compose = parse(read('docker-compose.yml')) as {
    services: Record<string, { environment?: Record<string, unknown>, command?: string[], depends_on?: Record<string, unknown> }>
  }
  t.equal(compose.services['face-fusion-bff']?.environment?.QUEUE_REDIS_URL, 'redis://queue-redis:6379')
  t.ok(compose.services['face-fusion-bff']?.depends_on?.['queue-redis'], 'the service waits for it')
  const command = compose.services['queue-redis']?.command ?? []
  t.equal(command[command.indexOf('--maxmemory-policy') + 1], 'noeviction', 'BullMQ loses no key to eviction')
  const shared = compose.services.redis?.command ?? []
  t.equal(shared[shared.indexOf('--maxmemory-policy') + 1], 'volatile-lru', 'while counters and stored answers may be evicted')
})

t.test('docker-compose.yml believes X-Forwarded-For from its own network only', async (t) => {
  const compose = parse(read('docker-compose.yml')) as Compose
  const subnet = compose.networks?.default?.ipam?.config?.[0]?.subnet
  t.match(subnet, /^\d+\.\d+\.\d+\.0\/24$/, 'the network\'s subnet is pinned')
  const trustProxy = composed(compose.services['face-fusion-bff']?.environment?.TRUST_PROXY)
  t.equal(trustProxy, subnet, 'TRUST_PROXY names it')

  // The service as compose configures it. The gateway, on the network or on the host through the published ports,
  // connects from an address of the subnet (.1 is the bridge's).
  const { app } = await startService(t, { TRUST_PROXY: trustProxy!, RATE_LIMIT_MAX: '1' })
  const gateway = subnet!.replace(/0\/24$/, '1')
  const fuse = async (remoteAddress: string, forwardedFor: string): Promise<number> => (await app.inject({
    method: 'POST', url: '/fuse', payload: '{}', remoteAddress, headers: { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor }
  })).statusCode
  t.equal(await fuse(gateway, '203.0.113.7'), 400, 'a client behind the gateway is served')
  t.equal(await fuse(gateway, '198.51.100.23'), 400, 'and another one, on a limit of its own')
  t.equal(await fuse(gateway, '203.0.113.7'), 429, 'while the first has spent its own')
  t.equal(await fuse('192.0.2.50', '198.51.100.99'), 400, 'a client reaching the service directly is counted as itself')
  t.equal(await fuse('192.0.2.50', '198.51.100.100'), 429, 'and cannot name another address to dodge its limit')
})

t.test('docker-compose.yml caps a replica\'s memory and sheds load below the cap', async (t) => {
  const compose = parse(read('docker-compose.yml')) as Compose
  const service = compose.services['face-fusion-bff']!
  t.match(service.mem_limit, /^\d+[bkmg]?$/i, 'a memory limit')
  const limit = bytes(service.mem_limit!)
  const shedAt = composed(service.environment?.PRESSURE_MAX_RSS_BYTES)
  t.equal(shedAt, service.environment?.PRESSURE_MAX_RSS_BYTES, 'a fixed value, which .env cannot move away from the limit')
  t.equal(loadConfig({ PRESSURE_MAX_RSS_BYTES: shedAt }).PRESSURE_MAX_RSS_BYTES, Number(shedAt), 'that the service accepts')
  // What the image pipeline admits at the defaults: its decode budget, an upload buffer per place (3 jobs at most
  // by default, src/images/pipeline.ts, and the queue), and the idle process (about 130 MiB in `npm run bench:memory`).
  const { IMAGE_DECODE_MEMORY_BYTES, IMAGE_QUEUE_LIMIT } = ConfigSchema.properties
  const admitted = IMAGE_DECODE_MEMORY_BYTES.default + Number(composed(service.environment?.MAX_UPLOAD_BYTES)) *
    (3 + IMAGE_QUEUE_LIMIT.default) + 130 * MiB
  t.ok(Number(shedAt) >= admitted, `shedding at ${Number(shedAt) / MiB} MiB leaves a full pipeline (${Math.round(admitted / MiB)} MiB) served`)
  t.ok(limit - Number(shedAt) >= 250 * MiB,
    `${(limit - Number(shedAt)) / MiB} MiB between shedding and the limit: V8's garbage and the allocator's keep (250 MiB) fit`)
})

t.test('the README\'s examples leave no file in the checkout', async (t) => {
  const outputs = [...read('README.md').matchAll(/(?:^|\s)(?:-o|--output)[ =](\S+)/gm)].map(([, path]) => path)
  // Whatever examples the README keeps: a curl that saves a picture saves it outside the checkout.
  t.ok(outputs.length > 0, 'the README shows saving a picture')
  for (const path of outputs) t.match(path, /^(\/|-$)/, `${path}: outside the checkout, or stdout`)
})

t.test('.env.example and docs/configuration.md list every variable', async (t) => {
  const example = read('.env.example')
  const reference = read('docs/configuration.md')
  for (const variable of variables) {
    t.match(example, new RegExp(`^#? ?${variable}=`, 'm'), `.env.example has ${variable}`)
    t.ok(reference.includes(`\`${variable}\``), `docs/configuration.md has ${variable}`)
  }
})

t.test('the container runs the current LTS as a non-root user, with a healthcheck', async (t) => {
  const dockerfile = read('Dockerfile')
  t.match(dockerfile, /^FROM node:24[^\s]* AS build$/m)
  t.match(dockerfile, /^USER node$/m)
  t.equal(dockerfile.match(/^USER .*$/gm)?.at(-1), 'USER node', 'the last user set is node')
  t.match(dockerfile, /^HEALTHCHECK /m)
  t.match(dockerfile, /npm ci/)
  t.match(read('.dockerignore'), /^node_modules$/m)
})

t.test('the service cannot rewrite its own files: root owns them, and they are not writable by others', async (t) => {
  const dockerfile = read('Dockerfile')
  const stages = dockerfile.split(/^FROM /m)
  const runtime = stages.at(-1)!
  const copies = runtime.match(/^COPY .*$/gm) ?? []
  t.ok(copies.length >= 4, 'the runtime stage copies the application')
  for (const copy of copies) {
    // COPY makes root the owner unless told otherwise.
    t.notMatch(copy, /--chown|--chmod/, `${copy}: owned by root`)
    t.match(copy, /^COPY --from=build \/app\//, `${copy}: from the build stage, whose modes are fixed`)
  }
  t.ok(runtime.lastIndexOf('\nCOPY ') < runtime.indexOf('\nUSER node'), 'the files are in place before the service\'s user takes over')
  t.notMatch(runtime, /chown|chmod/, 'no later change hands them over')

  // The build stage takes write permission from group and others (node is neither root nor in root's group) on every
  // path the runtime stage copies, whatever modes the checkout had, and keeps them readable.
  const modes = /^RUN .*chmod -R a\+rX,go-w ([^&\n]+)$/m.exec(stages.at(-2) ?? '')
  t.ok(modes, 'the build stage fixes the modes')
  const fixed = modes?.[1]?.trim().split(/\s+/) ?? []
  for (const copy of copies) {
    const source = /--from=build \/app\/(\S+)/.exec(copy)?.[1]
    t.ok(source !== undefined && fixed.includes(source), `${source}: read-only to the service`)
  }
})

t.test('the build compiles the service and the emulator, and the image runs what it built', async (t) => {
  const build = JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { rootDir: string, outDir: string }, include: string[] }
  t.same(build.include, ['src', 'emulator'])
  t.equal(build.compilerOptions.rootDir, '.')
  const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts
  t.equal(scripts.start, 'node --max-semi-space-size=2 dist/src/server.js')
  t.equal(scripts.prestart, 'npm run build')
  t.equal(scripts.build, 'node scripts/build.ts', 'the incremental build (test/build.test.ts)')
  t.equal(scripts.emulator, 'tsx emulator/server.ts')
  const dockerfile = read('Dockerfile')
  t.match(dockerfile, /^COPY src \.\/src$/m)
  t.match(dockerfile, /^COPY scripts\/build\.ts \.\/scripts\/$/m, 'the image builds with the same script')
  t.match(dockerfile, /^COPY emulator \.\/emulator$/m, 'the emulator is built into the image')
  t.match(dockerfile, /^CMD \["node", "--max-semi-space-size=2", "dist\/src\/server\.js"\]$/m, 'the image starts as npm start does')
  t.notMatch(read('.dockerignore'), /^emulator\/?$/m)
})
