/**
 * Which methods each known path answers, so that the not-found handler can tell a known path asked with another
 * method (405 with `Allow`, RFC 9110 section 15.5.6) from a path the service does not have (404).
 */
export interface RouteMethods {
  add: (url: string, method: string | string[]) => void
  /** The methods `path` (no query) has routes for, in a conventional order; empty for an unknown path. */
  allowed: (path: string) => string[]
}

const ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

/** A route's URL as a regular expression: `:param` matches one segment, `*` the rest, as Fastify's router does. */
function patternOf (url: string): RegExp {
  const segments = url.split('/').map((segment) => {
    if (segment.startsWith(':')) return '[^/]+'
    if (segment === '*') return '.*'
    return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  })
  return new RegExp(`^${segments.join('/')}$`)
}

export function createRouteMethods (): RouteMethods {
  const routes: Array<{ pattern: RegExp, methods: Set<string> }> = []
  return {
    add (url, method) {
      const pattern = patternOf(url)
      let route = routes.find((entry) => entry.pattern.source === pattern.source)
      if (route === undefined) routes.push(route = { pattern, methods: new Set() })
      for (const name of Array.isArray(method) ? method : [method]) route.methods.add(name.toUpperCase())
      // Fastify answers HEAD wherever it answers GET.
      if (route.methods.has('GET')) route.methods.add('HEAD')
    },
    allowed (path) {
      const methods = new Set<string>()
      for (const route of routes) if (route.pattern.test(path)) route.methods.forEach((method) => methods.add(method))
      const rank = (method: string): number => ORDER.includes(method) ? ORDER.indexOf(method) : ORDER.length
      return [...methods].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
    }
  }
}
