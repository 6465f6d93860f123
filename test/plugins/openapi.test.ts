import t from 'tap'
import { readFileSync } from 'node:fs'
import { request } from 'undici'
import { ERROR_CATALOGUE } from '../../src/errors.js'
import { renderOpenApi } from '../../scripts/openapi-doc.js'
import { startService } from '../helper.js'

t.test('docs/openapi.json is the served document, current, with the error shape and every code', async (t) => {
  const committed = readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8')
  t.equal(committed, await renderOpenApi(), 'run `npm run docs:openapi` after changing a route or schema')

  const { url } = await startService(t)
  const reply = await request(`${url}/openapi.json`)
  t.equal(reply.statusCode, 200)
  const document = await reply.body.json() as any
  t.equal(document.openapi, '3.1.0')
  t.ok(document.paths['/fuse'].post, 'POST /fuse is documented')
  t.ok(document.paths['/healthz'].get && document.paths['/readyz'].get)
  t.notOk(Object.keys(document.paths).some((path) => path.startsWith('/emulator')), 'the emulator is not part of the API')
  const content = document.paths['/fuse'].post.requestBody.content
  t.ok(content['multipart/form-data'] && content['application/json'], 'both body types')
  const codes = document.components.schemas.ErrorResponse.properties.code.anyOf.map((entry: { const?: string, enum?: string[] }) => entry.const ?? entry.enum?.[0])
  t.same(codes.sort(), Object.keys(ERROR_CATALOGUE).sort(), 'every error code is in the error shape')
  t.ok(document.paths['/fuse'].post.responses['429'], 'error statuses are listed')
})
