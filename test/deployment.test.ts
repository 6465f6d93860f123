import t from 'tap'
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { ConfigSchema } from '../src/config/schema.js'

const read = (path: string): string => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8')
const variables = Object.keys(ConfigSchema.properties)

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
  t.match(dockerfile, /^HEALTHCHECK /m)
  t.match(dockerfile, /npm ci/)
  t.match(read('.dockerignore'), /^node_modules$/m)
})

t.test('the build compiles the service and the emulator, and the image runs what it built', async (t) => {
  const build = JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { rootDir: string, outDir: string }, include: string[] }
  t.same(build.include, ['src', 'emulator'])
  t.equal(build.compilerOptions.rootDir, '.')
  const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts
  t.equal(scripts.start, 'node dist/src/server.js')
  t.equal(scripts.prestart, 'npm run build')
  t.equal(scripts.build, 'node scripts/build.ts', 'the incremental build (test/build.test.ts)')
  t.equal(scripts.emulator, 'tsx emulator/server.ts')
  const dockerfile = read('Dockerfile')
  t.match(dockerfile, /^COPY src \.\/src$/m)
  t.match(dockerfile, /^COPY scripts\/build\.ts \.\/scripts\/$/m, 'the image builds with the same script')
  t.match(dockerfile, /^COPY emulator \.\/emulator$/m, 'the emulator is built into the image')
  t.match(dockerfile, /^CMD \["node", "dist\/src\/server\.js"\]$/m)
  t.notMatch(read('.dockerignore'), /^emulator\/?$/m)
})
