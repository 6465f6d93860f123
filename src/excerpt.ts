/**
 * What a client sent, as it may appear in an error message or a log line: at most `max` characters of it, with
 * everything that is not printable ASCII (control characters, newlines, bidi overrides, other scripts) and the
 * backslash and backtick that our messages quote with written as escapes, and `…` when it was cut. A 100 KB field
 * name is then a short, inert excerpt, not an 82 KB answer and log line.
 */
export function excerpt (text: string, max = 40): string {
  const characters = Array.from(text.slice(0, max * 2)).slice(0, max)
  const escaped = characters.map((character) => {
    const code = character.codePointAt(0) ?? 0
    if (code >= 0x20 && code <= 0x7e && character !== '\\' && character !== '`') return character
    if (code <= 0xff) return `\\x${code.toString(16).padStart(2, '0')}`
    return `\\u{${code.toString(16)}}`
  }).join('')
  return characters.join('').length < text.length ? `${escaped}…` : escaped
}
