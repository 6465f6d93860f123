/**
 * Writes docs/openapi.json from the routes' schemas (`npm run docs:openapi`);
 * a test checks the committed file is current.
 */
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config/load.js'
import { completeWithStandIn } from '../emulator/stand-in.js'

export async function renderOpenApi (): Promise<string> {
  const { config, close } = await completeWithStandIn(loadConfig({ LOG_LEVEL: 'silent' }))
  const app = await buildApp(config)
  await app.ready()
  const document = app.swagger()
  await app.close()
  await close()
  return `${JSON.stringify(document, null, 2)}\n`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(new URL('../docs/openapi.json', import.meta.url), await renderOpenApi())
}
