'use strict'

// The operator's command line (lib/cli/index.ts, bin/hijack-guard.ts) as an operator runs it: a real
// process, `node dist/bin/hijack-guard.js -c HARAKA_DIR ...`, against a real redis-server on a
// free loopback port (and, in the last block, the memory store's state file). The Haraka
// directory of each block holds only config/hijack-guard.ini and config/me. The state the
// commands act on is arranged through the store API the plugin itself uses.

const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { createClient } = require('redis')

const { createRedisStore } = require('../../dist/lib/store/redis')
const { createMemoryStore } = require('../../dist/lib/store/memory')
const { parseConfig, rulesForAccount } = require('../../dist/lib/config')
const { startRedis, freePort, waitFor, HOST } = require('../store/redis-server')

const BIN = path.resolve(__dirname, '..', '..', 'dist', 'bin', 'hijack-guard.js')
const ME = 'mx.test.example'
const ACTOR = `cli:${os.userInfo().username}`
const COMMANDS = ['list', 'show', 'enable', 'disable', 'reset', 'audit', 'drop-held']
const LIST_KEYS = ['account', 'disabledAt', 'by', 'reason', 'limit', 'counts', 'incident', 'held']
const SHOW_KEYS = ['account', 'state', 'disabled', 'counts', 'held', 'evidence', 'audit']
const COUNT_KEYS = ['kind', 'max', 'windowMs', 'text', 'count']
const ENTRY_KEYS = ['at', 'account', 'action', 'actor', 'how']

// Every hijack-guard run of this file: killed by its pid when a test is over, whatever happened.
const running = new Set()

// Runs the CLI; never rejects. -> { code, signal, stdout, stderr, ms }
function cli (dir, args, { timeoutMs = 20000, cwd = os.tmpdir() } = {}) {
  const env = { ...process.env }
  delete env.HARAKA
  return new Promise((resolve) => {
    const t0 = Date.now()
    const child = childProcess.execFile(process.execPath, [BIN, ...(dir === null ? [] : ['-c', dir]), ...args], { cwd, env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      running.delete(child)
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0
      resolve({ code, signal: err ? err.signal : null, stdout, stderr, ms: Date.now() - t0 })
    })
    running.add(child)
  })
}

const show = (r) => `exit ${r.code}${r.signal ? ` (${r.signal})` : ''} after ${r.ms} ms\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`

function assertExit (r, code, what) {
  assert.equal(r.code, code, `${what}: ${show(r)}`)
}

function json (r, what) {
  try {
    return JSON.parse(r.stdout)
  } catch (err) {
    assert.fail(`${what}: stdout is not JSON (${err.message}): ${show(r)}`)
  }
}

function assertKeys (obj, keys, what) {
  assert.ok(obj && typeof obj === 'object' && !Array.isArray(obj), `${what}: ${JSON.stringify(obj)}`)
  for (const k of keys) assert.ok(Object.hasOwn(obj, k), `${what}: no key ${k} in ${JSON.stringify(obj)}`)
}

function assertCounts (counts, what) {
  assert.ok(Array.isArray(counts), `${what}: counts ${JSON.stringify(counts)}`)
  for (const c of counts) {
    assertKeys(c, COUNT_KEYS, `${what}: a count`)
    assert.ok(['messages', 'recipients'].includes(c.kind), `${what}: kind ${c.kind}`)
    for (const k of ['max', 'windowMs', 'count']) assert.equal(typeof c[k], 'number', `${what}: ${k}`)
  }
}

function assertEntry (e, what) {
  assertKeys(e, ENTRY_KEYS, what)
  assert.equal(typeof e.at, 'number', `${what}: at`)
  assert.ok(['disable', 'enable', 'reset', 'reactivate-failed', 'drop-held'].includes(e.action), `${what}: action ${e.action}`)
}

function writeHarakaDir (ini) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hijack-guard-cli-'))
  fs.mkdirSync(path.join(dir, 'config'))
  fs.writeFileSync(path.join(dir, 'config', 'hijack-guard.ini'), ini)
  fs.writeFileSync(path.join(dir, 'config', 'me'), `${ME}\n`)
  // the CLI acts only on a Haraka directory whose config/plugins enables hijack-guard
  fs.writeFileSync(path.join(dir, 'config', 'plugins'), 'auth/flat_file\nhijack-guard\n')
  return dir
}

const quiet = { info () {}, warn () {}, error () {} }

function summary (n) {
  return { ip: `192.0.2.${n}`, helo: `bot${n}.spam.example`, domains: [`victim${n}.example`], subject: `cheap pills ${n}` }
}

function recordInput (config, account, n) {
  return {
    account,
    recipients: 2,
    rules: rulesForAccount(config, account),
    mode: config.mode,
    summary: summary(n),
    token: crypto.randomBytes(16).toString('hex'),
    tokenTtlMs: config.reactivate.tokenTtlMs,
  }
}

// Counts `max` messages, then the one over the limit, as the plugin's queue_outbound hook does,
// and writes the audit entry the plugin writes for an automatic disable.
async function trip (store, config, account, max = 3) {
  for (let i = 1; i <= max; i++) {
    const r = await store.record(recordInput(config, account, i))
    assert.equal(r.status, 'ok', `message ${i} of ${account}: ${JSON.stringify(r)}`)
  }
  const input = recordInput(config, account, max + 1)
  const r = await store.record(input)
  assert.equal(r.status, 'refused', JSON.stringify(r))
  assert.equal(r.flipped, true)
  await store.audit({ at: r.record.at, account, action: 'disable', actor: 'limit', how: 'limit', reason: `reached ${max} messages` })
  return { record: r.record, token: input.token }
}

afterEach(function () {
  for (const child of running) {
    try { process.kill(child.pid, 'SIGKILL') } catch { /* gone */ }
  }
  running.clear()
})

describe('cli: hijack-guard as a process, store = redis', function () {
  this.timeout(30000)

  let redis
  let dir
  let config
  let store
  let admin

  const rawIni = (port) => ({
    main: { store: 'redis' },
    redis: { port: String(port) },
    limits: { messages: '3/1m', recipients: '10/1h' },
    alert: { to: 'postmaster@test.example' },
  })

  before(async function () {
    redis = await startRedis()
    dir = writeHarakaDir([
      '[main]',
      'store = redis',
      '[redis]',
      `port = ${redis.port}`,
      '[limits]',
      'messages = 3/1m',
      'recipients = 10/1h',
      '[alert]',
      'to = postmaster@test.example',
      '',
    ].join('\n'))
    config = parseConfig(rawIni(redis.port), ME)
    store = createRedisStore({ redis: config.redis, timeoutMs: 1000, log: quiet })
    await store.ready(5000)
    admin = createClient({ socket: { host: HOST, port: redis.port, reconnectStrategy: false } })
    admin.on('error', () => {})
    await admin.connect()
  })

  after(async function () {
    if (store) await store.close()
    if (admin) await admin.close().catch(() => admin.destroy())
    if (redis) await redis.stop()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  beforeEach(async function () {
    await admin.flushAll()
  })

  const keysOf = async (account) => (await admin.keys(`hijack-guard:{${account}}:*`)).map((k) => k.slice(`hijack-guard:{${account}}:`.length)).sort()

  // -------------------------------------------------------------------------------------------
  // help and usage

  it('--help (and -h, help) exits 0 and lists every command, every option and the exit codes; needs no Haraka directory', async function () {
    for (const args of [['--help'], ['-h'], ['help']]) {
      const r = await cli(null, args)
      assertExit(r, 0, args.join(' '))
      assert.equal(r.stderr, '', args.join(' '))
      for (const c of COMMANDS) assert.match(r.stdout, new RegExp(`^ {2}${c}( |$)`, 'm'), `${args}: command ${c} is listed`)
      for (const o of ['-c, --config DIR', '--json', '--reason', '--limit']) assert.ok(r.stdout.includes(o), `${args}: option ${o}`)
      assert.match(r.stdout, /0 done; 1 nothing to do.*\n2 usage error; 3 bad config; 4 store unreachable/)
    }
  })

  it('usage errors exit 2 with a hint on stderr and change nothing: no command, an unknown command or option, a missing or extra ACCOUNT, a bad --limit', async function () {
    const { record } = await trip(store, config, 'usage@test.example')
    const cases = [
      { args: [], stderr: /no command given/ },
      { args: ['frobnicate'], stderr: /unknown command "frobnicate"/ },
      { args: ['--bogus', 'list'], stderr: /--bogus/ },
      { args: ['list', 'extra'], stderr: /list takes no arguments/ },
      ...['show', 'enable', 'disable', 'reset', 'drop-held'].flatMap((c) => [
        { args: [c], stderr: new RegExp(`${c} takes exactly one ACCOUNT`) },
        { args: [c, 'usage@test.example', 'other@test.example'], stderr: new RegExp(`${c} takes exactly one ACCOUNT`) },
      ]),
      { args: ['audit', 'a@test.example', 'b@test.example'], stderr: /audit takes at most one ACCOUNT/ },
      ...['abc', '0', '-1', '1.5', ''].map((v) => ({ args: ['audit', `--limit=${v}`], stderr: /--limit must be a whole number/ })),
    ]
    const results = await Promise.all(cases.map((c) => cli(dir, c.args)))
    for (const [i, r] of results.entries()) {
      const what = `hijack-guard ${cases[i].args.join(' ')}`
      assertExit(r, 2, what)
      assert.match(r.stderr, cases[i].stderr, what)
      assert.match(r.stderr, /hijack-guard --help|Usage: hijack-guard -c HARAKA_DIR/, `${what}: points at --help or shows the usage`)
    }
    // nothing happened to the account or the audit trail
    assert.deepEqual(await store.getDisabled('usage@test.example'), record)
    assert.equal((await store.auditLog()).length, 1)
    assert.equal((await store.counts('usage@test.example', rulesForAccount(config, 'usage@test.example')))[0].count, 3)
  })

  // -------------------------------------------------------------------------------------------
  // list

  it('list: "0 disabled accounts" and [] with --json when nothing is disabled', async function () {
    const [text, js] = await Promise.all([cli(dir, ['list']), cli(dir, ['--json', 'list'])])
    assertExit(text, 0, 'list')
    assert.equal(text.stdout.trim(), `store: redis ${HOST}:${redis.port}/0\n0 disabled accounts`)
    assertExit(js, 0, '--json list')
    assert.deepEqual(json(js, '--json list'), [])
  })

  it('list: each disabled account with when, by whom, why, the counts and held mail; --json gives {account, disabledAt, by, reason, limit, counts, incident, held}, newest first', async function () {
    const { record } = await trip(store, config, 'tripped@test.example')
    await store.hold('tripped@test.example', 'q1.1', 60000)
    await store.hold('tripped@test.example', 'q2.1', 60000)
    await waitFor(() => Date.now() > record.at + 2, 2000, 'the clock moves on')
    assert.equal(await store.disable({ account: 'manual@test.example', reason: 'phished, ticket 4711', by: 'cli:someone', incident: 'manual-1' }), true)

    const r = await cli(dir, ['list'])
    assertExit(r, 0, 'list')
    const out = r.stdout
    assert.match(out, /^2 disabled accounts$/m)
    assert.match(out, /^tripped@test\.example$/m)
    assert.match(out, /^ {2}disabled \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by limit: reached 3 messages in 1 minute$/m)
    assert.match(out, /^ {2}counts messages 3\/3 in 1 minute, recipients 6\/10 in 1 hour$/m)
    assert.match(out, new RegExp(`^ {2}held mail 2; incident ${record.incident}$`, 'm'))
    assert.match(out, /^manual@test\.example$/m)
    assert.match(out, /^ {2}disabled .* UTC by cli:someone: phished, ticket 4711$/m)
    assert.match(out, /^ {2}held mail 0; incident manual-1$/m)
    assert.ok(out.indexOf('manual@test.example') < out.indexOf('tripped@test.example'), `newest first:\n${out}`)

    const js = await cli(dir, ['--json', 'list'])
    assertExit(js, 0, '--json list')
    const rows = json(js, '--json list')
    assert.equal(rows.length, 2)
    for (const row of rows) {
      assertKeys(row, LIST_KEYS, 'a list row')
      for (const k of Object.keys(row)) assert.ok([...LIST_KEYS, 'replyExpiresAt'].includes(k), `unexpected key ${k}`)
      assert.equal(new Date(row.disabledAt).toISOString(), row.disabledAt)
      assertCounts(row.counts, row.account)
    }
    const [manual, tripped] = rows
    assert.deepEqual(manual, {
      account: 'manual@test.example',
      disabledAt: manual.disabledAt,
      by: 'cli:someone',
      reason: 'phished, ticket 4711',
      limit: null,
      counts: [],
      incident: 'manual-1',
      held: 0,
    })
    assert.equal(tripped.account, 'tripped@test.example')
    assert.equal(tripped.disabledAt, new Date(record.at).toISOString())
    assert.equal(tripped.by, 'limit')
    assert.equal(tripped.reason, 'reached 3 messages in 1 minute')
    assert.equal(tripped.limit, 'messages 3/1m')
    assert.deepEqual(tripped.counts.map((c) => [c.kind, c.text, c.count, c.max]), [['messages', '3/1m', 3, 3], ['recipients', '10/1h', 6, 10]])
    assert.equal(tripped.incident, record.incident)
    assert.equal(tripped.held, 2)
    assert.ok(Date.parse(tripped.replyExpiresAt) > Date.now() + 6 * 86_400_000, `the reply is good for 7 days: ${tripped.replyExpiresAt}`)
    assert.ok(Date.parse(manual.disabledAt) >= Date.parse(tripped.disabledAt))
  })

  // -------------------------------------------------------------------------------------------
  // show

  it('show: a disabled account\'s state, reason, incident, live counts, the counts at the incident, the evidence, held mail and recent audit; --json gives {account, state, disabled, counts, held, evidence, audit}', async function () {
    const { record } = await trip(store, config, 'shown@test.example')
    await store.hold('shown@test.example', 'q9.1', 60000)

    const r = await cli(dir, ['show', 'shown@test.example'])
    assertExit(r, 0, 'show')
    const out = r.stdout
    assert.match(out, /^Account +shown@test\.example$/m)
    assert.match(out, /^State +disabled since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by limit: reached 3 messages in 1 minute$/m)
    assert.match(out, new RegExp(`^Incident +${record.incident} \\(reply to the alert until \\d{4}-.* UTC\\)$`, 'm'))
    assert.match(out, /^Held mail 1 message$/m)
    assert.match(out, /^Limits \(live counts\):\n {2}messages 3\/3 in 1 minute\n {2}recipients 6\/10 in 1 hour$/m)
    assert.match(out, /^At the incident:\n {2}messages 3\/3 in 1 minute\n {2}recipients 6\/10 in 1 hour$/m)
    assert.match(out, /^Evidence from its last 4 messages:$/m)
    for (const n of [1, 2, 3, 4]) {
      for (const bit of [`192.0.2.${n}`, `bot${n}.spam.example`, `victim${n}.example`, `"cheap pills ${n}"`]) assert.ok(out.includes(bit), `evidence ${bit} in:\n${out}`)
    }
    assert.match(out, /Source IPs:/)
    assert.match(out, /HELO names:/)
    assert.match(out, /Recipient domains:/)
    assert.match(out, /Subjects:/)
    assert.match(out, /^Recent audit:\n {2}\d{4}-.* UTC {2}disable +"shown@test\.example" by limit via limit: reached 3 messages$/m)

    const js = await cli(dir, ['--json', 'show', 'shown@test.example'])
    assertExit(js, 0, '--json show')
    const o = json(js, '--json show')
    assertKeys(o, SHOW_KEYS, 'show')
    assert.deepEqual(Object.keys(o).sort(), [...SHOW_KEYS, 'store'].sort())
    assert.equal(o.store, `redis ${HOST}:${redis.port}/0`)
    assert.equal(o.account, 'shown@test.example')
    assert.equal(o.state, 'disabled')
    assertKeys(o.disabled, LIST_KEYS, 'show.disabled')
    assert.equal(o.disabled.limit, 'messages 3/1m')
    assert.equal(o.disabled.incident, record.incident)
    assert.equal(o.disabled.held, 1)
    assertCounts(o.counts, 'show.counts')
    assert.deepEqual(o.counts.map((c) => [c.kind, c.count, c.max, c.windowMs]), [['messages', 3, 3, 60000], ['recipients', 6, 10, 3600000]])
    assert.equal(o.held, 1)
    assert.equal(o.evidence.length, 4)
    assert.deepEqual(o.evidence[0], summary(4), 'newest evidence first')
    assert.equal(o.audit.length, 1)
    assertEntry(o.audit[0], 'show.audit')
    assert.equal(o.audit[0].actor, 'limit')
  })

  it('show: an active account with counted mail exits 0 (state active, live counts); an account hijack-guard never saw exits 1 and says so', async function () {
    const acct = 'busy@test.example'
    assert.equal((await store.record(recordInput(config, acct, 7))).status, 'ok')
    const r = await cli(dir, ['--json', 'show', acct])
    assertExit(r, 0, 'show of an active account')
    const o = json(r, 'show')
    assert.equal(o.state, 'active')
    assert.equal(o.disabled, null)
    assert.deepEqual(o.counts.map((c) => c.count), [1, 2])
    assert.deepEqual(o.evidence, [summary(7)])

    const [unknown, unknownJson] = await Promise.all([cli(dir, ['show', 'nobody@test.example']), cli(dir, ['--json', 'show', 'nobody@test.example'])])
    assertExit(unknown, 1, 'show of an unknown account')
    assert.match(unknown.stdout, /^State +active$/m)
    assert.match(unknown.stdout, /hijack-guard has no record of nobody@test\.example/)
    assertExit(unknownJson, 1, '--json show of an unknown account')
    const u = json(unknownJson, '--json show of an unknown account')
    assert.equal(u.state, 'active')
    assert.equal(u.disabled, null)
    assert.deepEqual(u.audit, [])
  })

  // -------------------------------------------------------------------------------------------
  // enable

  it('enable ALICE@TEST.EXAMPLE enables alice@test.example: flag, counters and evidence cleared, audit entry by cli:<os user>; the account counts from zero again', async function () {
    const acct = 'alice@test.example'
    await trip(store, config, acct)
    const r = await cli(dir, ['enable', 'ALICE@Test.Example'])
    assertExit(r, 0, 'enable')
    assert.match(r.stdout, /^alice@test\.example enabled: flag and counters cleared\.$/m)
    assert.equal(await store.getDisabled(acct), null)
    assert.deepEqual((await store.counts(acct, rulesForAccount(config, acct))).map((c) => c.count), [0, 0])
    assert.deepEqual(await store.evidence(acct), [])
    const [entry] = await store.auditLog({ account: acct, limit: 1 })
    assert.deepEqual({ ...entry, at: 0 }, { at: 0, account: acct, action: 'enable', actor: ACTOR, how: 'cli' })
    assert.ok(Math.abs(entry.at - Date.now()) < 10000, `audit time ${entry.at}`)
    // counters really start over: three more messages are fine, the fourth is refused again
    for (let i = 1; i <= 3; i++) assert.equal((await store.record(recordInput(config, acct, i))).status, 'ok')
    assert.equal((await store.record(recordInput(config, acct, 4))).status, 'refused')
  })

  it('enable through the CLI leaves the store as a successful reply does (same keys left, token spent)', async function () {
    const byCli = 'by-cli@test.example'
    const byReply = 'by-reply@test.example'
    await trip(store, config, byCli)
    const { token } = await trip(store, config, byReply)
    assertExit(await cli(dir, ['enable', byCli]), 0, 'enable')
    assert.equal(await store.redeem(byReply, token), 'ok')
    assert.deepEqual(await keysOf(byCli), await keysOf(byReply), 'the keys each account has left')
    for (const a of [byCli, byReply]) {
      assert.equal(await store.getDisabled(a), null)
      assert.deepEqual((await store.counts(a, rulesForAccount(config, a))).map((c) => c.count), [0, 0])
    }
  })

  it('enable of an account that is not disabled exits 1 ("is not disabled") and writes no audit entry', async function () {
    const r = await cli(dir, ['enable', 'fine@test.example'])
    assertExit(r, 1, 'enable of an enabled account')
    assert.match(r.stdout, /fine@test\.example is not disabled/)
    assert.deepEqual(await store.auditLog(), [])
  })

  // -------------------------------------------------------------------------------------------
  // disable

  it('disable BOB@TEST.EXAMPLE --reason T disables bob@test.example by cli:<os user> with the reason; a second disable exits 1 and keeps the first record', async function () {
    const acct = 'bob@test.example'
    const r = await cli(dir, ['disable', 'BOB@test.example', '--reason', 'phished, ticket 4711'])
    assertExit(r, 0, 'disable')
    assert.match(r.stdout, /^bob@test\.example disabled: AUTH gets 535 5\.7\.8 and MAIL FROM 550 5\.7\.1 until it is enabled$/m)
    const rec = await store.getDisabled(acct)
    assert.ok(rec, 'disabled in the store')
    assert.equal(rec.by, ACTOR)
    assert.equal(rec.reason, 'phished, ticket 4711')
    assert.ok(rec.incident)
    const [entry] = await store.auditLog({ account: acct })
    assert.deepEqual({ ...entry, at: 0 }, { at: 0, account: acct, action: 'disable', actor: ACTOR, how: 'cli', reason: 'phished, ticket 4711' })
    // a disabled account's mail is refused by the store the plugin uses
    assert.equal((await store.record(recordInput(config, acct, 1))).status, 'disabled')

    const again = await cli(dir, ['disable', acct, '--reason', 'second thoughts'])
    assertExit(again, 1, 'disable of a disabled account')
    assert.match(again.stdout, /bob@test\.example is disabled already/)
    assert.deepEqual(await store.getDisabled(acct), rec)
    assert.equal((await store.auditLog({ account: acct })).length, 1)

    const noReason = await cli(dir, ['disable', 'carol@test.example'])
    assertExit(noReason, 0, 'disable without --reason')
    assert.equal((await store.getDisabled('carol@test.example')).reason, 'disabled by an operator')
  })

  // -------------------------------------------------------------------------------------------
  // reset

  it('reset clears the counters and the evidence, keeps the flag, and leaves an audit entry', async function () {
    const acct = 'reset@test.example'
    const { record } = await trip(store, config, acct)
    const r = await cli(dir, ['reset', 'Reset@Test.Example'])
    assertExit(r, 0, 'reset')
    assert.match(r.stdout, /^reset@test\.example: counters cleared \(it stays disabled\)$/m)
    assert.deepEqual(await store.getDisabled(acct), record, 'still disabled, the record untouched')
    assert.deepEqual((await store.counts(acct, rulesForAccount(config, acct))).map((c) => c.count), [0, 0])
    assert.deepEqual(await store.evidence(acct), [])
    const [entry] = await store.auditLog({ account: acct, limit: 1 })
    assert.deepEqual({ ...entry, at: 0 }, { at: 0, account: acct, action: 'reset', actor: ACTOR, how: 'cli' })
  })

  // -------------------------------------------------------------------------------------------
  // drop-held

  it('drop-held marks the account\'s queued mail for discarding (the mark outbound reads), says how many are held, and leaves an audit entry', async function () {
    const acct = 'held@test.example'
    await trip(store, config, acct)
    for (const id of ['a.1', 'b.1', 'c.1']) await store.hold(acct, id, 60000)
    assert.equal((await store.heldState(acct)).dropBefore, 0)
    const before = Date.now()
    const r = await cli(dir, ['drop-held', 'HELD@test.example'])
    assertExit(r, 0, 'drop-held')
    assert.match(r.stdout, /^held@test\.example: 3 held messages .*discarded at the next delivery attempt \(within 1 minute\), without bounces$/m)
    const state = await store.heldState(acct)
    assert.equal(state.disabled, true)
    assert.ok(state.dropBefore >= before - 2000 && state.dropBefore <= Date.now() + 2000, `drop-before ${state.dropBefore}`)
    const [entry] = await store.auditLog({ account: acct, limit: 1 })
    assert.deepEqual({ ...entry, at: 0 }, { at: 0, account: acct, action: 'drop-held', actor: ACTOR, how: 'cli', reason: '3 held' })
  })

  // -------------------------------------------------------------------------------------------
  // audit

  it('audit: the trail newest first, for all accounts or one (case-folded), --limit N; --json gives the entries', async function () {
    await trip(store, config, 'x@test.example')
    assertExit(await cli(dir, ['disable', 'y@test.example', '--reason', 'r1']), 0, 'disable y')
    assertExit(await cli(dir, ['reset', 'x@test.example']), 0, 'reset x')
    assertExit(await cli(dir, ['enable', 'x@test.example']), 0, 'enable x')
    assertExit(await cli(dir, ['enable', 'y@test.example']), 0, 'enable y')

    const all = await cli(dir, ['--json', 'audit'])
    assertExit(all, 0, '--json audit')
    const entries = json(all, '--json audit')
    for (const e of entries) assertEntry(e, 'an audit entry')
    assert.deepEqual(entries.map((e) => [e.action, e.account, e.actor, e.how]), [
      ['enable', 'y@test.example', ACTOR, 'cli'],
      ['enable', 'x@test.example', ACTOR, 'cli'],
      ['reset', 'x@test.example', ACTOR, 'cli'],
      ['disable', 'y@test.example', ACTOR, 'cli'],
      ['disable', 'x@test.example', 'limit', 'limit'],
    ])
    for (let i = 1; i < entries.length; i++) assert.ok(entries[i - 1].at >= entries[i].at, 'newest first')

    const one = json(await cli(dir, ['--json', 'audit', 'X@TEST.EXAMPLE']), 'audit X')
    assert.deepEqual(one.map((e) => e.action), ['enable', 'reset', 'disable'])
    assert.ok(one.every((e) => e.account === 'x@test.example'))
    const two = json(await cli(dir, ['--json', 'audit', '--limit', '2']), 'audit --limit 2')
    assert.deepEqual(two, entries.slice(0, 2))

    const text = await cli(dir, ['audit', '--limit=3'])
    assertExit(text, 0, 'audit')
    const [storeLine, ...lines] = text.stdout.trim().split('\n')
    assert.equal(storeLine, `store: redis ${HOST}:${redis.port}/0`)
    assert.equal(lines.length, 3, text.stdout)
    assert.match(lines[0], new RegExp(`^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC {2}enable +"y@test\\.example" by ${ACTOR} via cli$`))
    assert.match(lines[2], /^.* UTC {2}reset +"x@test\.example" by cli:.* via cli$/)
    const none = await cli(dir, ['audit', 'nobody@test.example'])
    assertExit(none, 0, 'audit of an account without entries')
    assert.equal(none.stdout.trim().split('\n').pop(), 'no audit entries')
    assert.deepEqual(json(await cli(dir, ['--json', 'audit', 'nobody@test.example']), 'empty audit'), [])
  })

  // -------------------------------------------------------------------------------------------
  // bad config, store down

  it('a bad config exits 3 and names the file, the key and the value on stderr; nothing is touched', async function () {
    const bad = [
      { ini: `[redis]\nport = ${redis.port}\n[limits]\nmessages = abc\n`, key: 'limits.messages', value: 'abc' },
      { ini: `[redis]\nport = ${redis.port}\n[limits]\nmessages = 10/0m\n`, key: 'limits.messages', value: '10/0m' },
      { ini: `[main]\nmode = panic\n[redis]\nport = ${redis.port}\n`, key: 'main.mode', value: 'panic' },
      { ini: '[redis]\nport = seventy\n', key: 'redis.port', value: 'seventy' },
    ]
    const dirs = bad.map((b) => writeHarakaDir(b.ini))
    try {
      const results = await Promise.all(dirs.map((d) => cli(d, ['disable', 'cfg@test.example'])))
      for (const [i, r] of results.entries()) {
        assertExit(r, 3, bad[i].ini)
        assert.equal(r.stdout, '')
        assert.ok(r.stderr.includes('hijack-guard.ini'), `names the file: ${r.stderr}`)
        assert.ok(r.stderr.includes(bad[i].key), `names the key ${bad[i].key}: ${r.stderr}`)
        assert.ok(r.stderr.includes(JSON.stringify(bad[i].value)), `names the value ${bad[i].value}: ${r.stderr}`)
        assert.ok(r.stderr.includes(dirs[i]), `names the Haraka directory: ${r.stderr}`)
      }
      assert.equal(await store.getDisabled('cfg@test.example'), null, 'nothing was disabled')
    } finally {
      for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
    }
  })

  it('a Redis port with nothing listening: every command exits 4 within a few seconds, stderr names the store', async function () {
    const port = await freePort()
    const down = writeHarakaDir(`[redis]\nport = ${port}\n`)
    try {
      const runs = [['list'], ['--json', 'list'], ['show', 'a@test.example'], ['enable', 'a@test.example'], ['disable', 'a@test.example'], ['reset', 'a@test.example'], ['audit'], ['drop-held', 'a@test.example']]
      const results = await Promise.all(runs.map((args) => cli(down, args)))
      for (const [i, r] of results.entries()) {
        const what = runs[i].join(' ')
        assertExit(r, 4, what)
        assert.ok(r.ms < 6000, `${what} took ${r.ms} ms`)
        assert.match(r.stderr, new RegExp(`the store \\(redis ${HOST.replace(/\./g, '\\.')}:${port}/0\\) cannot be used`), what)
        assert.equal(r.stdout, '', what)
      }
    } finally {
      fs.rmSync(down, { recursive: true, force: true })
    }
  })

  // bin/hijack-guard.ts writes the output with process.stdout.write() and then calls
  // process.exit() at once. When stdout is a pipe (a script, `| jq`, `| less`, execFile) the
  // write is asynchronous and exit drops whatever the pipe did not take yet: the output stops
  // at 64 KiB (or a multiple), in the middle of a JSON document. To a file it is complete.
  it('a long --json audit (1000 entries, ~300 KB) read slowly through a pipe is complete, parseable JSON', async function () {
    const reason = 'r'.repeat(200)
    const t0 = Date.now()
    for (let i = 0; i < 1000; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => store.audit({ at: t0 + i + j, account: `a${i + j}@test.example`, action: 'disable', actor: 'limit', how: 'limit', reason })))
    }
    // a reader that takes its time (like `| jq` on a busy machine): it starts reading a second
    // after the CLI started writing, so the pipe is full for a while
    const env = { ...process.env }
    delete env.HARAKA
    const cmd = `"${process.execPath}" "${BIN}" -c "${dir}" --json audit --limit 1000 | (sleep 1; cat); exit \${PIPESTATUS[0]}`
    const r = await new Promise((resolve) => {
      childProcess.execFile('bash', ['-c', cmd], { env, maxBuffer: 16 * 1024 * 1024, timeout: 20000 }, (err, stdout) => {
        resolve({ code: err ? err.code : 0, stdout })
      })
    })
    assert.equal(r.code, 0, '--json audit --limit 1000')
    let entries
    assert.doesNotThrow(() => { entries = JSON.parse(r.stdout) }, `stdout through the pipe is ${r.stdout.length} bytes: ${JSON.stringify(r.stdout.slice(0, 40))} ... ${JSON.stringify(r.stdout.slice(-40))}`)
    assert.equal(entries.length, 1000)
  })

  // The arguments are checked before the config is read or the store opened: a mistyped
  // command line is a usage error (exit 2) at once, also while Redis is down, so a script can
  // tell "fix your call" from "retry later" (exit 4).
  it('a usage error (missing ACCOUNT, bad --limit) exits 2 at once also while the store is unreachable', async function () {
    const port = await freePort()
    const down = writeHarakaDir(`[redis]\nport = ${port}\n`)
    try {
      const runs = [['enable'], ['show'], ['audit', '--limit', 'abc'], ['list', 'extra']]
      const results = await Promise.all(runs.map((args) => cli(down, args)))
      for (const [i, r] of results.entries()) {
        assertExit(r, 2, runs[i].join(' '))
        assert.ok(r.ms < 2000, `${runs[i].join(' ')} took ${r.ms} ms`)
      }
    } finally {
      fs.rmSync(down, { recursive: true, force: true })
    }
  })
})

describe('cli: store = memory (the state file in the Haraka directory)', function () {
  this.timeout(30000)

  let dir
  let config
  let stateFile

  const ini = ['[main]', 'store = memory', '[limits]', 'messages = 3/1m', 'recipients = 10/1h', '[alert]', 'to = postmaster@test.example', ''].join('\n')

  beforeEach(function () {
    dir = writeHarakaDir(ini)
    config = parseConfig({ main: { store: 'memory' }, limits: { messages: '3/1m', recipients: '10/1h' }, alert: { to: 'postmaster@test.example' } }, ME)
    stateFile = path.join(dir, 'hijack-guard.state.json')
  })

  afterEach(function () {
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const readState = () => JSON.parse(fs.readFileSync(stateFile, 'utf8'))

  it('list, show, enable, disable and audit work on DIR/hijack-guard.state.json, from any working directory; show says the live counts are in the Haraka process', async function () {
    const plugin = createMemoryStore({ stateFile }) // what the Haraka process holds
    const { record } = await trip(plugin, config, 'mem@test.example')
    const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'hijack-guard-cwd-'))
    try {
      const list = await cli(dir, ['--json', 'list'], { cwd: elsewhere })
      assertExit(list, 0, 'list')
      const rows = json(list, 'list')
      assert.deepEqual(rows.map((r) => [r.account, r.by, r.limit, r.incident]), [['mem@test.example', 'limit', 'messages 3/1m', record.incident]])

      const shown = await cli(dir, ['show', 'MEM@test.example'], { cwd: elsewhere })
      assertExit(shown, 0, 'show')
      assert.match(shown.stdout, /^State +disabled since .* by limit: reached 3 messages in 1 minute$/m)
      assert.match(shown.stdout, /^Limits \(live counts are kept inside the Haraka process with store = memory\):\n {2}messages 3\/1m\n {2}recipients 10\/1h$/m)
      assert.match(shown.stdout, /^At the incident:\n {2}messages 3\/3 in 1 minute/m)
      assert.match(shown.stdout, /Evidence from its last 4 messages:/)
      const shownJson = json(await cli(dir, ['--json', 'show', 'mem@test.example'], { cwd: elsewhere }), 'show --json')
      assert.equal(shownJson.counts, null, 'no live counts from the CLI with store = memory')
      assert.equal(shownJson.state, 'disabled')

      const enabled = await cli(dir, ['enable', 'Mem@Test.Example'], { cwd: elsewhere })
      assertExit(enabled, 0, 'enable')
      assert.equal(Object.hasOwn(readState().disabled, 'mem@test.example'), false, 'the state file no longer has the record')
      assert.equal(await plugin.getDisabled('mem@test.example'), null, 'the plugin\'s store sees the change')
      assert.equal((await plugin.record(recordInput(config, 'mem@test.example', 1))).counts[0].count, 1, 'and the counters start over')
      assertExit(await cli(dir, ['enable', 'mem@test.example'], { cwd: elsewhere }), 1, 'a second enable')

      const disabled = await cli(dir, ['disable', 'Other@Test.Example', '--reason', 'left the company'], { cwd: elsewhere })
      assertExit(disabled, 0, 'disable')
      const rec = readState().disabled['other@test.example']
      assert.ok(rec, `the state file has the record: ${fs.readFileSync(stateFile, 'utf8')}`)
      assert.equal(rec.by, ACTOR)
      assert.equal(rec.reason, 'left the company')
      assert.equal((await plugin.record(recordInput(config, 'other@test.example', 1))).status, 'disabled', 'the plugin\'s store refuses it')
      assertExit(await cli(dir, ['disable', 'other@test.example'], { cwd: elsewhere }), 1, 'a second disable')

      const audit = json(await cli(dir, ['--json', 'audit'], { cwd: elsewhere }), 'audit')
      assert.deepEqual(audit.map((e) => [e.action, e.account, e.actor, e.how]), [
        ['disable', 'other@test.example', ACTOR, 'cli'],
        ['enable', 'mem@test.example', ACTOR, 'cli'],
        ['disable', 'mem@test.example', 'limit', 'limit'],
      ])
      assert.deepEqual(readState().audit.map((e) => e.action), ['disable', 'enable', 'disable'])
      assert.equal(fs.existsSync(path.join(elsewhere, 'hijack-guard.state.json')), false, 'nothing written to the working directory')
    } finally {
      await plugin.close()
      fs.rmSync(elsewhere, { recursive: true, force: true })
    }
  })

  it('[main] state_file is taken relative to the Haraka directory', async function () {
    fs.writeFileSync(path.join(dir, 'config', 'hijack-guard.ini'), ini.replace('store = memory', 'store = memory\nstate_file = var/hg.json'))
    const r = await cli(dir, ['disable', 'rel@test.example'])
    assertExit(r, 0, 'disable')
    const file = path.join(dir, 'var', 'hg.json')
    assert.ok(fs.existsSync(file), `${file} exists`)
    assert.ok(JSON.parse(fs.readFileSync(file, 'utf8')).disabled['rel@test.example'])
    assert.equal(fs.existsSync(stateFile), false)
  })

  // The memory store's read-change-write of the state file holds <state file>.lock, so the
  // Haraka process (here: a process resetting an account's counters, one write each) and the
  // CLI never overwrite each other's changes: every disable the CLI reports is in the file.
  it('CLI disables of accounts while the Haraka process writes the state file are all kept', async function () {
    const script = path.join(dir, 'writer.js')
    fs.writeFileSync(script, [
      `const { createMemoryStore } = require(${JSON.stringify(path.resolve(__dirname, '..', '..', 'dist', 'lib', 'store', 'memory'))})`,
      'const store = createMemoryStore({ stateFile: process.argv[2] })',
      'let n = 0',
      ';(async () => { for (;;) { await store.reset(\'busy@test.example\'); if (++n === 20) process.stdout.write(\'ready\\n\') } })()',
      '',
    ].join('\n'))
    const writer = childProcess.spawn(process.execPath, [script, stateFile], { stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise((resolve) => writer.once('exit', resolve))
    try {
      let out = ''
      writer.stdout.on('data', (d) => { out += d })
      await waitFor(() => out.includes('ready'), 5000, 'the writer runs')
      const accounts = Array.from({ length: 8 }, (_, i) => `victim${i}@test.example`)
      for (const a of accounts) assertExit(await cli(dir, ['disable', a, '--reason', 'phished']), 0, `disable ${a}`)
      process.kill(writer.pid, 'SIGKILL')
      await exited
      const state = readState()
      const kept = accounts.filter((a) => Object.hasOwn(state.disabled, a))
      assert.deepEqual(kept, accounts, `disable records left in the state file: ${kept.length} of ${accounts.length}`)
      assert.equal(state.audit.filter((e) => e.action === 'disable').length, accounts.length, 'audit entries of the disables')
    } finally {
      try { process.kill(writer.pid, 'SIGKILL') } catch { /* gone */ }
      await exited
    }
  })

  it('a damaged state file: exit 4, stderr names the file; the file is left as it was', async function () {
    fs.writeFileSync(stateFile, '{"disabled": {"a@test.example": ')
    const r = await cli(dir, ['enable', 'a@test.example'])
    assertExit(r, 4, 'enable with a damaged state file')
    assert.ok(r.stderr.includes(stateFile), r.stderr)
    assert.equal(fs.readFileSync(stateFile, 'utf8'), '{"disabled": {"a@test.example": ')
  })
})
