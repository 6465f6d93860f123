/**
 * `npm run build`: TypeScript's incremental build (`tsc -b`), so an unchanged
 * tree costs a timestamp check instead of a full compile, plus the two things
 * tsc leaves undone:
 *
 * - an output whose source is gone (a deleted or renamed module) is removed,
 *   so nothing can load a stale copy from dist/;
 * - an output that is missing (a file deleted by hand, a half-copied dist/)
 *   forces a full build: tsc trusts its build info and would not re-emit it.
 *
 *   node scripts/build.ts [tsconfig]      default: tsconfig.build.json (Node strips the types)
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, rmdirSync, rmSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import ts from 'typescript'

const configPath = resolve(process.argv[2] ?? 'tsconfig.build.json')
const parsed = ts.getParsedCommandLineOfConfigFile(configPath, {}, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
    process.stderr.write(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n') + '\n')
    process.exit(1)
  }
})
if (parsed === undefined) process.exit(1)
const { outDir, tsBuildInfoFile } = parsed.options
if (outDir === undefined || tsBuildInfoFile === undefined) {
  process.stderr.write(`${configPath}: the build needs outDir and tsBuildInfoFile\n`)
  process.exit(1)
}

const expected = new Set<string>([resolve(tsBuildInfoFile)])
for (const fileName of parsed.fileNames) {
  for (const output of ts.getOutputFileNames(parsed, fileName, !ts.sys.useCaseSensitiveFileNames)) expected.add(resolve(output))
}

/** Removes files under dir that no source produces; says whether the dir is left empty. */
function prune (dir: string): boolean {
  let empty = true
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory() ? prune(path) : !expected.has(path)) {
      if (entry.isDirectory()) rmdirSync(path)
      else rmSync(path)
    } else {
      empty = false
    }
  }
  return empty
}
const exists = (path: string): boolean => statSync(path, { throwIfNoEntry: false }) !== undefined
if (exists(outDir)) prune(resolve(outDir))

const missing = [...expected].some((path) => path !== resolve(tsBuildInfoFile) && !exists(path))
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
try {
  execFileSync(process.execPath, [tsc, '-b', configPath, ...(missing ? ['--force'] : [])], { stdio: 'inherit' })
} catch {
  // tsc has printed its diagnostics.
  process.exit(1)
}
