'use strict'

// The compiled plugin as Haraka loads it (through haraka-test-fixtures), with the memory store
// or a failing store at the store seam. Asserts what Haraka would answer.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const fixtures = require('haraka-test-fixtures')
const constants = require('haraka-constants')

const { StoreError } = require('../../dist/lib/store')

const { makeGuard, call, reply } = require('./helpers')

function connectionFor(login, { rcpts = ['bob@example.net'], subject = 'hello', ip = '192.0.2.7' } = {}) {
  const connection = fixtures.makeConnection({
    ip,
    helo: 'client.example',
    relaying: true,
    notes: login === undefined ? {} : { auth_user: login },
    mailFrom: 'alice@example.com',
    rcptTo: rcpts,
  })
  const logs = []
  for (const level of ['loginfo', 'lognotice', 'logwarn', 'logerror', 'logcrit', 'logdebug']) {
    connection[level] = (plugin, msg) => logs.push([level, String(msg)])
  }
  connection.transaction.add_header('Subject', subject)
  connection.hgLogs = logs
  return connection
}

const mail = (plugin, c) => call(plugin, 'hook_mail', c, [c.transaction.mail_from, {}])
const queue = (plugin, c) => call(plugin, 'count_message', c)

function failingStore(message = 'connection refused') {
  const fail = () => Promise.reject(new StoreError(message))
  return {
    kind: 'redis',
    record: fail,
    getDisabled: fail,
    disable: fail,
    enable: fail,
    reset: fail,
    counts: fail,
    evidence: fail,
    listDisabled: fail,
    close: async () => {},
  }
}

describe('plugin: registration and config', function () {
  it('registers its rcpt, queue, queue_outbound and get_mx hooks ahead of other plugins (priority -100)', function () {
    const registered = []
    const { plugin } = makeGuard('[limits]\nmessages=3/1m\n', { onRegisterHook: (...args) => registered.push(args) })
    assert.deepEqual(registered, [
      ['rcpt', 'check_rcpt', -100],
      ['queue', 'consume_reply', -100],
      ['queue_outbound', 'count_message', -100],
      ['get_mx', 'refuse_dropped', -100],
    ])
    assert.equal(typeof plugin.hook_mail, 'function')
    assert.equal(typeof plugin.hook_init_master, 'function')
    assert.equal(typeof plugin.hook_init_child, 'function')
  })

  it('refuses to start on a bad value, naming the file, key and value', function () {
    assert.throws(() => makeGuard('[limits]\nmessages=abc\n'), (err) => {
      assert.match(err.message, /hijack-guard\.ini/)
      assert.match(err.message, /limits\.messages/)
      assert.match(err.message, /"abc"/)
      return true
    })
    assert.throws(() => makeGuard('[main]\nmode=panic\n'), /main\.mode = "panic"/)
  })

  it('refuses the memory store when Haraka runs several workers', function () {
    assert.throws(() => makeGuard('[main]\nstore=memory\n', { smtpIni: '[main]\nnodes=4\n' }), /nodes = 4.*use store = redis/)
    assert.doesNotThrow(() => makeGuard('[main]\nstore=memory\n', { smtpIni: '[main]\nnodes=0\n' }))
  })

  it('takes the shipped defaults: 500 messages and 2500 recipients per 30 minutes, enforce, redis, open', function () {
    const { plugin } = makeGuard('')
    const c = plugin.guard.config
    assert.deepEqual(
      c.rules.map((r) => `${r.kind} ${r.text}`),
      ['messages 500/30m', 'recipients 2500/30m'],
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
    await waitUntil(() => logs.some(([, m]) => /keeping the previous configuration/.test(m)), 20000)
    assert.equal(plugin.guard.config.rules[0].max, 3)
    fs.writeFileSync(file, '[limits]\nmessages=7/1m\n')
    await waitUntil(() => plugin.guard.config.rules[0].max === 7, 20000)
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
    assert.match(reply(over.msg), /^550 5\.7\.1 Account alice@example\.com reached its limit of 3 messages in 1 minute .*contact postmaster@example\.com/)
    const disabledLog = c.hgLogs.filter(([level, m]) => level === 'logwarn' && /ACCOUNT DISABLED "alice@example.com"/.test(m))
    assert.equal(disabledLog.length, 1)
    assert.match(disabledLog[0][1], /ips 192\.0\.2\.7/)
    assert.match(disabledLog[0][1], /subjects "hello"/)

    const next = connectionFor('alice@example.com')
    const m = await mail(plugin, next)
    assert.equal(m.rc, constants.denydisconnect)
    assert.match(reply(m.msg), /^550 5\.7\.1 Account alice@example\.com is disabled/)
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
    assert.match(reply(over.msg), /limit of 30 recipients in 1 minute/)
  })

  it('does not count sessions that did not authenticate', async function () {
    const { plugin } = makeGuard('[limits]\nmessages=1/1m\n')
    for (let i = 0; i < 3; i++) assert.equal((await queue(plugin, connectionFor(undefined))).rc, undefined)
    assert.equal((await mail(plugin, connectionFor(undefined))).rc, undefined)
  })

  it('never counts an exempt account, and applies per-account overrides', async function () {
    const { plugin } = makeGuard('[limits]\nmessages=1/1m\n[exempt]\naccounts=Relay@Example.com\n[account:news@example.com]\nmessages=3/1m\n')
    for (let i = 0; i < 5; i++) {
      const c = connectionFor('relay@example.com')
      assert.equal((await queue(plugin, c)).rc, undefined)
      assert.deepEqual(fixtures.getResult(c.transaction, plugin).skip, ['exempt'])
    }
    for (let i = 0; i < 3; i++) assert.equal((await queue(plugin, connectionFor('news@example.com'))).rc, undefined)
    assert.equal((await queue(plugin, connectionFor('news@example.com'))).rc, constants.deny)
  })

  it('in monitor mode neither refuses nor disables, and logs the overrun once', async function () {
    const { plugin } = makeGuard('[main]\nmode=monitor\n[limits]\nmessages=2/1m\n')
    const logs = []
    for (let i = 0; i < 5; i++) {
      const c = connectionFor('a')
      assert.equal((await queue(plugin, c)).rc, undefined)
      assert.equal((await mail(plugin, c)).rc, undefined)
      logs.push(...c.hgLogs)
    }
    assert.equal(logs.filter(([, m]) => /monitor mode: account "a" went over messages 2\/1m/.test(m)).length, 1)
    assert.equal(await plugin.guard.store.getDisabled('a'), null)
  })
})

describe('plugin: when the store fails', function () {
  it('on_store_error = open lets mail through and records the error; only the first failure of the outage is logged at ERROR', async function () {
    const { plugin } = makeGuard('[main]\non_store_error=open\n', { store: failingStore() })
    const c = connectionFor('a')
    assert.equal((await mail(plugin, c)).rc, undefined)
    assert.equal((await queue(plugin, c)).rc, undefined)
    const msgs = fixtures.getResult(c, plugin).msg
    assert.equal(msgs.length, 2)
    assert.match(msgs[0], /store unavailable at MAIL FROM.*connection refused/)
    assert.deepEqual(fixtures.getResult(c, plugin).err, [], 'no err result: haraka-results would log each at ERROR')
    const errors = c.hgLogs.filter(([level]) => level === 'logerror')
    assert.equal(errors.length, 1)
    assert.match(errors[0][1], /store unavailable at MAIL FROM \(on_store_error=open\): connection refused/)
  })

  it('on_store_error = closed answers 451 4.3.0 to authenticated senders only', async function () {
    const { plugin } = makeGuard('[main]\non_store_error=closed\n[alert]\nto=pm@example.com\n', { store: failingStore() })
    const m = await mail(plugin, connectionFor('a'))
    assert.equal(m.rc, constants.denysoft)
    assert.match(reply(m.msg), /^451 4\.3\.0 .*contact pm@example\.com/)
    const q = await queue(plugin, connectionFor('a'))
    assert.equal(q.rc, constants.denysoft)
    assert.match(reply(q.msg), /^451 4\.3\.0/)
    assert.equal((await mail(plugin, connectionFor(undefined))).rc, undefined)
  })

  it('answers CONT and logs when a hook fails unexpectedly (no unhandled rejection)', async function () {
    const { plugin, logs } = makeGuard('[limits]\nmessages=3/1m\n')
    const c = connectionFor('a')
    c.transaction.rcpt_to = null
    const q = await queue(plugin, c)
    assert.equal(q.rc, undefined)
    assert.equal(logs.filter(([level, m]) => level === 'logcrit' && /unexpected error, letting the message pass/.test(m)).length, 1)
  })
})

describe('plugin: AUTH of a disabled account', function () {
  function fakeAuthPlugin(passwords) {
    return {
      name: 'auth/flat_file',
      // Logins are case-insensitive here, as in most directories.
      checks: 0,
      check_plain_passwd(connection, user, passwd, cb) {
        this.checks++
        cb(passwords[user.toLowerCase()] === passwd)
      },
      check_cram_md5_passwd(connection, user, passwd, cb) {
        this.checks++
        cb(passwords[user.toLowerCase()] === passwd)
      },
    }
  }

  function withAuth(ini, passwords = { alice: 'right', bob: 'right' }) {
    const guard = makeGuard(ini)
    const auth = fakeAuthPlugin(passwords)
    guard.plugin.haraka_require = (name) => {
      assert.equal(name, 'plugins')
      return { registered_plugins: { 'auth/flat_file': auth, 'hijack-guard': guard.plugin } }
    }
    return { ...guard, auth }
  }

  const init = (plugin) => new Promise((resolve) => plugin.hook_init_master(resolve, {}))
  const check = (auth, user, pass, method = 'check_plain_passwd') =>
    new Promise((resolve) => auth[method](connectionFor(undefined), user, pass, (valid, opts) => resolve({ valid, opts })))

  it('answers 535 5.7.8 for the right password of a disabled account', async function () {
    const { plugin, auth } = withAuth('[limits]\nmessages=3/1m\n')
    await init(plugin)
    await plugin.guard.store.disable({ account: 'alice', reason: 'test', by: 'test', incident: 'x' })
    for (const method of ['check_plain_passwd', 'check_cram_md5_passwd']) {
      const r = await check(auth, 'Alice', 'right', method)
      assert.equal(r.valid, false)
      assert.equal(r.opts.code, 535)
      assert.match(r.opts.message, /^5\.7\.8 Account alice is disabled/)
    }
  })

  it('answers a disabled account the same whatever the password, without checking it, and checks other accounts as usual', async function () {
    const { plugin, auth } = withAuth('')
    await init(plugin)
    await plugin.guard.store.disable({ account: 'alice', reason: 'test', by: 'test', incident: 'x' })
    const right = await check(auth, 'alice', 'right')
    const wrong = await check(auth, 'alice', 'wrong')
    assert.deepEqual(right, wrong)
    assert.equal(right.valid, false)
    assert.equal(right.opts.code, 535)
    assert.match(right.opts.message, /^5\.7\.8 Account alice is disabled by the postmaster; /)
    assert.equal(auth.checks, 0, 'the password of a disabled account is never checked')
    assert.deepEqual(await check(auth, 'bob', 'wrong'), { valid: false, opts: undefined })
    assert.deepEqual(await check(auth, 'bob', 'right'), { valid: true, opts: undefined })
    assert.equal(auth.checks, 2)
  })

  it('answers a failed login, and Haraka keeps running, when the auth plugin\'s check throws', async function () {
    const { plugin, auth } = withAuth('')
    auth.check_plain_passwd = function () {
      throw new Error('directory exploded')
    }
    await init(plugin)
    const rejections = []
    const onRejection = (reason) => rejections.push(reason)
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
    const hanging = { ...plugin.guard.store, kind: 'memory', getDisabled: () => new Promise(() => {}) }
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

  it('lets the AUTH lookup stand in for the first MAIL FROM (one store round trip per message), and still catches a disable at queue time', async function () {
    const { plugin, auth } = withAuth('[limits]\nmessages=3/1m\n')
    await init(plugin)
    const store = plugin.guard.store
    let lookups = 0
    plugin.guard.store = { ...store, kind: store.kind, getDisabled: (a) => { lookups++; return store.getDisabled(a) }, record: (i) => store.record(i) }
    const c = connectionFor(undefined)
    const valid = await new Promise((resolve) => auth.check_plain_passwd(c, 'alice', 'right', (v) => resolve(v)))
    assert.equal(valid, true)
    assert.equal(lookups, 1, 'AUTH looked the account up')
    c.notes.auth_user = 'alice'
    assert.equal((await mail(plugin, c)).rc, undefined)
    assert.equal(lookups, 1, 'the first MAIL FROM right after AUTH did not look it up again')
    // disabled between AUTH and the end of DATA: the counting script refuses the message
    await store.disable({ account: 'alice', reason: 'test', by: 'test', incident: 'x' })
    const q = await queue(plugin, c)
    assert.equal(q.rc, constants.deny)
    assert.match(reply(q.msg), /^550 5\.7\.1 Account alice is disabled/)
    // the next transaction's MAIL FROM looks it up and closes the session
    const m = await mail(plugin, c)
    assert.equal(lookups, 2)
    assert.equal(m.rc, constants.denydisconnect)
  })

  it('looks the account up at MAIL FROM after all when this process disabled an account since the AUTH', async function () {
    const { plugin, auth } = withAuth('[limits]\nmessages=1/1m\n', { alice: 'right', bob: 'right', carol: 'right' })
    await init(plugin)
    const store = plugin.guard.store
    let lookups = 0
    plugin.guard.store = { ...store, kind: store.kind, getDisabled: (a) => { lookups++; return store.getDisabled(a) }, record: (i) => store.record(i) }
    const c = connectionFor(undefined)
    assert.equal(await new Promise((resolve) => auth.check_plain_passwd(c, 'alice', 'right', (v) => resolve(v))), true)
    // meanwhile another session of this process trips carol
    assert.equal((await queue(plugin, connectionFor('carol'))).rc, undefined)
    assert.equal((await queue(plugin, connectionFor('carol'))).rc, constants.deny)
    const before = lookups
    c.notes.auth_user = 'alice'
    assert.equal((await mail(plugin, c)).rc, undefined)
    assert.equal(lookups, before + 1, 'MAIL FROM looked alice up again')
  })

  it('does not refuse AUTH in monitor mode', async function () {
    const { plugin, auth } = withAuth('[main]\nmode=monitor\n')
    await init(plugin)
    await plugin.guard.store.disable({ account: 'alice', reason: 'test', by: 'test', incident: 'x' })
    assert.equal((await check(auth, 'alice', 'right')).valid, true)
  })
})

async function waitUntil(fn, timeoutMs, intervalMs = 100) {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await fn()) return
    await new Promise((r) => setTimeout(r, intervalMs))
  }
  throw new Error(`condition not met within ${timeoutMs} ms`)
}
