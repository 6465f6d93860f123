import { readFileSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import t, { type Test } from 'tap'
import { chromium, type Browser, type Page } from 'playwright-core'
import { request } from 'undici'
import { CHROMIUM_INSTALL_HINT, findChromium } from '../../scripts/chromium.js'
import { API3_ONLY_PROJECT_ID as API3_ACTIVITY } from '../../emulator/shared/templates.js'
import {
  fixture, fixturePath, fuseForm, JOB_LINES, startEmulator, startService, stubUpstream, upstreamEnv,
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
  /** The origins the page sent requests to. */
  origins: Set<string>
  /** The status of each path's last answer. */
  statuses: Map<string, number>
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
  // Chromium also reports what the policy blocks on the console.
  page.on('console', (message) => { if (/Content[ -]Security[ -]Policy/i.test(message.text())) errors.push(message.text()) })
  const sent: string[] = []
  const origins = new Set<string>()
  page.on('request', (request) => {
    const url = new URL(request.url())
    sent.push(`${request.method()} ${url.pathname}`)
    if (url.protocol.startsWith('http')) origins.add(url.origin)
  })
  const statuses = new Map<string, number>()
  page.on('response', (response) => { statuses.set(new URL(response.url()).pathname, response.status()) })
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
    origins,
    statuses,
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

/** The page's icon: the one it links, loaded (Chromium asks for it itself), and /favicon.ico answered too. */
async function hasFavicon (t: Test, page: Page, url: string, statuses: Map<string, number>): Promise<void> {
  t.equal(await page.getAttribute('link[rel="icon"]', 'href'), '/favicon.svg', 'the page links its icon')
  await eventually(() => statuses.has('/favicon.svg'), 'the browser asked for the icon')
  t.equal(statuses.get('/favicon.svg'), 200, 'and got it')
  t.ok([...statuses].every(([path, status]) => !path.startsWith('/favicon') || status === 200), 'every icon asked for was there')
  const ico = await request(`${url}/favicon.ico`)
  t.equal(ico.statusCode, 200, '/favicon.ico is answered')
  t.equal(ico.headers['content-type'], 'image/svg+xml')
  t.equal(await ico.body.text(), readFileSync(new URL('../../public/favicon.svg', import.meta.url), 'utf8'), 'with the same icon')
}

/** Whether the element is wholly on the screen (scrolled into view). */
async function onScreen (page: Page, selector: string): Promise<boolean> {
  return await page.evaluate(`(({ top, bottom }) => top >= 0 && bottom <= window.innerHeight)(document.querySelector(${JSON.stringify(selector)}).getBoundingClientRect())`) as boolean
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
  const { page, sent, shown, troubles, statuses } = await phonePage(t, 'status')
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
  t.ok(Number(await page.evaluate('window.scrollY')) > 0 && await onScreen(page, '#fused'), 'the page scrolled to the whole picture, below the fold')
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
  await hasFavicon(t, page, url, statuses)
  t.same(await troubles(), [], 'no script errors, nothing blocked by the Content-Security-Policy')
})

/** The templates on offer, as the page shows them. */
async function offered (page: Page): Promise<Array<{ modelId: string, disabled: boolean, checked: boolean, text: string }>> {
  return await page.evaluate(`[...document.querySelectorAll('#template-list label')].map((label) => {
    const input = label.querySelector('input')
    return { modelId: input.value.split('/')[1], disabled: input.disabled, checked: input.checked, text: label.textContent }
  })`) as Array<{ modelId: string, disabled: boolean, checked: boolean, text: string }>
}

t.test('API 3.0: the activity box shows an example, says what to type, drops a list it could not load, offers no faceless material', async (t) => {
  const { url } = await startService(t, { FUSION_PROVIDER: 'v3' })
  const { page, sent, troubles } = await phonePage(t, 'status')
  const listings = (): number => sent.filter((line) => line === 'GET /templates').length
  await page.goto(`${url}/`)
  await page.waitForSelector('#project-row:not([hidden])')
  t.equal(await page.inputValue('#project-id'), '', 'the activity box starts empty')
  t.match(await page.getAttribute('#project-id', 'placeholder'), /^e\.g\. /, 'its placeholder reads as an example, not a value')
  t.ok(await page.isVisible('#project-hint'), 'and a line says what goes there')
  await page.setInputFiles('#photo', fixturePath('face.jpg'))

  const asked = listings()
  await page.click('#load-templates')
  await page.waitForSelector('#error:not([hidden])')
  t.match(await page.textContent('#error-message'), /Type your activity's id \(project_id\) first/, 'an empty box: what to type')
  t.equal(await page.getAttribute('#project-id', 'aria-invalid'), 'true')
  t.equal(listings(), asked, 'and nothing is asked of the gateway')

  await page.fill('#project-id', '100307')
  await page.click('#load-templates')
  await page.waitForSelector('#template-list input[type="radio"]')
  t.notOk(await page.isVisible('#error'), 'the message goes with a listing')
  const listed = await offered(page)
  t.same(listed.map((template) => template.modelId), ['qc_100307_152854_1', 'qc_100307_152854_2', 'qc_100307_152854_3'])
  const faceless = listed.find((template) => template.modelId === 'qc_100307_152854_3')
  t.match(faceless, { disabled: true, checked: false, text: /No face to replace: cannot be used/ }, 'a material without a face is shown, not offered, with why')
  t.ok(listed.filter((template) => template.modelId !== 'qc_100307_152854_3').every((template) => !template.disabled), 'the others are offered')
  t.equal(listed.find((template) => template.checked)?.modelId, 'qc_100307_152854_1', 'the first usable one is chosen')
  t.ok(await page.isEnabled('#fuse'))

  await page.fill('#project-id', 'at_0000000000000000000')
  await page.click('#load-templates')
  await page.waitForSelector('#error:not([hidden])')
  t.equal(await page.textContent('#error-code'), 'FUSION_TEMPLATE_NOT_FOUND', 'a failed load says why')
  t.match(await page.textContent('#error-message'), /^The templates of activity at_0000000000000000000 could not be loaded: No such activity/)
  t.same(await offered(page), [], 'and the last activity\'s templates are no longer on offer')
  t.ok(await page.isDisabled('#fuse'), 'so nothing can be fused with them')

  await page.fill('#project-id', API3_ACTIVITY)
  await page.press('#project-id', 'Enter')
  await page.waitForSelector('#template-list input[type="radio"]:checked')
  t.notOk(await page.isVisible('#error'))
  await page.click('#fuse')
  await page.waitForSelector('#fused[data-loaded="true"]', { timeout: 20_000 })
  t.ok(Number(await page.evaluate('window.scrollY')) > 0 && await onScreen(page, '#fused'), 'the page scrolled to the whole picture')
  await fitsThePhone(t, page, '#fused')
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

const busyCases: Array<{ line: keyof typeof JOB_LINES, follow: Follow }> = [
  { line: 'memory', follow: 'events' },
  { line: 'redis', follow: 'events' },
  { line: 'memory', follow: 'no EventSource' },
  { line: 'redis', follow: 'stream fails' }
]

for (const { line, follow } of busyCases) {
  t.test(`a busy ${line} line, ${follow}: the page shows its place as it moves up, then the picture; a waiting job can leave`, async (t) => {
    const gate = await gatedEmulator(t)
    const { url } = await startService(t, { ...gate.env, ...JOB_LINES[line](), QUEUE_WORKERS: '1' })
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

// 127.0.0.2 plays a phone's view of the machine over the LAN: the emulator (on 127.0.0.1) is out of its reach.
for (const { follow, host } of [{ follow: 'events', host: '127.0.0.2' }, { follow: 'no EventSource', host: '127.0.0.1' }] as const) {
  t.test(`the client example runs as it is in the browser (${follow}, at ${host})`, async (t) => {
    const { url } = await startService(t, {}, { host })
    const { page, sent, origins, statuses, shown, troubles } = await phonePage(t, 'message', follow)
    await page.goto(`${url}/client-example.html`)
    await page.setInputFiles('#photo', fixturePath('face.jpg'))
    await page.click('#fuse')
    await page.waitForSelector('#message:has-text("Valid until")', { timeout: 20_000 })
    t.match(await page.getAttribute('#result', 'src'), new RegExp(`^${url.replaceAll('.', '\\.')}/results/[0-9a-f-]{36}\\.jpg$`),
      'the fused picture\'s URL names the address the page was opened at')
    t.same([...origins], [url], 'every request went there')
    await eventuallyInPage(page, 'document.querySelector("#result").complete && document.querySelector("#result").naturalWidth > 0')
    t.same(await naturalSize(page, '#result'), { width: 720, height: 960 }, 'and the picture loaded')
    await fitsThePhone(t, page, '#result')
    t.match((await shown())[1], /^Number 1 in line, about \d+ s$/, 'its place in line was shown first')
    const [jobId] = jobsFollowed(sent, /^GET \/fuse\/jobs\/([\w-]{22})/)
    if (follow === 'events') t.ok(sent.includes(`GET /fuse/jobs/${jobId}/events`), 'followed through the events stream')
    else t.ok(sent.includes(`GET /fuse/jobs/${jobId}`), 'followed by polling')
    await hasFavicon(t, page, url, statuses)
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
