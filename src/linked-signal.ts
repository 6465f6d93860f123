/**
 * A signal aborted, with its reason, as soon as any of `signals` is, for as
 * long as it is linked: `unlink` removes its listeners once the work it guards
 * is over. For pairing a request's signal with the service's process-long stop
 * signal: AbortSignal.any ties each result to its sources until garbage
 * collection clears its weak references, and under bench/throughput.ts its
 * bookkeeping cost the main thread about 1 ms a photo.
 */
export function linkSignals (signals: Array<AbortSignal | null | undefined>): { signal: AbortSignal, unlink: () => void } {
  const sources = signals.filter((signal) => signal != null)
  if (sources.length === 1) return { signal: sources[0]!, unlink: () => {} }
  const controller = new AbortController()
  const aborted = sources.find((source) => source.aborted)
  if (aborted !== undefined) {
    controller.abort(aborted.reason)
    return { signal: controller.signal, unlink: () => {} }
  }
  const onAbort = (event: Event): void => {
    unlink()
    controller.abort((event.target as AbortSignal).reason)
  }
  const unlink = (): void => { for (const source of sources) source.removeEventListener('abort', onAbort) }
  for (const source of sources) source.addEventListener('abort', onAbort)
  return { signal: controller.signal, unlink }
}
