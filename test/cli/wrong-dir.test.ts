// The CLI acting on the wrong store (issue 8 item 11): with a wrong -c the CLI used to fall
// back to the defaults and Redis on 127.0.0.1:6379, print success and leave the real server
// alone. Now it exits 3 naming the directory, and a right -c names the store it acted on.
// Real process (node dist/bin/hijack-guard.js), real redis-server on a loopback port.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  HOST,
  connectRedis,
  escapeRegExp,
  startRedis,
  stopAll,
  tmpDir,
  type RedisClient,
  type RedisServer,
} from '../../support'
import { runBin, show, type CliRunOptions } from './run'

after(() => stopAll())

describe('cli: -c must name the Haraka directory of a server running hijack-guard', function () {
  this.timeout(60000)

  let redis: RedisServer
  // its own connection: SELECT changes the db of the connection it is sent on
  let admin: RedisClient
  let root: string
  let good: string

  const makeDir = (name: string, { plugins, ini }: { plugins?: string; ini?: string } = {}): string => {
    const dir = path.join(root, name)
    fs.mkdirSync(path.join(dir, 'config'), { recursive: true })
    fs.writeFileSync(
      path.join(dir, 'config', 'hijack-guard.ini'),
      ini ?? `[redis]\nport = ${redis.port}\ndb = 2\n[alert]\nto = pm@test.example\n`,
    )
    if (plugins !== undefined) fs.writeFileSync(path.join(dir, 'config', 'plugins'), plugins)
    return dir
  }

  const cli = (args: readonly string[], options?: CliRunOptions) => runBin(args, options)

  before(async function () {
    redis = await startRedis()
    admin = await connectRedis(redis.port)
    root = tmpDir('cli-dir')
    good = makeDir('haraka', { plugins: '# comment\nauth/flat_file\n  hijack-guard  \n' })
  })

  after(async function () {
    if (admin?.isOpen) admin.destroy()
    await redis?.stop()
  })

  // Nothing may have been written to any Redis db by a refused run.
  async function assertRedisUntouched(what: string): Promise<void> {
    for (const db of [0, 2]) {
      await admin.select(db)
      assert.deepEqual(await admin.keys('*'), [], `${what}: keys in db ${db}`)
    }
    await admin.select(0)
  }

  const wrong: Array<[string, () => string, RegExp]> = [
    ['a directory that does not exist', () => path.join(root, 'missing'), /is not a directory/],
    [
      'an empty directory',
      () => {
        const d = path.join(root, 'empty')
        fs.mkdirSync(d, { recursive: true })
        return d
      },
      /is not a Haraka directory: .*config does not exist/,
    ],
    [
      'the config/ directory itself',
      () => path.join(good, 'config'),
      /looks like the config directory itself, give its parent \(-c /,
    ],
    ['a directory whose config/ has no plugins file', () => makeDir('noplugins'), /config[/\\]plugins cannot be read/],
    [
      'a directory whose config/plugins does not list hijack-guard',
      () => makeDir('other', { plugins: 'auth/flat_file\nqueue/smtp_forward\n' }),
      /hijack-guard is not enabled in .*: .*config[/\\]plugins has no line "hijack-guard"/,
    ],
    [
      'a directory whose config/plugins has hijack-guard commented out',
      () => makeDir('commented', { plugins: 'auth/flat_file\n# hijack-guard\n;hijack-guard\n' }),
      /hijack-guard is not enabled in /,
    ],
    [
      'a directory whose config/plugins names a different plugin that contains the name',
      () => makeDir('similar', { plugins: 'hijack-guard-old\nmy-hijack-guard\n' }),
      /hijack-guard is not enabled in /,
    ],
  ]

  for (const [what, dirOf, message] of wrong) {
    it(`exits 3 naming the directory for ${what}; disable acts on no store`, async function () {
      const dir = dirOf()
      for (const args of [
        ['-c', dir, 'disable', 'bob@test.example'],
        ['-c', dir, '--json', 'list'],
      ]) {
        const r = await cli(args)
        assert.equal(r.code, 3, `${what}: ${show(r)}`)
        assert.ok(r.stderr.includes(dir), `stderr names ${dir}: ${show(r)}`)
        assert.match(r.stderr, message, show(r))
        assert.equal(r.stdout, '', show(r))
      }
      await assertRedisUntouched(what)
    })
  }

  it('without -c, from a directory that is not a Haraka directory: exit 3 naming the working directory', async function () {
    const cwd = path.join(root, 'cwd')
    fs.mkdirSync(cwd, { recursive: true })
    const r = await cli(['disable', 'bob@test.example'], { cwd })
    assert.equal(r.code, 3, show(r))
    assert.ok(r.stderr.includes(fs.realpathSync(cwd)) || r.stderr.includes(cwd), show(r))
    await assertRedisUntouched('no -c')
  })

  it('a right -c acts on the configured store and names it (text: "store: redis HOST:PORT/DB"; JSON: a store field)', async function () {
    const r = await cli(['-c', good, 'disable', 'Bob@Test.Example'])
    assert.equal(r.code, 0, show(r))
    assert.equal(r.stdout.split('\n')[0], `store: redis ${HOST}:${redis.port}/2`)
    assert.match(r.stdout, /bob@test\.example disabled/)
    await admin.select(2)
    assert.ok((await admin.keys('hijack-guard:{bob@test.example}:*')).length > 0, 'the flag is in db 2')
    await admin.select(0)
    assert.deepEqual(await admin.keys('*'), [], 'nothing in db 0')

    const js = await cli(['-c', good, '--json', 'show', 'bob@test.example'])
    assert.equal(js.code, 0, show(js))
    const o = JSON.parse(js.stdout) as unknown
    assert.ok(o !== null && typeof o === 'object', show(js))
    assert.equal('store' in o && o.store, `redis ${HOST}:${redis.port}/2`)
    assert.equal('state' in o && o.state, 'disabled')

    const list = await cli(['-c', good, 'list'])
    assert.match(list.stdout, new RegExp(`^store: redis ${escapeRegExp(HOST)}:${redis.port}/2\\n1 disabled account\\n`))
    for (const args of [['enable', 'bob@test.example'], ['audit'], ['reset', 'bob@test.example']]) {
      const x = await cli(['-c', good, ...args])
      assert.match(x.stdout, /^store: redis /, `${args.join(' ')}: ${show(x)}`)
    }
  })

  it('$HARAKA stands in for -c, and haraka-plugin-hijack-guard in config/plugins counts as enabled', async function () {
    const dir = makeDir('long-name', { plugins: 'haraka-plugin-hijack-guard\n' })
    const r = await cli(['list'], { env: { HARAKA: dir } })
    assert.equal(r.code, 0, show(r))
    assert.match(r.stdout, /^store: redis /)
  })

  it('with store = memory the text names the state file', async function () {
    const dir = makeDir('mem', {
      plugins: 'hijack-guard\n',
      ini: '[main]\nstore = memory\nstate_file = var/state.json\n',
    })
    const r = await cli(['-c', dir, 'disable', 'carol@test.example'])
    assert.equal(r.code, 0, show(r))
    assert.equal(r.stdout.split('\n')[0], `store: memory ${path.join(dir, 'var', 'state.json')}`)
    const state = JSON.parse(fs.readFileSync(path.join(dir, 'var', 'state.json'), 'utf8')) as unknown
    assert.ok(state !== null && typeof state === 'object' && 'disabled' in state, JSON.stringify(state))
    const disabled = state.disabled
    assert.ok(
      disabled !== null && typeof disabled === 'object' && 'carol@test.example' in disabled,
      JSON.stringify(state),
    )
    assert.ok(disabled['carol@test.example'])
  })
})
