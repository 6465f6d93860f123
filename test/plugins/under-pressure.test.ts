import t from 'tap'
import { request } from 'undici'
import { post, startService } from '../helper.js'

/** The status of a small request, once the machine lets the loop be idle for a sample (other test files run beside this one). */
async function servedOnceIdle (url: string): Promise<number> {
  let status = 0
  for (let tries = 0; tries < 50 && status !== 400; tries++) {
    status = (await post(`${url}/fuse`, '{}', { 'content-type': 'application/json' })).status
    if (status !== 400) await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return status
}

t.test('a blocked event loop sheds new requests with 503; health routes still answer', async (t) => {
  const { url, app } = await startService(t, { PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '20', PRESSURE_SAMPLE_INTERVAL_MS: '500' })
  t.equal(await servedOnceIdle(url), 400, 'not under pressure: served')

  // The service runs in this process: block its event loop as a pile-up of synchronous work would. The check uses
  // the mean tick since the last sample, less the 10 ms of a tick: 10 ms ticks over 500 ms and one of 1.5 s make
  // about 30 ms, past the 20 ms limit. The pressure lasts until the next sample, half a second: long enough to be
  // seen by a request on a busy machine.
  const until = Date.now() + 1_500
  while (Date.now() < until) { /* busy */ }
  // The sampler's timer and the delay monitor's are both overdue after the block; when the sampler runs first, the
  // block counts in the next sample, one interval later. So ask until shed, for at most four intervals.
  let shed = await post(`${url}/fuse`, '{}', { 'content-type': 'application/json' })
  for (const deadline = Date.now() + 2_000; shed.status === 400 && Date.now() < deadline;) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    shed = await post(`${url}/fuse`, '{}', { 'content-type': 'application/json' })
  }
  t.equal(shed.status, 503, `shed (the plugin's last sample: ${JSON.stringify(app.memoryUsage())})`)
  t.match(shed.json(), { code: 'FUSION_SATURATED', statusCode: 503 })
  t.equal(shed.headers['retry-after'], '2')
  const health = await request(`${url}/healthz`)
  t.equal(health.statusCode, 200, '/healthz is exempt')
  await health.body.dump()

  // Once the loop is idle again, sampling clears the pressure.
  t.equal(await servedOnceIdle(url), 400, 'served again')
})

t.test('resident memory over PRESSURE_MAX_RSS_BYTES sheds new requests with 503; health routes still answer', async (t) => {
  // Any process holding this service is far above 16 MiB: the first sample finds the limit passed.
  const { url } = await startService(t, { PRESSURE_MAX_RSS_BYTES: String(16 * 1024 * 1024), PRESSURE_SAMPLE_INTERVAL_MS: '100' })
  let shed = await post(`${url}/fuse`, '{}', { 'content-type': 'application/json' })
  for (const deadline = Date.now() + 10_000; shed.status === 400 && Date.now() < deadline;) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    shed = await post(`${url}/fuse`, '{}', { 'content-type': 'application/json' })
  }
  t.equal(shed.status, 503)
  t.match(shed.json(), { code: 'FUSION_SATURATED' })
  const health = await request(`${url}/healthz`)
  t.equal(health.statusCode, 200, '/healthz is exempt')
  await health.body.dump()
})
