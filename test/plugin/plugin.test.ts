// The compiled plugin as Haraka loads it (through haraka-test-fixtures), with the memory store
// or a failing store at the store seam. Asserts what Haraka would answer.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as constants from 'haraka-constants'
import * as fixtures from 'haraka-test-fixtures'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import type { PasswdCallback } from '../../lib/haraka'
import type { Store } from '../../lib/store'
import { waitUntil } from '../../support'
import {
  callHook,
  failingStore,
  guardStore,
  makeGuard,
  replyText,
  transactionOf,
  type GuardPlugin,
  type HookOutcome,
  fixtureSession,
} from '../../support/plugin'

/** A fixtures connection whose log lines ([level, text]) are kept in hgLogs. */
type LoggedConnection = FixtureConnection & { hgLogs: Array<[string, string]> }

interface SessionOptions {
  readonly rcpts?: readonly string[]
  readonly subject?: string
  readonly ip?: string
}

function connectionFor(
  login: string | undefined,
  { rcpts = ['bob@example.net'], subject = 'hello', ip = '192.0.2.7' }: SessionOptions = {},
): LoggedConnection {
  const logs: Array<[string, string]> = []
  return Object.assign(
    fixtureSession({
      login,
      relaying: true,
      mailFrom: 'alice@example.com',
      rcptTo: rcpts,
      ip,
      headers: { Subject: subject },
      log: (level, msg) => logs.push([level, String(msg)]),
    }),
    { hgLogs: logs },
  )
}

const mail = (plugin: FixturePlugin, c: FixtureConnection): Promise<HookOutcome> =>
  callHook(plugin, 'hook_mail', c, [transactionOf(c).mail_from, {}])
const queue = (plugin: FixturePlugin, c: FixtureConnection): Promise<HookOutcome> =>
  callHook(plugin, 'count_message', c)

/** The max of the plugin's first rule. */
const firstMax = (plugin: GuardPlugin): number | undefined => plugin.guard.config.rules[0]?.max

describe('plugin: registration and config', function () {
  it('registers its rcpt, queue, queue_outbound and get_mx hooks ahead of other plugins (priority -100), deny after them (100)', function () {
    const registered: Array<[string, string, number | undefined]> = []
    const { plugin } = makeGuard('[limits]\nmessages=3/1m\n', {
      onRegisterHook: (hook, method, priority) => registered.push([hook, method, priority]),
    })
    assert.deepEqual(registered, [
      ['rcpt', 'check_rcpt', -100],
      ['queue', 'consume_reply', -100],
      ['queue_outbound', 'count_message', -100],
      ['get_mx', 'refuse_dropped', -100],
      ['deny', 'count_refused_rcpt', 100],
    ])
    assert.equal(typeof plugin.hook_mail, 'function')
    assert.equal(typeof plugin.hook_init_master, 'function')
    assert.equal(typeof plugin.hook_init_child, 'function')
  })

  it('refuses to start on a bad value, naming the file, key and value', function () {
    assert.throws(
      () => makeGuard('[limits]\nmessages=abc\n'),
      (err: unknown) => {
        assert.ok(err instanceof Error)
        assert.match(err.message, /hijack-guard\.ini/)
        assert.match(err.message, /limits\.messages/)
        assert.match(err.message, /"abc"/)
        return true
      },
    )
    assert.throws(() => makeGuard('[main]\nmode=panic\n'), /main\.mode = "panic"/)
  })

  it('refuses the memory store when Haraka runs several workers', function () {
    assert.throws(
      () => makeGuard('[main]\nstore=memory\n', { smtpIni: '[main]\nnodes=4\n' }),
      /nodes = 4.*use store = redis/,
    )
    assert.doesNotThrow(() => makeGuard('[main]\nstore=memory\n', { smtpIni: '[main]\nnodes=0\n' }))
  })

  it('takes the shipped defaults: 500 messages and 2500 recipients per 30 minutes, enforce, redis, open', function () {
    const { plugin } = makeGuard('')
    const c = plugin.guard.config
    assert.deepEqual(
      c.rules.map((r) => `${r.kind} ${r.text}`),
      ['messages 500/30m', 'recipients 2500/30m', 'networks 5/6h', 'networks 9/24h'],
    )
    assert.equal(c.mode, 'enforce')
    assert.equal(c.store, 'redis')
    assert.equal(c.onStoreError, 'open')
    assert.equal(c.storeTimeoutMs, 1000)
  })

  it('keeps the previous config when a hot reload reads a bad file, and applies a good one', async function () {
    this.timeout(30000)
    const { plugin, dir, logs } = makeGuard('[limits]\nmessages=3/1m\n')
    const file = path.join(dir, 'config', 'hijack-guard.ini')
    fs.writeFileSync(file, '[limits]\nmessages=zero/1m\n')
    await waitUntil(() => logs.some(([, m]) => /keeping the previous configuration/.test(m)), {
      timeoutMs: 20000,
      intervalMs: 100,
      message: 'the reload of a bad file is logged',
    })
    assert.equal(firstMax(plugin), 3)
    fs.writeFileSync(file, '[limits]\nmessages=7/1m\n')
    await waitUntil(() => firstMax(plugin) === 7, {
      timeoutMs: 20000,
      intervalMs: 100,
      message: () => `messages = 7/1m is applied (max is ${firstMax(plugin)})`,
    })
  })
})

describe('plugin: counting at queue_outbound', function () {
  it('accepts 3 messages and refuses the 4th with 550 5.7.1 for messages = 3/1m, then MAIL FROM gets 550 5.7.1 and a disconnect', async function () {
    const { plugin } = makeGuard('[limits]\nmessages=3/1m\n[alert]\nto=postmaster@example.com\n')
    for (let i = 0; i < 3; i++) {
      const c = connectionFor('Alice@Example.com')
      assert.equal((await mail(plugin, c)).rc, undefined)
      assert.equal((await queue(plugin, c)).rc, undefined)
    }
    const c = connectionFor('alice@example.com')
    const over = await queue(plugin, c)
    assert.equal(over.rc, constants.deny)
    assert.match(
      replyText(over.msg),
      /^550 5\.7\.1 Account alice@example\.com reached its limit of 3 messages in 1 minute .*contact postmaster@example\.com/,
    )
    const disabledLog = c.hgLogs.filter(
      ([level, m]) => level === 'logwarn' && /ACCOUNT DISABLED "alice@example.com"/.test(m),
    )
    assert.equal(disabledLog.length, 1)
    assert.match(disabledLog[0]?.[1] ?? '', /ips 192\.0\.2\.7/)
    assert.match(disabledLog[0]?.[1] ?? '', /subjects "hello"/)

    const next = connectionFor('alice@example.com')
    const m = await mail(plugin, next)
    assert.equal(m.rc, constants.denydisconnect)
    assert.match(replyText(m.msg), /^550 5\.7\.1 Account alice@example\.com is disabled/)
    assert.deepEqual(fixtures.getResult(next, plugin).fail, ['disabled'])
  })

  it('keeps counting other accounts while one is disabled', async function () {
    const { plugin } = makeGuard('[limits]\nmessages=1/1m\n')
    assert.equal((await queue(plugin, connectionFor('a'))).rc, undefined)
    assert.equal((await queue(plugin, connectionFor('a'))).rc, constants.deny)
    assert.equal((await queue(plugin, connectionFor('b'))).rc, undefined)
    assert.equal((await mail(plugin, connectionFor('b'))).rc, undefined)
  })

  it('counts recipients: 3 messages of 10 recipients pass recipients = 30/1m, the 4th is refused', async function () {
    const { plugin } = makeGuard('[limits]\nmessages=0\nrecipients=30/1m\n')
    const rcpts = Array.from({ length: 10 }, (_, i) => `r${i}@example.net`)
    for (let i = 0; i < 3; i++) assert.equal((await queue(plugin, connectionFor('a', { rcpts }))).rc, undefined)
    const over = await queue(plugin, connectionFor('a', { rcpts }))
    assert.equal(over.rc, constants.deny)
    assert.match(replyText(over.msg), /limit of 30 recipients in 1 minute/)
  })

  it('does not count sessions that did not authenticate', async function () {
    const { plugin } = makeGuard('[limits]\nmessages=1/1m\n')
    for (let i = 0; i < 3; i++) assert.equal((await queue(plugin, connectionFor(undefined))).rc, undefined)
    assert.equal((await mail(plugin, connectionFor(undefined))).rc, undefined)
  })

  it('never counts an exempt account, and applies per-account overrides', async function () {
    const { plugin } = makeGuard(
      '[limits]\nmessages=1/1m\n[exempt]\naccounts=Relay@Example.com\n[account:news@example.com]\nmessages=3/1m\n',
    )
    for (let i = 0; i < 5; i++) {
      const c = connectionFor('relay@example.com')
      assert.equal((await queue(plugin, c)).rc, undefined)
      assert.deepEqual(fixtures.getResult(transactionOf(c), plugin).skip, ['exempt'])
    }
    for (let i = 0; i < 3; i++) assert.equal((await queue(plugin, connectionFor('news@example.com'))).rc, undefined)
    assert.equal((await queue(plugin, connectionFor('news@example.com'))).rc, constants.deny)
  })

  it('in monitor mode neither refuses nor disables, and logs the overrun once', async function () {
    const { plugin } = makeGuard('[main]\nmode=monitor\n[limits]\nmessages=2/1m\n')
    const logs: Array<[string, string]> = []
    for (let i = 0; i < 5; i++) {
      const c = connectionFor('a')
      assert.equal((await queue(plugin, c)).rc, undefined)
      assert.equal((await mail(plugin, c)).rc, undefined)
      logs.push(...c.hgLogs)
    }
    assert.equal(logs.filter(([, m]) => /monitor mode: account "a" went over messages 2\/1m/.test(m)).length, 1)
    assert.equal(await guardStore(plugin).getDisabled('a'), null)
  })
})

/** `value` as a string array (what haraka-results keeps under a key such as msg). */
function strings(value: unknown, what: string): string[] {
  assert.ok(Array.isArray(value), `${what}: ${JSON.stringify(value)}`)
  return value.map((v: unknown) => {
    assert.equal(typeof v, 'string', `${what}: ${JSON.stringify(value)}`)
    return String(v)
  })
}

describe('plugin: when the store fails', function () {
  it('on_store_error = open lets mail through and records the error; only the first failure of the outage is logged at ERROR', async function () {
    const { plugin } = makeGuard('[main]\non_store_error=open\n', { store: failingStore() })
    const c = connectionFor('a')
    assert.equal((await mail(plugin, c)).rc, undefined)
    assert.equal((await queue(plugin, c)).rc, undefined)
    const msgs = strings(fixtures.getResult(c, plugin).msg, 'the msg results')
    assert.equal(msgs.length, 2)
    assert.match(msgs[0] ?? '', /store unavailable at MAIL FROM.*connection refused/)
    assert.deepEqual(fixtures.getResult(c, plugin).err, [], 'no err result: haraka-results would log each at ERROR')
    const errors = c.hgLogs.filter(([level]) => level === 'logerror')
    assert.equal(errors.length, 1)
    assert.match(errors[0]?.[1] ?? '', /store unavailable at MAIL FROM \(on_store_error=open\): connection refused/)
  })

  it('on_store_error = closed answers 451 4.3.0 to authenticated senders only', async function () {
    const { plugin } = makeGuard('[main]\non_store_error=closed\n[alert]\nto=pm@example.com\n', {
      store: failingStore(),
    })
    const m = await mail(plugin, connectionFor('a'))
    assert.equal(m.rc, constants.denysoft)
    assert.match(replyText(m.msg), /^451 4\.3\.0 .*contact pm@example\.com/)
    const q = await queue(plugin, connectionFor('a'))
    assert.equal(q.rc, constants.denysoft)
    assert.match(replyText(q.msg), /^451 4\.3\.0/)
    assert.equal((await mail(plugin, connectionFor(undefined))).rc, undefined)
  })

  it('answers CONT and logs when a hook fails unexpectedly (no unhandled rejection)', async function () {
    const { plugin, logs } = makeGuard('[limits]\nmessages=3/1m\n')
    const c = connectionFor('a')
    // a transaction without a recipient list stands for an internal failure
    Reflect.set(transactionOf(c), 'rcpt_to', null)
    const q = await queue(plugin, c)
    assert.equal(q.rc, undefined)
    assert.equal(
      logs.filter(([level, m]) => level === 'logcrit' && /unexpected error, letting the message pass/.test(m)).length,
      1,
    )
  })
})

describe('plugin: AUTH of a disabled account', function () {
  type PasswdCheckMethod = 'check_plain_passwd' | 'check_cram_md5_passwd'
  type Check = (connection: unknown, user: string, passwd: string, cb: PasswdCallback) => void

  /** An auth plugin as the guard sees it in Haraka's registered plugins. */
  interface FakeAuth {
    name: string
    checks: number
    check_plain_passwd: Check
    check_cram_md5_passwd: Check
  }

  /** What an auth check answered. */
  interface CheckAnswer {
    valid: boolean
    opts: Parameters<PasswdCallback>[1]
  }

  function fakeAuthPlugin(passwords: Record<string, string>): FakeAuth {
    const auth: FakeAuth = {
      name: 'auth/flat_file',
      // Logins are case-insensitive here, as in most directories.
      checks: 0,
      check_plain_passwd(_connection, user, passwd, cb) {
        auth.checks++
        cb(passwords[user.toLowerCase()] === passwd)
      },
      check_cram_md5_passwd(_connection, user, passwd, cb) {
        auth.checks++
        cb(passwords[user.toLowerCase()] === passwd)
      },
    }
    return auth
  }

  function withAuth(ini: string, passwords: Record<string, string> = { alice: 'right', bob: 'right' }) {
    const guard = makeGuard(ini)
    const auth = fakeAuthPlugin(passwords)
    guard.plugin.haraka_require = (name: string) => {
      assert.equal(name, 'plugins')
      return { registered_plugins: { 'auth/flat_file': auth, 'hijack-guard': guard.plugin } }
    }
    return { ...guard, auth }
  }

  const init = (plugin: FixturePlugin): Promise<HookOutcome> => callHook(plugin, 'hook_init_master', {})
  const check = (
    auth: FakeAuth,
    user: string,
    pass: string,
    method: PasswdCheckMethod = 'check_plain_passwd',
  ): Promise<CheckAnswer> =>
    new Promise((resolve) =>
      auth[method](connectionFor(undefined), user, pass, (valid, opts) => resolve({ valid, opts })),
    )
  /** The 535 an AUTH refusal carries. */
  const refusal = (answer: CheckAnswer): { code: number; message: string } => {
    const { opts } = answer
    assert.ok(opts !== undefined && typeof opts === 'object', `a refusal with a code: ${JSON.stringify(answer)}`)
    return opts
  }
  /** The guard's store with getDisabled counted in lookups.count. */
  const countingLookups = (store: Store, lookups: { count: number }): Store => ({
    ...store,
    kind: store.kind,
    getDisabled: (a) => {
      lookups.count++
      return store.getDisabled(a)
    },
    record: (i) => store.record(i),
  })
  const disable = (plugin: GuardPlugin, account: string): Promise<boolean> =>
    guardStore(plugin).disable({ account, reason: 'test', by: 'test', incident: 'x' })

  it('answers 535 5.7.8 for the right password of a disabled account', async function () {
    const { plugin, auth } = withAuth('[limits]\nmessages=3/1m\n')
    await init(plugin)
    await disable(plugin, 'alice')
    for (const method of ['check_plain_passwd', 'check_cram_md5_passwd'] as const) {
      const r = await check(auth, 'Alice', 'right', method)
      assert.equal(r.valid, false)
      assert.equal(refusal(r).code, 535)
      assert.match(refusal(r).message, /^5\.7\.8 Account alice is disabled/)
    }
  })

  it('answers a disabled account the same whatever the password, without checking it, and checks other accounts as usual', async function () {
    const { plugin, auth } = withAuth('')
    await init(plugin)
    await disable(plugin, 'alice')
    const right = await check(auth, 'alice', 'right')
    const wrong = await check(auth, 'alice', 'wrong')
    assert.deepEqual(right, wrong)
    assert.equal(right.valid, false)
    assert.equal(refusal(right).code, 535)
    assert.match(refusal(right).message, /^5\.7\.8 Account alice is disabled by the postmaster; /)
    assert.equal(auth.checks, 0, 'the password of a disabled account is never checked')
    assert.deepEqual(await check(auth, 'bob', 'wrong'), { valid: false, opts: undefined })
    assert.deepEqual(await check(auth, 'bob', 'right'), { valid: true, opts: undefined })
    assert.equal(auth.checks, 2)
  })

  it("answers a failed login, and Haraka keeps running, when the auth plugin's check throws", async function () {
    const { plugin, auth } = withAuth('')
    auth.check_plain_passwd = function () {
      throw new Error('directory exploded')
    }
    await init(plugin)
    const rejections: unknown[] = []
    const onRejection = (reason: unknown): void => {
      rejections.push(reason)
    }
    process.on('unhandledRejection', onRejection)
    try {
      assert.deepEqual(await check(auth, 'alice', 'right'), { valid: false, opts: undefined })
      await new Promise((resolve) => setImmediate(resolve))
    } finally {
      process.off('unhandledRejection', onRejection)
    }
    assert.deepEqual(rejections, [])
  })

  it('gives up the AUTH lookup after store_timeout and checks the password as usual', async function () {
    const { plugin, auth } = withAuth('[main]\nstore_timeout=200ms\n')
    await init(plugin)
    const hanging: Store = {
      ...guardStore(plugin),
      kind: 'memory',
      getDisabled: () => new Promise<never>(() => undefined),
    }
    plugin.guard.store = hanging
    const t0 = Date.now()
    assert.deepEqual(await check(auth, 'alice', 'right'), { valid: true, opts: undefined })
    assert.deepEqual(await check(auth, 'alice', 'wrong'), { valid: false, opts: undefined })
    const ms = Date.now() - t0
    assert.ok(ms >= 400 && ms < 2000, `${ms} ms for two lookups of 200 ms`)
    assert.equal(auth.checks, 2)
  })

  it('wraps each auth plugin once however often init runs, and lets logins through when the store fails', async function () {
    const { plugin, auth } = withAuth('')
    const original = auth.check_plain_passwd
    await init(plugin)
    const wrapped = auth.check_plain_passwd
    assert.notEqual(wrapped, original)
    await init(plugin)
    assert.equal(auth.check_plain_passwd, wrapped)
    plugin.guard.store = failingStore()
    assert.deepEqual(await check(auth, 'alice', 'right'), { valid: true, opts: undefined })
  })

  it('looks the account up at AUTH and at every MAIL FROM, so a disable between them is refused at MAIL FROM', async function () {
    const { plugin, auth } = withAuth('[limits]\nmessages=3/1m\n')
    await init(plugin)
    const store = guardStore(plugin)
    const lookups = { count: 0 }
    plugin.guard.store = countingLookups(store, lookups)
    const c = connectionFor(undefined)
    const valid = await new Promise<boolean>((resolve) =>
      auth.check_plain_passwd(c, 'alice', 'right', (v) => resolve(v)),
    )
    assert.equal(valid, true)
    assert.equal(lookups.count, 1, 'AUTH looked the account up')
    c.notes.auth_user = 'alice'
    assert.equal((await mail(plugin, c)).rc, undefined)
    assert.equal(lookups.count, 2, 'MAIL FROM looked it up too (the Redis store answers it from its cache)')
    // disabled right after the AUTH (another server, the CLI): the next MAIL FROM refuses
    await store.disable({ account: 'alice', reason: 'test', by: 'test', incident: 'x' })
    const m = await mail(plugin, c)
    assert.equal(lookups.count, 3)
    assert.equal(m.rc, constants.denydisconnect)
    assert.match(replyText(m.msg), /^550 5\.7\.1 /)
  })

  it('does not refuse AUTH in monitor mode', async function () {
    const { plugin, auth } = withAuth('[main]\nmode=monitor\n')
    await init(plugin)
    await disable(plugin, 'alice')
    assert.equal((await check(auth, 'alice', 'right')).valid, true)
  })
})
