/**
 * The upstream's frequency control: at most `qps` calls per key within any
 * one-second window of `clock`. A refused call does not count.
 * Returns a check that answers true when the call is over the limit.
 */
export function frequencyControl (qps: number, clock: () => number): (key: string) => boolean {
  const recentCalls = new Map<string, number[]>()
  return (key) => {
    if (qps <= 0) return false
    const now = clock()
    const calls = (recentCalls.get(key) ?? []).filter((at) => now - at < 1000)
    const limited = calls.length >= qps
    if (!limited) calls.push(now)
    recentCalls.set(key, calls)
    return limited
  }
}
