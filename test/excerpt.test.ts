import t from 'tap'
import { excerpt } from '../src/excerpt.js'

t.test('what a client sent, as a short excerpt with everything unprintable escaped', async (t) => {
  t.equal(excerpt('project_id'), 'project_id', 'ordinary text is as it was')
  t.equal(excerpt('n'.repeat(100_000)), `${'n'.repeat(40)}…`, 'cut at 40 characters by default')
  t.equal(excerpt('n'.repeat(40)), 'n'.repeat(40), 'not marked when nothing was cut')
  t.equal(excerpt('abcdef', 3), 'abc…')
  t.equal(excerpt('a`b\\c'), 'a\\x60b\\x5cc', 'the backtick our messages quote with, and the escape character itself')
  t.equal(excerpt('line\nbreak\r\u0000\u001b[31m'), 'line\\x0abreak\\x0d\\x00\\x1b[31m', 'controls and terminal escapes')
  t.equal(excerpt('\u202eevil\u200b'), '\\u{202e}evil\\u{200b}', 'bidi overrides and invisible characters')
  t.equal(excerpt('名字😀'), '\\u{540d}\\u{5b57}\\u{1f600}', 'other scripts, a surrogate pair as one character')
  t.equal(excerpt('😀'.repeat(50), 2), '\\u{1f600}\\u{1f600}…', 'never cut inside a character')
  t.ok(excerpt('\u0000'.repeat(100_000)).length <= 40 * 4 + 1, 'bounded whatever it holds')
})
