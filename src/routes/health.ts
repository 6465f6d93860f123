import type { FastifyPluginAsync } from 'fastify'

/** GET /healthz: alive, and which upstream answers. Cheap: touches nothing remote. */
const healthRoute: FastifyPluginAsync = async (app) => {
  app.get('/healthz', async () => {
    const upstream = app.fusionProvider.describe()
    return {
      status: 'ok',
      upstream,
      ...(upstream.mode === 'emulator'
        ? { warning: 'No Tencent credentials are configured: fusions are served by the built-in emulator, not by Tencent Cloud.' }
        : {})
    }
  })
}

export default healthRoute
