import t from 'tap'
import { execFile, execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parse } from 'yaml'
import { createMetrics } from '../../src/metrics.js'
import { markdownAnchors } from '../helper.js'

// deploy/prometheus/alerts.yml: valid for Prometheus, each alert firing (and not) as its cases in alerts.test.yml
// say, on metrics the service really exports, with a runbook in docs/operations.md.
const root = fileURLToPath(new URL('../../', import.meta.url))
const read = (path: string): string => readFileSync(`${root}${path}`, 'utf8')

interface Rule { alert: string, expr: string, annotations?: Record<string, string> }
const alerts = (parse(read('deploy/prometheus/alerts.yml')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((group) => group.rules)

function promtool (): string {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' })
    return 'promtool'
  } catch {
    throw new Error('promtool is not installed: it checks deploy/prometheus/alerts.yml. On Debian or Ubuntu: ' +
      'apt-get install --no-install-recommends prometheus (.ci/run does it); elsewhere, Prometheus\' release archive has it.')
  }
}
const run = async (...args: string[]): Promise<string> => {
  const { stdout } = await promisify(execFile)(promtool(), args, { cwd: `${root}deploy/prometheus` }).catch((error: { stdout?: string, stderr?: string }) => {
    throw new Error(`promtool ${args.join(' ')} failed:\n${error.stdout ?? ''}${error.stderr ?? ''}`)
  })
  return stdout
}

t.test('promtool check rules accepts every rule', async (t) => {
  t.match(await run('check', 'rules', 'alerts.yml'), new RegExp(`SUCCESS: ${alerts.length} rules found`))
})

t.test('promtool test rules: every case passes', async (t) => {
  t.match(await run('test', 'rules', 'alerts.test.yml'), /SUCCESS/)
})

t.test('the cases see each alert fire, and at least one stay quiet', async (t) => {
  const cases = parse(read('deploy/prometheus/alerts.test.yml')) as {
    tests: Array<{ alert_rule_test: Array<{ alertname: string, exp_alerts: unknown[] }> }>
  }
  const checks = cases.tests.flatMap((test) => test.alert_rule_test)
  t.ok(alerts.length >= 5)
  for (const { alert } of alerts) t.ok(checks.some((check) => check.alertname === alert && check.exp_alerts.length > 0), `${alert} fires`)
  t.ok(checks.some((check) => check.exp_alerts.length === 0), 'and some cases expect silence')
})

t.test('each alert reads metrics the service exports', async (t) => {
  const exported = new Set<string>()
  // From the exposition's own TYPE lines: a histogram's series are its _bucket, _sum and _count.
  for (const [, name = '', type] of (await createMetrics().registry.metrics()).matchAll(/^# TYPE (\w+) (\w+)$/gm)) {
    exported.add(name)
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(name + suffix)
  }
  for (const { alert, expr } of alerts) {
    const used = [...new Set(expr.match(/\bfusion_\w+/g))]
    t.ok(used.length > 0, `${alert} reads the service's metrics`)
    for (const name of used) t.ok(exported.has(name), `${alert}: ${name} is in src/metrics.ts`)
  }
})

t.test('each alert links its runbook in docs/operations.md', async (t) => {
  const operations = read('docs/operations.md')
  const anchors = markdownAnchors(operations)
  t.ok(anchors.has('alerts'), 'an Alerts section')
  for (const { alert, annotations } of alerts) {
    const url = annotations?.runbook_url ?? ''
    t.match(url, /^docs\/operations\.md#/, `${alert} has a runbook_url`)
    t.ok(anchors.has(url.split('#')[1] ?? ''), `${alert}: ${url} exists`)
  }
})
