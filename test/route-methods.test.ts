import t from 'tap'
import { createRouteMethods } from '../src/route-methods.js'

t.test('a known path lists the methods it has routes for, HEAD beside GET, in the usual order', async (t) => {
  const routes = createRouteMethods()
  routes.add('/fuse', 'POST')
  routes.add('/fuse/jobs/:jobId', ['DELETE', 'get'])
  routes.add('/files/*', 'GET')
  t.same(routes.allowed('/fuse'), ['POST'])
  t.same(routes.allowed('/fuse/jobs/abc'), ['GET', 'HEAD', 'DELETE'], 'a parameter matches one segment, whatever its case')
  t.same(routes.allowed('/fuse/jobs/abc/more'), [], 'and only one')
  t.same(routes.allowed('/files/a/b.css'), ['GET', 'HEAD'], 'a wildcard matches the rest')
  t.same(routes.allowed('/fuse.'), [], 'the path is matched literally, dots and all')
  t.same(routes.allowed('/nope'), [])
})
