/**
 * The `Prefer` request header (RFC 7240) as POST /fuse reads it:
 * `respond-async` and `wait=N` (seconds), in any case, among other preferences,
 * which are ignored. Several headers or comma-separated lists alike; a `wait`
 * that is not a whole number of seconds is ignored, a longer one capped.
 */
export interface Preferences {
  respondAsync: boolean
  /** Seconds, capped at the configured maximum. */
  wait: number | undefined
}

export function parsePrefer (header: string | string[] | undefined, maxWaitSeconds: number): Preferences {
  const preferences: Preferences = { respondAsync: false, wait: undefined }
  const values = Array.isArray(header) ? header : header === undefined ? [] : [header]
  for (const entry of values.join(',').split(',')) {
    // A preference's own parameters (after `;`) change nothing here.
    const [token = '', value] = (entry.split(';')[0] ?? '').split('=').map((part) => part.trim())
    const name = token.toLowerCase()
    if (name === 'respond-async') preferences.respondAsync = true
    if (name === 'wait' && value !== undefined && /^\d{1,6}$/.test(value.replace(/^"|"$/g, ''))) {
      preferences.wait = Math.min(Number(value.replace(/^"|"$/g, '')), maxWaitSeconds)
    }
  }
  return preferences
}
