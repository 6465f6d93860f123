import t from 'tap'
import { execFile } from 'node:child_process'
import { cpSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

// `npm start` builds first: on a copy of the tree (inside the checkout, under .tap/fixtures, so its imports resolve to
// the checkout's node_modules), a fresh build, a rebuild of an unchanged tree, a deleted module, a lost output. Two full
// builds in all (about 5 s of CPU each): adding a module costs tsc a full one, so the copy has an extra module from the start.
t.setTimeout(240_000)

const root = fileURLToPath(new URL('..', import.meta.url))
const dir = t.testdir({ scripts: {} })
for (const path of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts/build.ts', 'src', 'emulator']) {
  cpSync(join(root, path), join(dir, path), { recursive: true })
}
writeFileSync(join(dir, 'src/build-probe.ts'), 'export const probe = 1\n')
const build = async (): Promise<void> => {
  await promisify(execFile)('npm', ['run', 'build', '--silent'], { cwd: dir })
}
const dist = (path: string): string => join(dir, 'dist', path)
/** Every file under dist/ with its modification time. */
const outputs = (): Map<string, number> => new Map(
  readdirSync(join(dir, 'dist'), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => { const path = join(entry.parentPath, entry.name); return [path, statSync(path).mtimeMs] })
)

t.test('a fresh checkout (no dist/) builds the service and the emulator', async (t) => {
  await build()
  t.ok(existsSync(dist('src/server.js')), 'the service')
  t.ok(existsSync(dist('emulator/stand-in.js')), 'the emulator it may start')
  t.ok(existsSync(dist('src/build-probe.js')))
  t.ok(existsSync(dist('.tsbuildinfo')), 'with the incremental build\'s record')
})

t.test('an unchanged tree is not compiled again: no output is rewritten', async (t) => {
  const before = outputs()
  t.ok(before.size > 10)
  await build()
  t.same(outputs(), before, 'every output keeps its modification time')
})

t.test('a deleted module leaves no output behind', async (t) => {
  const server = statSync(dist('src/server.js')).mtimeMs
  rmSync(join(dir, 'src/build-probe.ts'))
  await build()
  t.notOk(existsSync(dist('src/build-probe.js')), 'its output is removed with it')
  t.notOk(existsSync(dist('src/build-probe.js.map')), 'and its source map')
  t.equal(statSync(dist('src/server.js')).mtimeMs, server, 'and the rest is not rebuilt')
})

t.test('an output deleted by hand is built again', async (t) => {
  rmSync(dist('src/app.js'))
  await build()
  t.ok(existsSync(dist('src/app.js')), 'tsc alone would trust its record and leave it missing')
})
