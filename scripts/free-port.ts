import { createServer } from 'node:net'

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort (): Promise<number> {
  return await listenedOnce(0)
}

/**
 * A port on 127.0.0.1 that nothing listens on and nothing will: below Linux's
 * ephemeral range (32768–60999), so no `listen(0)` of another test is handed it
 * and no outgoing connection takes it as its own port (a connection to an
 * ephemeral port nobody listens on can meet itself, and read its own request as
 * the answer).
 */
export async function closedPort (): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    if (await listenedOnce(port).then(() => true, () => false)) return port
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
