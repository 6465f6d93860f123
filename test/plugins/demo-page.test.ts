import t, { type Test } from 'tap'
import { chromium, type Browser } from 'playwright-core'
import { request } from 'undici'
import { CHROMIUM_INSTALL_HINT, findChromium } from '../../scripts/chromium.js'
import { fixturePath, startService } from '../helper.js'

/**
 * The demo page in a real headless Chromium, on a phone-sized screen, against
 * the service on the built-in emulator: a real photo comes back fused, a retry
 * sends the same Idempotency-Key and is replayed, and a GIF shows the API's error.
 * UPDATE_SCREENSHOT=1 (npm run docs:screenshot) also writes docs/demo-page.jpg.
 */
/** Debian's Chromium, headless, closed with the test. A missing browser fails the test with how to install it. */
async function launchChromium (t: Test): Promise<Browser> {
  const executablePath = findChromium()
  if (executablePath === undefined) throw new Error(CHROMIUM_INSTALL_HINT)
  // Root in CI containers: Chromium's sandbox needs user namespaces it may not have there.
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  t.teardown(async () => await browser.close())
  return browser
}

t.test('the demo page fuses a photo and shows errors as the API gives them', async (t) => {
  const { url } = await startService(t)
  const browser = await launchChromium(t)
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true })
  const page = await context.newPage()
  const pageErrors: string[] = []
  page.on('pageerror', (error) => pageErrors.push(error.message))
  const keys: string[] = []
  page.on('request', (sent) => { if (new URL(sent.url()).pathname === '/fuse') keys.push(sent.headers()['idempotency-key'] ?? '') })

  await page.goto(`${url}/`)
  await page.waitForSelector('#template-list input[type="radio"]')
  t.ok(await page.isVisible('#mode'), 'the page says the emulator answers')
  t.ok(await page.isDisabled('#fuse'), 'nothing to fuse before a photo is chosen')
  t.notOk(await page.isVisible('#project-row'), 'templates listed: no activity to type')
  t.notOk(await page.isVisible('#manual-row'))
  t.notOk(await page.isVisible('#error'))

  await page.setInputFiles('#photo', fixturePath('face.jpg'))
  await page.waitForSelector('#preview:not([hidden])')
  t.match(await page.getAttribute('#preview', 'src'), /^blob:/, 'the photo is previewed locally')
  await page.click('#fuse')
  await page.waitForSelector('#fused[data-loaded="true"]', { timeout: 20_000 })
  // Page-side code is passed as text: this project is type-checked without the DOM's types.
  const size = await page.evaluate('(({ naturalWidth: width, naturalHeight: height }) => ({ width, height }))(document.querySelector("#fused"))')
  t.same(size, { width: 720, height: 960 }, 'the fused picture is displayed at its real size')
  t.ok(await page.isVisible('#fused'))
  t.match(keys[0], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'the request carried an Idempotency-Key')
  const fitsTheScreen = await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')
  t.ok(fitsTheScreen, 'nothing overflows a 390 px wide screen')

  if (process.env.UPDATE_SCREENSHOT === '1') {
    await page.screenshot({ path: new URL('../../docs/demo-page.jpg', import.meta.url).pathname, fullPage: true, type: 'jpeg', quality: 80 })
  }

  await page.click('#fuse')
  await page.waitForSelector('#result-meta:has-text("replayed")')
  t.equal(keys[1], keys[0], 'pressing Fuse again resends the same key, and the gateway replays its answer')

  await page.setInputFiles('#photo', fixturePath('still.gif'))
  await page.click('#fuse')
  await page.waitForSelector('#error:not([hidden])')
  t.equal(await page.textContent('#error-code'), 'FUSION_UNSUPPORTED_IMAGE_FORMAT')
  t.match(await page.textContent('#error-message'), /GIF images are not supported/)
  t.not(keys[2], keys[0], 'a new photo is a new key')
  t.same(pageErrors, [], 'no script errors')
})

t.test('the client example runs as it is in the browser', async (t) => {
  const { url } = await startService(t)
  const page = await (await launchChromium(t)).newPage()
  const pageErrors: string[] = []
  page.on('pageerror', (error) => pageErrors.push(error.message))
  await page.goto(`${url}/client-example.html`)
  await page.setInputFiles('#photo', fixturePath('face.jpg'))
  await page.click('#fuse')
  await page.waitForSelector('#message:has-text("Valid until")')
  t.match(await page.getAttribute('#result', 'src'), /^http:\/\/127\.0\.0\.1:\d+\/results\/.+\.jpg$/, 'the fused picture\'s URL (the emulator\'s) is shown')
  let width = 0
  for (let tries = 0; tries < 100 && width === 0; tries++) {
    width = Number(await page.evaluate('document.querySelector("#result").naturalWidth'))
    if (width === 0) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.equal(width, 720, 'and the picture loaded')
  t.same(pageErrors, [])
})

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
