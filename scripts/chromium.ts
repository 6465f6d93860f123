/**
 * Finds the Chromium the browser test drives: Debian's `chromium` package (or
 * CHROMIUM_PATH), never a browser downloaded at install time.
 */
import { spawnSync } from 'node:child_process'

export const CHROMIUM_INSTALL_HINT =
  'No Chromium was found. The browser test drives a real headless Chromium.\n' +
  'Install one (Debian/Ubuntu: sudo apt-get install chromium; macOS: brew install --cask chromium),\n' +
  'or set CHROMIUM_PATH to a Chromium or Chrome executable.'

const CANDIDATES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']

export function findChromium (): string | undefined {
  const configured = process.env.CHROMIUM_PATH
  if (configured !== undefined && configured !== '') return configured
  for (const name of CANDIDATES) {
    const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' })
    const path = found.stdout.trim()
    if (found.status === 0 && path !== '') return path
  }
  return undefined
}
