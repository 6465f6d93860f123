import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import t from 'tap'
import { markdownAnchors, markdownWithoutCode } from '../helper.js'

/**
 * The README and docs/ link to each other and into each other's sections: every relative link must reach a file
 * that exists and, when it names one, a heading that file has (slugged as GitHub does).
 */
const root = join(import.meta.dirname, '..', '..')
const pages = ['README.md', ...readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')).map((name) => join('docs', name))]

const anchorsOf = (file: string): Set<string> => markdownAnchors(readFileSync(file, 'utf8'))

for (const page of pages) {
  t.test(page, async (t) => {
    const text = markdownWithoutCode(readFileSync(join(root, page), 'utf8'))
    const links = [...text.matchAll(/\]\(([^)\s]+)\)/g)].map(([, target]) => target!).filter((target) => !/^[a-z]+:/i.test(target))
    for (const link of links) {
      const [path, anchor] = link.split('#') as [string, string | undefined]
      const file = path === '' ? join(root, page) : join(root, dirname(page), path)
      t.ok(existsSync(file), `${link}: ${relative(root, file)} exists`)
      if (anchor !== undefined && existsSync(file) && file.endsWith('.md')) {
        t.ok(anchorsOf(file).has(decodeURIComponent(anchor)), `${link}: ${relative(root, file)} has the heading #${anchor}`)
      }
    }
  })
}
