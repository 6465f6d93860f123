import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort (): Promise<number> {
  return await listenedOnce(0)
}

/**
 * A port on 127.0.0.1 that nothing listens on and nothing will: below the
 * kernel's ephemeral range, so no `listen(0)` of another test is handed it and
 * no outgoing connection takes it as its own port (a connection to an ephemeral
 * port nobody listens on can meet itself, and read its own request as the
 * answer). Where every port is ephemeral, a port free a moment ago.
 */
export async function closedPort (): Promise<number> {
  const below = ephemeralRangeStart()
  const span = Math.min(12_000, below - 1024)
  if (span < 100) return await freePort()
  for (;;) {
    const port = below - 1 - Math.floor(Math.random() * span)
    try {
      return await listenedOnce(port)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error
    }
  }
}

/** The first port Linux hands out for `listen(0)` and outgoing connections (32768 by default, and elsewhere). */
function ephemeralRangeStart (): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32_768
  } catch {
    return 32_768
  }
}

async function listenedOnce (port: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(port, '127.0.0.1', () => {
      const address = probe.address()
      probe.close(() => typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port')))
    })
  })
}
