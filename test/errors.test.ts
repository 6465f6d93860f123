import t from 'tap'
import { readFileSync } from 'node:fs'
import { ERROR_CATALOGUE, fusionError, isFusionError } from '../src/errors.js'
import { renderErrorsDoc } from '../scripts/errors-doc.js'

t.test('docs/errors.md is the catalogue and the ret table, current', async (t) => {
  const committed = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
  t.equal(committed, renderErrorsDoc(), 'run `npm run docs:errors` after changing src/errors.ts or ret-codes.ts')
  for (const code of Object.keys(ERROR_CATALOGUE)) t.ok(committed.includes(`\`${code}\``), code)
})

t.test('codes are UPPER_SNAKE with one prefix; 4xx are the client\'s, 5xx ours', async (t) => {
  for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
    t.match(code, /^FUSION_[A-Z0-9_]+$/)
    t.ok(entry.status >= 400 && entry.status < 600, `${code} has an error status`)
  }
})

t.test('a 5xx never carries a specific message; a 4xx may', async (t) => {
  const internal = fusionError('FUSION_INTERNAL_ERROR', { message: 'stack trace: secret at /srv/app.js:12' })
  t.equal(internal.message, ERROR_CATALOGUE.FUSION_INTERNAL_ERROR.message)
  t.equal(internal.statusCode, 500)
  const client = fusionError('FUSION_MISSING_FIELD', { message: 'The field `model_id` is required.' })
  t.equal(client.message, 'The field `model_id` is required.')
  t.ok(isFusionError(client))
  t.notOk(isFusionError(new Error('plain')))
})
