/**
 * Builds the app from the environment, as the server does, and prints which
 * of the packages the service may load lazily were loaded (JSON on stdout).
 * Run in a process of its own, so nothing else has loaded them.
 */
import { createRequire } from 'node:module'
import { buildApp } from '../../../src/app.js'
import { loadConfig } from '../../../src/config/load.js'

const LAZY = ['bullmq', 'ioredis', '@fastify/static']

const loaded = loadConfig(process.env)
if (loaded.upstream.credentials === undefined) throw new Error('set credentials: the emulator is not what this measures')
const app = await buildApp(loaded as Parameters<typeof buildApp>[0])
await app.ready()
const cached = Object.keys(createRequire(import.meta.url).cache)
const packages = LAZY.filter((name) => cached.some((path) => path.includes(`/node_modules/${name}/`)))
await app.close()
process.stdout.write(JSON.stringify(packages))
