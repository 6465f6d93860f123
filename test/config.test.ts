import t from 'tap'
import { ConfigError, loadConfig } from '../src/config/load.js'
import { ConfigSchema } from '../src/config/schema.js'
import { DEFAULT_TENCENT_LEGACY_URL, DEFAULT_TENCENT_V3_URL } from '../src/config/upstream.js'
import { EMULATOR_ACCOUNT } from '../emulator/shared/accounts.js'
import { completeWithStandIn } from '../emulator/stand-in.js'
import { buildApp } from '../src/app.js'

const credentials = {
  TENCENT_APPID: '1250000001',
  TENCENT_UIN: '100000000002',
  TENCENT_SECRET_ID: 'operator-secret-id',
  TENCENT_SECRET_KEY: 'operator-secret-key'
}

function problems (env: Record<string, string>): string {
  try {
    loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) return error.message
    throw error
  }
  throw new Error('expected a ConfigError')
}

t.test('defaults without any variable: the emulator, on port 3000', async (t) => {
  const config = loadConfig({})
  t.equal(config.PORT, 3000)
  t.equal(config.HOST, '0.0.0.0')
  t.equal(config.LOG_LEVEL, 'info')
  t.same(config.upstream, { provider: 'legacy', mode: 'emulator', url: undefined, credentials: undefined }, 'no credentials: to be completed')
  const { config: completed, close } = await completeWithStandIn(config)
  t.teardown(close)
  t.match(completed.upstream, { provider: 'legacy', mode: 'emulator', url: /^http:\/\/127\.0\.0\.1:\d+\/fuseapi\/face$/ })
  t.same(completed.upstream.credentials, EMULATOR_ACCOUNT.credentials, 'signed with the emulator account')
})

t.test('the app refuses upstream settings without credentials: a programming error', async (t) => {
  await t.rejects(buildApp(loadConfig({ LOG_LEVEL: 'silent' })), /the upstream settings have no URL or credentials/)
})

t.test('all four credentials: Tencent, at the documented endpoint unless told otherwise', async (t) => {
  const config = loadConfig(credentials)
  t.equal(config.upstream.mode, 'tencent')
  t.equal(config.upstream.url, DEFAULT_TENCENT_LEGACY_URL)
  t.same(config.upstream.credentials, { appId: '1250000001', uin: '100000000002', secretId: 'operator-secret-id', secretKey: 'operator-secret-key' })
  t.notOk('TENCENT_SECRET_KEY' in config, 'the secret lives only with the upstream credentials')

  const elsewhere = loadConfig({ ...credentials, TENCENT_LEGACY_URL: 'http://fusion.internal:8080/fuseapi/face' })
  t.equal(elsewhere.upstream.url, 'http://fusion.internal:8080/fuseapi/face', 'plain http:// and any host')
})

t.test('some credentials but not all: refuse to start, naming what is missing', async (t) => {
  const message = problems({ TENCENT_APPID: '1250000001', TENCENT_SECRET_KEY: 'half-configured-secret' })
  t.match(message, /TENCENT_UIN, TENCENT_SECRET_ID: must be set/)
  t.notOk(message.includes('half-configured-secret'), 'the secret is not echoed')
})

t.test('bad values name the variable and the rule, never the value', async (t) => {
  t.match(problems({ PORT: '70000' }), /PORT: must be <= 65535/)
  t.match(problems({ PORT: 'eighty' }), /PORT: must be integer/)
  t.match(problems({ LOG_LEVEL: 'loud' }), /LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent/)
  t.match(problems({ TENCENT_LEGACY_URL: 'ftp://example.com/x' }), /TENCENT_LEGACY_URL: must match pattern/)
  t.match(problems({ UPSTREAM_TIMEOUT_MS: '10' }), /UPSTREAM_TIMEOUT_MS: must be >= 100/)
  t.match(problems({ UPSTREAM_BREAKER_FAILURE_RATIO: '1' }), /UPSTREAM_BREAKER_FAILURE_RATIO: must be < 1/)
  t.match(problems({ UPSTREAM_BREAKER_MIN_CALLS: '30', UPSTREAM_BREAKER_WINDOW: '20' }), /UPSTREAM_BREAKER_MIN_CALLS: must be at most UPSTREAM_BREAKER_WINDOW/)
  const secret = 'has spaces in the secret'
  const message = problems({ ...credentials, TENCENT_SECRET_KEY: secret })
  t.match(message, /TENCENT_SECRET_KEY: must match pattern/)
  t.notOk(message.includes(secret), 'the secret is not echoed')
})

t.test('empty values count as unset', async (t) => {
  const config = loadConfig({ PORT: '', TENCENT_APPID: '', TENCENT_UIN: '', TENCENT_SECRET_ID: '', TENCENT_SECRET_KEY: '' })
  t.equal(config.PORT, 3000)
  t.equal(config.upstream.mode, 'emulator')
})

t.test('only the given environment counts, and its empty values are unset, as compose passes them', async (t) => {
  const saved = { ...process.env }
  t.teardown(() => { process.env = saved })
  Object.assign(process.env, { TENCENT_APPID: '', TENCENT_UIN: '', TENCENT_SECRET_ID: '', TENCENT_SECRET_KEY: '', TRUST_PROXY: '', UPSTREAM_QPS: '', REDIS_URL: '' })
  const config = loadConfig(process.env)
  t.equal(config.upstream.mode, 'emulator')
  t.equal(config.UPSTREAM_QPS, 50)
  t.equal(config.REDIS_URL, undefined)
  process.env.REDIS_URL = 'redis://127.0.0.1:1'
  t.equal(loadConfig({}).REDIS_URL, undefined, 'a variable outside the given environment is not read')
})

t.test('a .env file is read, and the environment wins over it', async (t) => {
  const dir = t.testdir({ '.env': 'PORT=4100\nLOG_LEVEL=debug\n' })
  const previous = process.cwd()
  process.chdir(dir)
  t.teardown(() => process.chdir(previous))
  const config = loadConfig({ LOG_LEVEL: 'warn' }, { dotenv: true })
  t.equal(config.PORT, 4100)
  t.equal(config.LOG_LEVEL, 'warn')
})

t.test('API 3.0: FUSION_PROVIDER=v3 needs only the SecretId and SecretKey', async (t) => {
  const v3 = loadConfig({ FUSION_PROVIDER: 'v3', TENCENT_SECRET_ID: 'operator-secret-id', TENCENT_SECRET_KEY: 'operator-secret-key' })
  t.same(v3.upstream, {
    provider: 'v3',
    mode: 'tencent',
    url: DEFAULT_TENCENT_V3_URL,
    credentials: { secretId: 'operator-secret-id', secretKey: 'operator-secret-key' },
    region: 'ap-guangzhou',
    action: 'FuseFace',
    version: '2022-09-27'
  })
  t.equal(DEFAULT_TENCENT_V3_URL, 'https://facefusion.tencentcloudapi.com')

  const inferred = loadConfig({ TENCENT_SECRET_ID: 'operator-secret-id', TENCENT_SECRET_KEY: 'operator-secret-key' })
  t.equal(inferred.upstream.provider, 'v3', 'a SecretId and SecretKey without appid and uin mean API 3.0')
  t.equal(loadConfig(credentials).upstream.provider, 'legacy', 'the legacy credentials keep legacy the default')
  t.match(loadConfig({ TENCENT_V3_URL: 'http://127.0.0.1:8090' }).upstream, { provider: 'v3', mode: 'emulator', url: 'http://127.0.0.1:8090' }, 'an API 3.0 URL alone means API 3.0')
  t.equal(loadConfig({ TENCENT_LEGACY_URL: 'http://127.0.0.1:8090/fuseapi/face' }).upstream.provider, 'legacy')
  t.equal(loadConfig({}).upstream.provider, 'legacy', 'nothing set: legacy, on the emulator')

  const temporary = loadConfig({
    FUSION_PROVIDER: 'v3',
    TENCENT_SECRET_ID: 'temp-id',
    TENCENT_SECRET_KEY: 'temp-key',
    TENCENT_SESSION_TOKEN: 'session-token',
    TENCENT_REGION: 'ap-shanghai',
    TENCENT_V3_URL: 'http://fusion-proxy.internal:8080/',
    FUSION_V3_ACTION: 'FaceFusion'
  })
  t.match(temporary.upstream, {
    url: 'http://fusion-proxy.internal:8080/',
    credentials: { sessionToken: 'session-token' },
    region: 'ap-shanghai',
    action: 'FaceFusion',
    version: '2018-12-01'
  }, 'FaceFusion defaults to the only version that has it; plain http:// and any origin work')
  t.notOk('TENCENT_SESSION_TOKEN' in temporary, 'the token lives only with the upstream credentials')
  t.match(loadConfig({ FUSION_PROVIDER: 'v3', FUSION_V3_VERSION: '2018-12-01' }).upstream, { action: 'FuseFace', version: '2018-12-01' })
})

t.test('API 3.0 without credentials: the emulator, signed with its development key', async (t) => {
  const config = loadConfig({ FUSION_PROVIDER: 'v3' })
  t.match(config.upstream, { provider: 'v3', mode: 'emulator', url: undefined, credentials: undefined })
  const { config: completed, close } = await completeWithStandIn(config)
  t.teardown(close)
  const { secretId, secretKey } = EMULATOR_ACCOUNT.credentials
  t.match(completed.upstream, { provider: 'v3', mode: 'emulator', url: /^http:\/\/127\.0\.0\.1:\d+\/$/ })
  t.same(completed.upstream.credentials, { secretId, secretKey })
})

t.test('API 3.0 settings are checked', async (t) => {
  t.match(problems({ FUSION_PROVIDER: 'v4' }), /FUSION_PROVIDER: must be one of legacy, v3/)
  t.match(problems({ FUSION_PROVIDER: 'v3', FUSION_V3_ACTION: 'FuseFaceUltra' }), /FUSION_V3_ACTION: must be one of FuseFace, FaceFusion/)
  t.match(problems({ FUSION_PROVIDER: 'v3', FUSION_V3_ACTION: 'FaceFusion', FUSION_V3_VERSION: '2022-09-27' }), /FUSION_V3_VERSION: FaceFusion exists only in version 2018-12-01/)
  t.match(problems({ FUSION_PROVIDER: 'v3', TENCENT_SECRET_ID: 'only-the-id' }), /TENCENT_SECRET_KEY: must be set/)
  t.match(problems({ FUSION_PROVIDER: 'v3', TENCENT_SESSION_TOKEN: 'token' }), /TENCENT_SECRET_ID, TENCENT_SECRET_KEY: must be set/)
  t.match(problems({ ...credentials, TENCENT_SESSION_TOKEN: 'token' }), /TENCENT_SESSION_TOKEN: temporary credentials work with API 3.0 only/)
  t.match(problems({ FUSION_PROVIDER: 'v3', TENCENT_V3_URL: 'facefusion.tencentcloudapi.com' }), /TENCENT_V3_URL: must match pattern/)
  t.match(problems({ FUSION_PROVIDER: 'v3', TENCENT_REGION: 'Guangzhou' }), /TENCENT_REGION: must match pattern/)
  t.match(problems({ TENCENT_V3_URL: 'http://facefusion.internal:99999' }), /TENCENT_V3_URL: must be a valid http:\/\/ or https:\/\/ URL/)
  t.match(problems({ TENCENT_LEGACY_URL: 'http://[fe80::1/fuseapi/face' }), /TENCENT_LEGACY_URL: must be a valid/)
})

t.test('IMAGE_MAX_SIDE: 1080 by default, at most what the configured API accepts', async (t) => {
  t.equal(loadConfig({}).IMAGE_MAX_SIDE, 1080)
  t.equal(loadConfig({ FUSION_PROVIDER: 'v3', IMAGE_MAX_SIDE: '4095' }).IMAGE_MAX_SIDE, 4095, 'FuseFace 2022 takes up to 4095 px')
  t.equal(loadConfig({ IMAGE_MAX_SIDE: '720' }).IMAGE_MAX_SIDE, 720, 'smaller than the legacy API\'s limit')
  t.match(problems({ IMAGE_MAX_SIDE: '1600' }),
    /IMAGE_MAX_SIDE: 1600 px is more than the legacy API \(fuseapi\/face\) accepts; set at most 1080$/m)
  t.match(problems({ FUSION_PROVIDER: 'v3', FUSION_V3_VERSION: '2018-12-01', IMAGE_MAX_SIDE: '2048' }),
    /IMAGE_MAX_SIDE: 2048 px is more than API 3.0 FuseFace 2018-12-01 accepts; set at most 1080/)
  t.match(problems({ FUSION_PROVIDER: 'v3', IMAGE_MAX_SIDE: '4096' }), /IMAGE_MAX_SIDE: must be <= 4095/)
  t.match(problems({ IMAGE_MAX_SIDE: '100' }), /IMAGE_MAX_SIDE: must be >= 256/)
})

t.test('FUSION_TEMPLATES declares what GET /templates lists', async (t) => {
  t.same(loadConfig({ FUSION_TEMPLATES: '100307:qc_100307_152854_1=Astronaut,100646:qc_100646_154021_9' }).templates, {
    source: 'config',
    templates: [
      { projectId: '100307', modelId: 'qc_100307_152854_1', name: 'Astronaut' },
      { projectId: '100646', modelId: 'qc_100646_154021_9' }
    ]
  })
  t.equal(loadConfig({}).templates, undefined)
  t.match(problems({ FUSION_TEMPLATES: 'no-colon' }), /FUSION_TEMPLATES: must match pattern/)
})

t.test('every switch and every choice lists the values it accepts', async (t) => {
  const properties = ConfigSchema.properties as Record<string, { type?: string, anyOf?: Array<{ const?: unknown }> }>
  const switches = Object.keys(properties).filter((name) => properties[name]!.type === 'boolean')
  const choices = Object.keys(properties).filter((name) => properties[name]!.anyOf !== undefined)
  t.ok(switches.includes('DEMO_PAGE') && switches.length >= 3, `switches: ${switches.join(', ')}`)
  t.ok(choices.includes('LOG_LEVEL') && choices.length >= 4, `choices: ${choices.join(', ')}`)
  for (const name of switches) {
    t.match(problems({ [name]: 'yes' }), new RegExp(`^  - ${name}: must be true or false$`, 'm'), name)
    t.equal(loadConfig({ [name]: 'false' })[name as 'DEMO_PAGE'], false, `${name}=false is read`)
  }
  for (const name of choices) {
    const accepted = properties[name]!.anyOf!.map((option) => String(option.const))
    t.match(problems({ [name]: 'not-one-of-them' }), new RegExp(`^  - ${name}: must be one of ${accepted.join(', ')}$`, 'm'), name)
  }
})

t.test('HOST with a port or a scheme is refused at load, saying the port goes in PORT', async (t) => {
  const hosts: Array<[string, string | undefined]> = [['localhost:3000', '3000'], ['http://0.0.0.0:8080/', '8080'], ['[::1]:3000', '3000'], ['https://example.com', undefined]]
  for (const [host, port] of hosts) {
    const message = problems({ HOST: host })
    t.match(message, /^ {2}- HOST: .* is not a host name or address: HOST takes one without a scheme or a port .*; the port goes in PORT/m, host)
    if (port !== undefined) t.match(message, `(PORT=${port})`, `${host}: the port to set`)
  }
  for (const host of ['localhost', '0.0.0.0', '127.0.0.1', '::', '::1', 'fusion.internal']) t.equal(loadConfig({ HOST: host }).HOST, host, host)
  t.match(problems({ HOST: 'localhost:3000', DEMO_PAGE: 'yes' }), /DEMO_PAGE: must be true or false\n {2}- HOST: /, 'listed with the other problems')
})
