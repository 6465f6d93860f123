import { readFileSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import t, { type Test } from 'tap'
import { chromium, type Browser, type Page } from 'playwright-core'
import { request } from 'undici'
import { CHROMIUM_INSTALL_HINT, findChromium } from '../../scripts/chromium.js'
import {
  fixture, fixturePath, fuseForm, redisPrefix, sharedRedisUrl, startEmulator, startService, stubUpstream, upstreamEnv,
  type StubCall
} from '../helper.js'

/**
 * The demo page and the client example in a real headless Chromium, on a
 * phone-sized screen, against the service on the built-in emulator: a photo
 * goes into the wait line (Prefer: respond-async), the page follows its job
 * (events stream, or polling where EventSource is missing or fails) showing its
 * place and ETA, then the fused picture; a retry sends the same Idempotency-Key
 * and is replayed, a GIF shows the API's error, and a waiting job can be left.
 * UPDATE_SCREENSHOT=1 (npm run docs:screenshot) also writes docs/demo-page.jpg.
 */

// Several browser sessions in one file, on a machine that may be busy: more than the default 60 s.
t.setTimeout(240_000)

/** The lines a job can wait in: in memory (no Redis), and BullMQ on a real Redis. */
const LINES = {
  memory: (): Record<string, string> => ({}),
  redis: (): Record<string, string> => ({ REDIS_URL: sharedRedisUrl(), REDIS_KEY_PREFIX: redisPrefix() })
}

/** How the page may follow its job: the events stream; no EventSource at all; a stream that always fails. */
type Follow = 'events' | 'no EventSource' | 'stream fails'

/**
 * Debian's Chromium, headless, one for the whole file (each test has a context of its own), closed at its end.
 * A missing browser fails the test with how to install it.
 */
let launched: Promise<Browser> | undefined
async function chromiumBrowser (): Promise<Browser> {
  launched ??= (async () => {
    const executablePath = findChromium()
    if (executablePath === undefined) throw new Error(CHROMIUM_INSTALL_HINT)
    // Root in CI containers: Chromium's sandbox needs user namespaces it may not have there.
    const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
    t.teardown(async () => await browser.close())
    return browser
  })()
  return await launched
}

interface PhonePage {
  page: Page
  /** Script errors in the page, and what its Content-Security-Policy blocked (an inline style, say): none expected. */
  troubles: () => Promise<string[]>
  /** Every request the page sent, as `METHOD /path`. */
  sent: string[]
  /** Every text the element `statusId` showed, in order (recorded in the page, so a brief one is not missed). */
  shown: () => Promise<string[]>
}

/** A new page on a 390 px wide phone screen, following jobs as `follow` says. */
async function phonePage (t: Test, statusId: string, follow: Follow = 'events'): Promise<PhonePage> {
  const context = await (await chromiumBrowser()).newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true
  })
  t.teardown(async () => await context.close())
  const page = await context.newPage()
  const errors: string[] = []
  page.on('pageerror', (error) => errors.push(error.message))
  const sent: string[] = []
  page.on('request', (request) => { sent.push(`${request.method()} ${new URL(request.url()).pathname}`) })
  // Page-side code is passed as text: this project is type-checked without the DOM's types.
  await page.addInitScript(`
    window.__blocked = []
    document.addEventListener('securitypolicyviolation', (event) => {
      window.__blocked.push('CSP blocked ' + event.violatedDirective + ': ' + (event.blockedURI || event.sample))
    })
    window.__shown = []
    new MutationObserver(() => {
      const text = document.getElementById(${JSON.stringify(statusId)})?.textContent ?? ''
      if (text !== '' && window.__shown.at(-1) !== text) window.__shown.push(text)
    }).observe(document, { subtree: true, childList: true, characterData: true })
  `)
  if (follow === 'no EventSource') await page.addInitScript('delete window.EventSource')
  if (follow === 'stream fails') await page.route('**/fuse/jobs/*/events', async (route) => await route.abort('connectionreset'))
  return {
    page,
    sent,
    shown: async () => await page.evaluate('window.__shown') as string[],
    troubles: async () => [...errors, ...await page.evaluate('window.__blocked') as string[]]
  }
}

/** Nothing overflows the 390 px screen, and the picture fits its width. */
async function fitsThePhone (t: Test, page: Page, picture: string): Promise<void> {
  t.ok(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth'), 'nothing overflows a 390 px wide screen')
  const width = Number(await page.evaluate(`document.querySelector(${JSON.stringify(picture)}).getBoundingClientRect().width`))
  t.ok(width > 0 && width <= 390, `the picture fits the screen's width (${width} px)`)
}

/** The fused picture's real size, once loaded. */
async function naturalSize (page: Page, picture: string): Promise<unknown> {
  return await page.evaluate(`(({ naturalWidth: width, naturalHeight: height }) => ({ width, height }))(document.querySelector(${JSON.stringify(picture)}))`)
}

/** The jobs the page followed: the ids in its requests for /fuse/jobs/{jobId}(/events). */
function jobsFollowed (sent: string[], pattern: RegExp): string[] {
  return [...new Set(sent.flatMap((line) => pattern.exec(line)?.[1] ?? []))]
}

t.test('the demo page queues a photo, shows its place in line, the fused picture, and errors as the API gives them', async (t) => {
  const { url } = await startService(t)
  const { page, sent, shown, troubles } = await phonePage(t, 'status')
  const headers: Array<Record<string, string>> = []
  page.on('request', (sent) => { if (new URL(sent.url()).pathname === '/fuse') headers.push(sent.headers()) })
  const keys = (): string[] => headers.map((sent) => sent['idempotency-key'] ?? '')

  await page.goto(`${url}/`)
  await page.waitForSelector('#template-list input[type="radio"]')
  t.ok(await page.isVisible('#mode'), 'the page says the emulator answers')
  t.ok(await page.isDisabled('#fuse'), 'nothing to fuse before a photo is chosen')
  t.notOk(await page.isVisible('#project-row'), 'templates listed: no activity to type')
  t.notOk(await page.isVisible('#manual-row'))
  t.notOk(await page.isVisible('#error'))
  t.notOk(await page.isVisible('#cancel'))

  await page.setInputFiles('#photo', fixturePath('face.jpg'))
  await page.waitForSelector('#preview:not([hidden])')
  t.match(await page.getAttribute('#preview', 'src'), /^blob:/, 'the photo is previewed locally')
  await page.click('#fuse')
  await page.waitForSelector('#fused[data-loaded="true"]', { timeout: 20_000 })
  t.same(await naturalSize(page, '#fused'), { width: 720, height: 960 }, 'the fused picture is displayed at its real size')
  t.ok(await page.isVisible('#fused'))
  t.equal(headers[0]?.prefer, 'respond-async', 'the photo went into the wait line')
  t.match(keys()[0], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'the request carried an Idempotency-Key')
  const texts = await shown()
  t.match(texts[texts.findIndex((text) => text.startsWith('Number'))], /^Number 1 in line, about \d+ s$/, 'its place in line and ETA were shown')
  t.equal(texts.at(-1), 'Done.', 'then the end')
  t.ok(texts.findIndex((text) => text.startsWith('Number')) < texts.indexOf('Done.'), 'the place in line came first')
  const [jobId] = jobsFollowed(sent, /^GET \/fuse\/jobs\/([\w-]{22})\/events$/)
  t.ok(jobId, 'the page followed its job\'s events stream')
  t.notOk(sent.includes(`GET /fuse/jobs/${jobId}`), 'and never had to poll')
  await fitsThePhone(t, page, '#fused')

  if (process.env.UPDATE_SCREENSHOT === '1') {
    await page.screenshot({ path: new URL('../../docs/demo-page.jpg', import.meta.url).pathname, fullPage: true, type: 'jpeg', quality: 80 })
  }

  await page.click('#fuse')
  await page.waitForSelector('#result-meta:has-text("replayed")')
  await page.waitForSelector('#fused[data-loaded="true"]')
  t.equal(keys()[1], keys()[0], 'pressing Fuse again resends the same key, and the gateway replays its answer: the same job')
  t.same(jobsFollowed(sent, /^GET \/fuse\/jobs\/([\w-]{22})\/events$/), [jobId], 'which the page follows again')

  await page.setInputFiles('#photo', fixturePath('still.gif'))
  await page.click('#fuse')
  await page.waitForSelector('#error:not([hidden])')
  t.equal(await page.textContent('#error-code'), 'FUSION_UNSUPPORTED_IMAGE_FORMAT', 'a photo the line cannot take is refused at once')
  t.match(await page.textContent('#error-message'), /GIF images are not supported/)
  t.notOk(await page.isVisible('#result'), 'and the last picture is not shown as its answer')
  t.not(keys()[2], keys()[0], 'a new photo is a new key')
  t.same(await troubles(), [], 'no script errors, nothing blocked by the Content-Security-Policy')
})

t.test('a job the upstream fails shows the error its job carries, and Fuse then makes a new job', async (t) => {
  // The emulator's fault material: the upstream finds no face (legacy ret 1000), only once the job's turn has come.
  const { url } = await startService(t, { FUSION_TEMPLATES: '100307:emulator_ret_1000=No face' })
  const { page, sent, shown, troubles } = await phonePage(t, 'status')
  const keys: string[] = []
  page.on('request', (sent) => { if (new URL(sent.url()).pathname === '/fuse') keys.push(sent.headers()['idempotency-key'] ?? '') })
  await page.goto(`${url}/`)
  await page.waitForSelector('#template-list input[type="radio"]')
  await page.setInputFiles('#photo', fixturePath('face.jpg'))
  await page.click('#fuse')
  await page.waitForSelector('#error:not([hidden])', { timeout: 20_000 })
  t.equal(await page.textContent('#error-code'), 'FUSION_NO_FACE')
  t.match(await page.textContent('#error-message'), /No face was found/)
  t.equal(await page.getAttribute('#status', 'data-state'), 'failed')
  t.match((await shown()).find((text) => text.startsWith('Number')), /^Number 1 in line, about \d+ s$/, 'after its place in line')
  t.ok(sent.some((line) => /^GET \/fuse\/jobs\/[\w-]{22}\/events$/.test(line)), 'the error came with the job\'s end')
  t.notOk(await page.isVisible('#result'))

  await page.click('#fuse')
  await page.waitForSelector('#status[data-state="failed"]', { timeout: 20_000 })
  t.equal(keys.length, 2)
  t.not(keys[1], keys[0], 'a failed job is not replayed: pressing Fuse again sends a new key')
  t.same(await troubles(), [], 'no script errors, nothing blocked by the Content-Security-Policy')
})

/**
 * The emulator behind a gate: while it is closed, fusion calls wait there (the
 * line's one worker held busy); everything else, such as template previews, passes.
 */
async function gatedEmulator (t: Test): Promise<{
  env: Record<string, string>, fusionCalls: () => number, held: () => number, releaseOne: () => void, open: () => void, close: () => void
}> {
  const emulator = await startEmulator(t)
  const held: Array<() => void> = []
  let isOpen = false
  let fusionCalls = 0
  const forward = (call: StubCall, response: ServerResponse): void => {
    const headers = Object.fromEntries(Object.entries(call.request.headers)
      .filter(([name]) => !['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive'].includes(name)))
    request(`${emulator.url}${call.request.url}`, { method: call.request.method as 'GET', headers, body: call.body.length > 0 ? call.body : null })
      .then(async (answer) => {
        const body = Buffer.from(await answer.body.arrayBuffer())
        response.writeHead(answer.statusCode, { 'content-type': String(answer.headers['content-type'] ?? 'application/octet-stream') }).end(body)
      })
      .catch(() => { response.destroy() })
  }
  const gate = await stubUpstream(t, (call, response) => {
    if (call.request.method !== 'POST') return forward(call, response)
    fusionCalls++
    if (isOpen) forward(call, response)
    else held.push(() => { forward(call, response) })
  })
  return {
    env: upstreamEnv('legacy', { url: new URL(gate.url).origin, legacyUrl: gate.url }),
    fusionCalls: () => fusionCalls,
    held: () => held.length,
    releaseOne: () => { held.shift()?.() },
    open: () => { isOpen = true; held.splice(0).forEach((release) => { release() }) },
    close: () => { isOpen = false }
  }
}

/** Waits (30 s at most: the machine may be busy) until `condition` holds. */
async function eventually (condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not reached in 30 s: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/**
 * Waits until `expression` is true in the page. (Playwright's waitForFunction evaluates its predicate with eval,
 * which the page's Content-Security-Policy forbids; page.evaluate is not subject to it.)
 */
async function eventuallyInPage (page: Page, expression: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (await page.evaluate(expression) !== true) {
    if (Date.now() > deadline) throw new Error(`not true in the page in 30 s: ${expression}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** A job of another client's (as far as the page knows) put in the line. */
async function queueOne (t: Test, url: string): Promise<void> {
  const accepted = await fuseForm(url, fixture('orientation-1.jpg'), {}, { prefer: 'respond-async' })
  t.equal(accepted.status, 202)
}

const busyCases: Array<{ line: keyof typeof LINES, follow: Follow }> = [
  { line: 'memory', follow: 'events' },
  { line: 'redis', follow: 'events' },
  { line: 'memory', follow: 'no EventSource' },
  { line: 'redis', follow: 'stream fails' }
]

for (const { line, follow } of busyCases) {
  t.test(`a busy ${line} line, ${follow}: the page shows its place as it moves up, then the picture; a waiting job can leave`, async (t) => {
    const gate = await gatedEmulator(t)
    const { url } = await startService(t, { ...gate.env, ...LINES[line](), QUEUE_WORKERS: '1' })
    const { page, sent, shown, troubles } = await phonePage(t, 'status', follow)
    const keys: string[] = []
    page.on('request', (sent) => { if (new URL(sent.url()).pathname === '/fuse') keys.push(sent.headers()['idempotency-key'] ?? '') })
    await page.goto(`${url}/`)
    await page.waitForSelector('#template-list input[type="radio"]')
    await page.setInputFiles('#photo', fixturePath('face.jpg'))

    // Two jobs ahead of the page's: one running (its call held at the gate), one waiting.
    await queueOne(t, url)
    await eventually(() => gate.held() === 1, 'a fusion call held at the gate')
    await queueOne(t, url)
    await page.click('#fuse')
    await page.waitForSelector('#status[data-state="queued"][data-position="2"]')
    t.match(await page.textContent('#status'), /^Number 2 in line, about \d+ s$/, 'its place and ETA')
    t.ok(await page.isVisible('#cancel'), 'a waiting job can leave the line')
    t.ok(await page.isDisabled('#fuse'), 'and is not sent twice meanwhile')
    await fitsThePhone(t, page, '#preview')

    gate.releaseOne() // the first job ends and the second's call goes out: the page's job is next
    await page.waitForSelector('#status[data-state="queued"][data-position="1"]', { timeout: 20_000 })
    t.match(await page.textContent('#status'), /^Number 1 in line, about \d+ s$/, 'the place moves up as the line does')
    t.notOk(await page.isVisible('#result'), 'no picture before the job\'s turn')

    gate.open()
    await page.waitForSelector('#fused[data-loaded="true"]', { timeout: 20_000 })
    t.same(await naturalSize(page, '#fused'), { width: 720, height: 960 }, 'then the fused picture')
    t.notOk(await page.isVisible('#cancel'))
    await fitsThePhone(t, page, '#fused')
    const texts = await shown()
    const places = texts.filter((text) => text.startsWith('Number')).map((text) => Number(/^Number (\d+)/.exec(text)![1]))
    t.same(places, [2, 1], 'every place the job held, in order')
    t.equal(texts.at(-1), 'Done.')
    t.equal(gate.fusionCalls(), 3, 'one fusion for each job')

    const [jobId] = jobsFollowed(sent, /^(?:GET|DELETE) \/fuse\/jobs\/([\w-]{22})/)
    const polls = sent.filter((line) => line === `GET /fuse/jobs/${jobId}`).length
    if (follow === 'events') {
      t.ok(sent.includes(`GET /fuse/jobs/${jobId}/events`), 'followed through its events stream')
      t.equal(polls, 0, 'without polling')
    } else {
      t.ok(polls >= 2, `followed by polling GET /fuse/jobs/{jobId} (${polls} times)`)
      if (follow === 'no EventSource') t.notOk(sent.includes(`GET /fuse/jobs/${jobId}/events`), 'where there is no EventSource')
      else t.ok(sent.includes(`GET /fuse/jobs/${jobId}/events`), 'once its events stream failed')
    }

    // Leaving the line: a job waits behind a held one, and the user has had enough.
    gate.close()
    await queueOne(t, url)
    await eventually(() => gate.held() === 1, 'a fusion call held at the gate')
    await page.setInputFiles('#photo', fixturePath('orientation-6.jpg'))
    await page.click('#fuse')
    await page.waitForSelector('#status[data-state="queued"][data-position="1"]')
    await page.click('#cancel')
    await page.waitForSelector('#status[data-state="canceled"]', { timeout: 20_000 })
    t.match(await page.textContent('#status'), /You left the line/)
    t.notOk(await page.isVisible('#cancel'))
    t.ok(await page.isEnabled('#fuse'), 'the photo can be sent again')
    const [, left] = jobsFollowed(sent, /^(?:GET|DELETE) \/fuse\/jobs\/([\w-]{22})/)
    t.ok(sent.includes(`DELETE /fuse/jobs/${left}`), 'the page asked to cancel its job')
    const view = await request(`${url}/fuse/jobs/${left}`)
    t.equal((await view.body.json() as any).status, 'canceled', 'and the line canceled it')
    t.equal(gate.fusionCalls(), 4, 'its call was never made')

    gate.open()
    await page.click('#fuse')
    await page.waitForSelector('#fused[data-loaded="true"]', { timeout: 20_000 })
    t.not(keys.at(-1), keys.at(-2), 'pressing Fuse after leaving makes a new job (a new key), not the canceled one again')
    t.notOk(await page.isVisible('#error'))
    t.same(await troubles(), [], 'no script errors, nothing blocked by the Content-Security-Policy')
  })
}

/** The first fenced block of `language` after `caption` in docs/client-example.md. */
function docBlock (language: string, caption: string): string | undefined {
  const doc = readFileSync(new URL('../../docs/client-example.md', import.meta.url), 'utf8')
  const at = doc.indexOf(caption)
  if (at === -1) return undefined
  return new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``).exec(doc.slice(at))?.[1]
}

t.test('docs/client-example.md shows exactly the client example the service serves', async (t) => {
  const { url } = await startService(t)
  for (const [file, language] of [['client-example.html', 'html'], ['client-example.js', 'js']] as const) {
    const served = await request(`${url}/${file}`)
    t.equal(served.statusCode, 200)
    t.equal(docBlock(language, `(\`public/${file}\`)`), await served.body.text(), `${file} as the docs show it`)
  }
})

for (const follow of ['events', 'no EventSource'] as const) {
  t.test(`the client example runs as it is in the browser (${follow})`, async (t) => {
    const { url } = await startService(t)
    const { page, sent, shown, troubles } = await phonePage(t, 'message', follow)
    await page.goto(`${url}/client-example.html`)
    await page.setInputFiles('#photo', fixturePath('face.jpg'))
    await page.click('#fuse')
    await page.waitForSelector('#message:has-text("Valid until")', { timeout: 20_000 })
    t.match(await page.getAttribute('#result', 'src'), /^http:\/\/127\.0\.0\.1:\d+\/results\/.+\.jpg$/, 'the fused picture\'s URL (the emulator\'s) is shown')
    await eventuallyInPage(page, 'document.querySelector("#result").complete && document.querySelector("#result").naturalWidth > 0')
    t.same(await naturalSize(page, '#result'), { width: 720, height: 960 }, 'and the picture loaded')
    await fitsThePhone(t, page, '#result')
    t.match((await shown())[1], /^Number 1 in line, about \d+ s$/, 'its place in line was shown first')
    const [jobId] = jobsFollowed(sent, /^GET \/fuse\/jobs\/([\w-]{22})/)
    if (follow === 'events') t.ok(sent.includes(`GET /fuse/jobs/${jobId}/events`), 'followed through the events stream')
    else t.ok(sent.includes(`GET /fuse/jobs/${jobId}`), 'followed by polling')
    t.same(await troubles(), [], 'no script errors, nothing blocked by the Content-Security-Policy')
  })
}

t.test('the page is off when DEMO_PAGE=false, and by default in production with real credentials', async (t) => {
  const off = await startService(t, { DEMO_PAGE: 'false' })
  t.equal((await request(`${off.url}/`)).statusCode, 404)
  const production = await startService(t, {
    NODE_ENV: 'production', TENCENT_APPID: '1250000001', TENCENT_UIN: '100000000002', TENCENT_SECRET_ID: 'id', TENCENT_SECRET_KEY: 'key'
  })
  t.equal((await request(`${production.url}/`)).statusCode, 404)
  t.equal((await request(`${production.url}/demo.js`)).statusCode, 404)
  const forced = await startService(t, { NODE_ENV: 'production', DEMO_PAGE: 'true', TENCENT_APPID: '1250000001', TENCENT_UIN: '100000000002', TENCENT_SECRET_ID: 'id', TENCENT_SECRET_KEY: 'key' })
  const page = await request(`${forced.url}/`)
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-security-policy'], /script-src 'self'/)
  await page.body.dump()
})
