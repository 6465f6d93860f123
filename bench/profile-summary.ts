/**
 * Sums a V8 CPU profile (node --cpu-prof) by function: where the main thread's
 * time goes, self time and the time of each package or source file, heaviest
 * first.
 *
 *   tsx bench/profile-summary.ts profile.cpuprofile [more.cpuprofile…]   (TOP=30 rows)
 */
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

const top = Number(process.env.TOP ?? 30)

/** Where a function lives: a package's name, a file of ours, or V8's and Node's own. */
function place (url: string): string {
  if (url === '') return '(native)'
  const inPackage = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (inPackage !== null) return inPackage[1]!
  if (url.startsWith('node:')) return url
  const ours = /\/(src|emulator)\/(.+)$/.exec(url)
  return ours !== null ? `${ours[1]}/${ours[2]}` : basename(url)
}

for (const file of process.argv.slice(2)) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const selfMs = new Map<number, number>()
  profile.samples.forEach((id, index) => { selfMs.set(id, (selfMs.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0) / 1000) })
  const totalMs = (profile.endTime - profile.startTime) / 1000
  const functions = new Map<string, number>()
  const places = new Map<string, number>()
  for (const [id, ms] of selfMs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame
    if (functionName === '(idle)') continue
    const where = place(url)
    const file = /node_modules\/.+$/.exec(url)?.[0].replace(/^node_modules\//, '') ?? where
    const name = `${functionName || '(anonymous)'} ${file}${url === '' ? '' : `:${lineNumber + 1}`}`
    functions.set(name, (functions.get(name) ?? 0) + ms)
    places.set(where, (places.get(where) ?? 0) + ms)
  }
  const idle = profile.nodes.filter((node) => node.callFrame.functionName === '(idle)').reduce((sum, node) => sum + (selfMs.get(node.id) ?? 0), 0)
  const busy = totalMs - idle
  console.log(`${file}: ${(totalMs / 1000).toFixed(1)} s profiled, ${(busy / 1000).toFixed(1)} s busy`)
  const rows = (entries: Map<string, number>): void => {
    for (const [name, ms] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`  ${(100 * ms / busy).toFixed(1).padStart(5)} %  ${ms.toFixed(0).padStart(7)} ms  ${name}`)
    }
  }
  console.log(' by function (self time):')
  rows(functions)
  console.log(' by package or file:')
  rows(places)
}
