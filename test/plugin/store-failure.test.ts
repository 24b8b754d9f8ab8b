// Issue 8, items 4 and 7 at the plugin level: no exception inside a hook passes a message under
// on_store_error = closed, a state file that cannot open stops startup (init_master answers
// DENY, which makes Haraka exit), and a reload to a store that cannot open keeps the old one.
// An unexpected internal exception cannot be provoked from outside a real Haraka, so the seams
// here (a transaction without recipients, notes that throw) stand for one.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as constants from 'haraka-constants'
import * as fixtures from 'haraka-test-fixtures'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import type { PasswdCallback } from '../../lib/haraka'
import { waitUntil } from '../../support'
import { callHook, distMemoryStore, makeGuard, replyText, transactionOf, type HookOutcome } from '../../support/plugin'

const LEVELS = ['loginfo', 'lognotice', 'logwarn', 'logerror', 'logcrit', 'logdebug'] as const

function connectionFor(login: string | undefined): FixtureConnection {
  const connection = fixtures.makeConnection({
    ip: '192.0.2.7',
    helo: 'client.example',
    relaying: true,
    notes: login === undefined ? {} : { auth_user: login },
    mailFrom: 'alice@example.com',
    rcptTo: ['bob@example.net'],
  })
  for (const level of LEVELS) connection[level] = () => undefined
  transactionOf(connection).add_header('Subject', 'hello')
  return connection
}

/** Notes whose auth_user cannot be read: an exception before any store call. */
function throwingNotes(connection: FixtureConnection): FixtureConnection {
  Object.defineProperty(connection, 'notes', {
    value: Object.defineProperty({}, 'auth_user', {
      get() {
        throw new TypeError('internal failure')
      },
    }),
  })
  return connection
}

const mail = (plugin: FixturePlugin, c: FixtureConnection): Promise<HookOutcome> =>
  callHook(plugin, 'hook_mail', c, [transactionOf(c).mail_from, {}])
const queue = (plugin: FixturePlugin, c: FixtureConnection): Promise<HookOutcome> =>
  callHook(plugin, 'count_message', c)
const init = (plugin: FixturePlugin): Promise<HookOutcome> => callHook(plugin, 'hook_init_master', {})

describe('plugin: an unexpected exception inside a hook (issue 8, item 4)', function () {
  const CLOSED = '[main]\non_store_error=closed\n[limits]\nmessages=3/1m\n[alert]\nto=pm@example.com\n'

  it('on_store_error = closed: an exception while counting answers 451 4.3.0, not CONT', async function () {
    const { plugin, logs } = makeGuard(CLOSED)
    const c = connectionFor('a')
    Reflect.set(transactionOf(c), 'rcpt_to', null)
    const q = await queue(plugin, c)
    assert.equal(q.rc, constants.denysoft)
    assert.match(replyText(q.msg), /^451 4\.3\.0 /)
    assert.equal(
      logs.filter(([level, m]) => level === 'logcrit' && /unexpected error, answering DENYSOFT/.test(m)).length,
      1,
    )
  })

  it('on_store_error = closed: an exception at MAIL FROM answers 451 4.3.0, not CONT', async function () {
    const { plugin } = makeGuard(CLOSED)
    const m = await mail(plugin, throwingNotes(connectionFor('a')))
    assert.equal(m.rc, constants.denysoft)
    assert.match(replyText(m.msg), /^451 4\.3\.0 .*contact pm@example\.com/)
  })

  it('on_store_error = closed: an exception thrown synchronously (not a rejection) answers 451 too', async function () {
    const { plugin } = makeGuard(CLOSED)
    // a plugin without its config stands for a synchronous failure inside the hook
    Reflect.deleteProperty(plugin.guard, 'config')
    const m = await mail(plugin, connectionFor('a'))
    assert.equal(m.rc, constants.denysoft)
  })

  it('on_store_error = closed: an exception in the AUTH check accepts the login, and MAIL FROM then answers 451 4.3.0', async function () {
    const { plugin, dir } = makeGuard(CLOSED)
    const auth = {
      name: 'auth/flat_file',
      check_plain_passwd(_connection: unknown, _user: string, passwd: string, cb: PasswdCallback): void {
        cb(passwd === 'right')
      },
    }
    plugin.haraka_require = () => ({ registered_plugins: { 'auth/flat_file': auth, 'hijack-guard': plugin } })
    assert.equal((await init(plugin)).rc, undefined)
    // The store cannot be opened from here on: opening it throws (a damaged file).
    const damaged = path.join(dir, 'damaged.json')
    fs.writeFileSync(damaged, '{')
    delete plugin.guard.store
    plugin.guard.config = { ...plugin.guard.config, store: 'memory', stateFile: damaged }
    const c = connectionFor(undefined)
    const valid = await new Promise<boolean>((resolve) =>
      auth.check_plain_passwd(c, 'alice', 'right', (v) => resolve(v)),
    )
    assert.equal(valid, true, 'the login is accepted: MAIL FROM decides')
    c.notes.auth_user = 'alice'
    const m = await mail(plugin, c)
    assert.equal(m.rc, constants.denysoft)
    assert.match(replyText(m.msg), /^451 4\.3\.0 /)
  })

  it('on_store_error = open: the same exception lets the message pass (the documented open policy)', async function () {
    const { plugin } = makeGuard('[main]\non_store_error=open\n[limits]\nmessages=3/1m\n')
    assert.equal((await mail(plugin, throwingNotes(connectionFor('a')))).rc, undefined)
  })
})

describe('plugin: a memory store that cannot open at startup (issue 8, item 4)', function () {
  it('init_master answers DENY naming the state file when it is not valid JSON, and leaves it alone', async function () {
    const { dir } = makeGuard('')
    const file = path.join(dir, 'damaged.json')
    fs.writeFileSync(file, '{"disabled": ')
    const { plugin, logs } = makeGuard(`[main]\nstore=memory\nstate_file=${file}\n`)
    delete plugin.guard.store
    const r = await init(plugin)
    assert.equal(r.rc, constants.deny)
    assert.ok(replyText(r.msg).includes(file), replyText(r.msg))
    assert.ok(logs.some(([level, m]) => level === 'logcrit' && m.includes(file)))
    assert.equal(fs.readFileSync(file, 'utf8'), '{"disabled": ')
  })

  it('init_master creates a missing state file and answers CONT', async function () {
    const { dir } = makeGuard('')
    const file = path.join(dir, 'var', 'state.json')
    const { plugin } = makeGuard(`[main]\nstore=memory\nstate_file=${file}\n`)
    delete plugin.guard.store
    const r = await init(plugin)
    assert.equal(r.rc, undefined)
    assert.ok(fs.existsSync(file))
  })
})

describe('plugin: a hot reload to a store that cannot open (issue 8, item 7)', function () {
  it('keeps the old config and store and logs ERROR; no exception leaves the reload callback', async function () {
    this.timeout(30000)
    const { dir: base } = makeGuard('')
    const good = path.join(base, 'good.json')
    const bad = path.join(base, 'bad.json')
    const { plugin, dir, logs } = makeGuard(`[main]\nstore=memory\nstate_file=${good}\n[limits]\nmessages=3/1m\n`)
    const ini = path.join(dir, 'config', 'hijack-guard.ini')
    const store = distMemoryStore().createMemoryStore({ stateFile: good })
    plugin.guard.store = store
    await store.disable({ account: 'bob', reason: 'test', by: 'test', incident: 'x' })
    fs.writeFileSync(bad, 'this is not JSON')
    fs.writeFileSync(ini, `[main]\nstore=memory\nstate_file=${bad}\n[limits]\nmessages=9/1m\n`)
    await waitUntil(() => logs.some(([level, m]) => level === 'logerror' && m.includes(bad)), {
      timeoutMs: 20000,
      intervalMs: 50,
      message: 'the reload to a store that cannot open is logged at ERROR',
    })
    assert.equal(plugin.guard.store, store, 'the old store stays')
    assert.equal(plugin.guard.config.stateFile, good, 'the old config stays')
    assert.equal(plugin.guard.config.rules[0]?.max, 3)
    const m = await mail(plugin, connectionFor('bob'))
    assert.equal(m.rc, constants.denydisconnect, 'bob is still refused')
  })
})
