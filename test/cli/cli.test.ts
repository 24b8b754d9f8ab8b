// The operator's command line (lib/cli/index.ts, bin/hijack-guard.ts) as an operator runs it: a
// real process, `node dist/bin/hijack-guard.js -c HARAKA_DIR ...`, against a real redis-server
// on a free loopback port (and, in the last block, the memory store's state file). The Haraka
// directory of each block holds only config/hijack-guard.ini, config/me and config/plugins. The
// state the commands act on is arranged through the store API the plugin itself uses (the lib/
// source: the same key layout and state file as the built CLI). The bounds on how long the CLI
// takes without a store are checked in process too (runCli), where no process start-up on a
// loaded machine blurs them.

import assert from 'node:assert/strict'
import * as childProcess from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { EXIT, runCli } from '../../lib/cli'
import { parseConfig, rulesForAccount, type Config } from '../../lib/config'
import type { DisabledRecord, RecordInput, Store } from '../../lib/store'
import { createMemoryStore } from '../../lib/store/memory'
import { createRedisStore } from '../../lib/store/redis'
import {
  HOST,
  REPO_ROOT,
  escapeRegExp,
  freePort,
  stopAll,
  tmpDir,
  track,
  untrack,
  waitUntil,
  startRedis,
  type RedisServer,
} from '../../support'
import { BIN, cli, show, type CliRun } from './run'

const ME = 'mx.test.example'
const ACTOR = `cli:${os.userInfo().username}`
const COMMANDS = ['list', 'show', 'enable', 'disable', 'reset', 'audit', 'drop-held']
const LIST_KEYS = ['account', 'disabledAt', 'by', 'reason', 'limit', 'counts', 'incident', 'held']
const SHOW_KEYS = [
  'account',
  'state',
  'disabled',
  'counts',
  'held',
  'passwordChangePending',
  'probationUntil',
  'replyEnables',
  'evidence',
  'audit',
]
const COUNT_KEYS = ['kind', 'max', 'windowMs', 'text', 'count']
const ENTRY_KEYS = ['at', 'account', 'action', 'actor', 'how']

const DEFAULT_STORE_TIMEOUT_MS = parseConfig({}, ME).storeTimeoutMs
/**
 * How long the CLI takes to give up on a store that does not answer, with the default
 * store_timeout (lib/cli): it waits 3 × store_timeout (at least 2 s) for the store, then closes
 * it, which takes at most store_timeout more. Then it exits 4.
 */
const GIVE_UP_MS = Math.max(3 * DEFAULT_STORE_TIMEOUT_MS, 2000) + DEFAULT_STORE_TIMEOUT_MS
/** What a process start (node, the bin, haraka-config) may add to that on a loaded machine. */
const PROCESS_MARGIN_MS = 15_000
/** What scheduling may add to an in-process run on a loaded machine. */
const IN_PROCESS_MARGIN_MS = 3000

type Json = Record<string, unknown>

function assertExit(r: CliRun, code: number, what: string): void {
  assert.equal(r.code, code, `${what}: ${show(r)}`)
}

function json(r: CliRun, what: string): unknown {
  try {
    return JSON.parse(r.stdout) as unknown
  } catch (err) {
    assert.fail(`${what}: stdout is not JSON (${(err as Error).message}): ${show(r)}`)
  }
}

/** `value` as a plain object. */
function obj(value: unknown, what: string): Json {
  assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value), `${what}: ${JSON.stringify(value)}`)
  return value as Json
}

/** `value` as an array. */
function arr(value: unknown, what: string): unknown[] {
  assert.ok(Array.isArray(value), `${what}: ${JSON.stringify(value)}`)
  return value as unknown[]
}

function assertKeys(value: unknown, keys: readonly string[], what: string): Json {
  const o = obj(value, what)
  for (const k of keys) assert.ok(Object.hasOwn(o, k), `${what}: no key ${k} in ${JSON.stringify(o)}`)
  return o
}

function assertCounts(counts: unknown, what: string): Json[] {
  return arr(counts, `${what}: counts`).map((value) => {
    const c = assertKeys(value, COUNT_KEYS, `${what}: a count`)
    assert.ok(c.kind === 'messages' || c.kind === 'recipients', `${what}: kind ${String(c.kind)}`)
    for (const k of ['max', 'windowMs', 'count']) assert.equal(typeof c[k], 'number', `${what}: ${k}`)
    return c
  })
}

function assertEntry(value: unknown, what: string): Json {
  const e = assertKeys(value, ENTRY_KEYS, what)
  assert.equal(typeof e.at, 'number', `${what}: at`)
  assert.ok(
    ['disable', 'enable', 'reset', 'reactivate-failed', 'drop-held'].includes(String(e.action)),
    `${what}: action ${String(e.action)}`,
  )
  return e
}

/** A JSON number (audit times). */
function num(value: unknown, what: string): number {
  assert.equal(typeof value, 'number', `${what}: ${JSON.stringify(value)}`)
  return Number(value)
}

/** A Haraka directory (under the temporary root) with config/hijack-guard.ini, config/me and config/plugins. */
function writeHarakaDir(ini: string): string {
  const dir = tmpDir('haraka-cli')
  fs.mkdirSync(path.join(dir, 'config'))
  fs.writeFileSync(path.join(dir, 'config', 'hijack-guard.ini'), ini)
  fs.writeFileSync(path.join(dir, 'config', 'me'), `${ME}\n`)
  // the CLI acts only on a Haraka directory whose config/plugins enables hijack-guard
  fs.writeFileSync(path.join(dir, 'config', 'plugins'), 'auth/flat_file\nhijack-guard\n')
  return dir
}

const quiet = { info: (): void => undefined, warn: (): void => undefined, error: (): void => undefined }

function summary(n: number): { ip: string; helo: string; domains: string[]; subject: string } {
  return {
    ip: `192.0.2.${n}`,
    helo: `bot${n}.spam.example`,
    domains: [`victim${n}.example`],
    subject: `cheap pills ${n}`,
  }
}

function recordInput(config: Config, account: string, n: number): RecordInput {
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
async function trip(
  store: Store,
  config: Config,
  account: string,
  max = 3,
): Promise<{ record: DisabledRecord; token: string }> {
  for (let i = 1; i <= max; i++) {
    const r = await store.record(recordInput(config, account, i))
    assert.equal(r.status, 'ok', `message ${i} of ${account}: ${JSON.stringify(r)}`)
  }
  const input = recordInput(config, account, max + 1)
  const r = await store.record(input)
  assert.equal(r.status, 'refused', JSON.stringify(r))
  assert.equal(r.flipped, true)
  await store.audit({
    at: r.record.at,
    account,
    action: 'disable',
    actor: 'limit',
    how: 'limit',
    reason: `reached ${max} messages`,
  })
  return { record: r.record, token: input.token }
}

/** A loopback TCP server that accepts connections and never answers: a store that hangs. */
async function startSilentServer(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>()
  let connections = 0
  const server = net.createServer((socket) => {
    connections++
    sockets.add(socket)
    socket.on('error', () => undefined)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, HOST, () => resolve())
  })
  const address = server.address()
  assert.ok(address !== null && typeof address === 'object')
  const resource = {
    async stop(): Promise<void> {
      untrack(resource)
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
    killSync(): void {
      for (const socket of sockets) socket.destroy()
      server.close()
    },
  }
  track(resource)
  return { port: address.port, connections: () => connections, close: () => resource.stop() }
}

/** runCli in this process, its output collected; resolves the exit code, the output and the time taken. */
async function runInProcess(argv: readonly string[]): Promise<{ code: number; out: string; err: string; ms: number }> {
  let out = ''
  let err = ''
  const t0 = Date.now()
  const code = await runCli(argv, {
    out: (text) => {
      out += `${text}\n`
    },
    err: (text) => {
      err += `${text}\n`
    },
  })
  return { code, out, err, ms: Date.now() - t0 }
}

after(() => stopAll())

describe('cli: hijack-guard as a process, store = redis', function () {
  this.timeout(60000)

  let redis: RedisServer
  let dir: string
  let config: Config
  let store: Store

  const rawIni = (port: number): Parameters<typeof parseConfig>[0] => ({
    main: { store: 'redis' },
    redis: { port: String(port) },
    limits: { messages: '3/1m', recipients: '10/1h' },
    // The volume limits only: the networks signal has its own tests (test/e2e/networks.test.ts).
    signals: { networks: '' },
    alert: { to: 'postmaster@test.example' },
  })

  before(async function () {
    redis = await startRedis()
    dir = writeHarakaDir(
      [
        '[main]',
        'store = redis',
        '[redis]',
        `port = ${redis.port}`,
        '[limits]',
        'messages = 3/1m',
        'recipients = 10/1h',
        '[signals]',
        'networks =',
        '[alert]',
        'to = postmaster@test.example',
        '',
      ].join('\n'),
    )
    config = parseConfig(rawIni(redis.port), ME)
    store = createRedisStore({ redis: config.redis, timeoutMs: 1000, log: quiet })
    await store.ready(5000)
  })

  after(async function () {
    await store?.close()
    await redis?.stop()
  })

  beforeEach(async function () {
    await redis.flushall()
  })

  const keysOf = async (account: string): Promise<string[]> => {
    const prefix = `hijack-guard:{${account}}:`
    return (await redis.keys(`${prefix}*`)).map((k) => k.slice(prefix.length)).sort()
  }
  const counts = async (account: string): Promise<number[]> =>
    (await store.counts(account, rulesForAccount(config, account))).map((c) => c.count)

  // -------------------------------------------------------------------------------------------
  // help and usage

  it('--help (and -h, help) exits 0 and lists every command, every option and the exit codes; needs no Haraka directory', async function () {
    for (const args of [['--help'], ['-h'], ['help']]) {
      const what = args.join(' ')
      const r = await cli(null, args)
      assertExit(r, 0, what)
      assert.equal(r.stderr, '', what)
      for (const c of COMMANDS)
        assert.match(r.stdout, new RegExp(`^ {2}${c}( |$)`, 'm'), `${what}: command ${c} is listed`)
      for (const o of ['-c, --config DIR', '--json', '--reason', '--limit']) {
        assert.ok(r.stdout.includes(o), `${what}: option ${o}`)
      }
      assert.match(r.stdout, /0 done; 1 nothing to do.*\n2 usage error; 3 bad config; 4 store unreachable/)
    }
  })

  it('usage errors exit 2 with a hint on stderr and change nothing: no command, an unknown command or option, a missing or extra ACCOUNT, a bad --limit', async function () {
    const { record } = await trip(store, config, 'usage@test.example')
    const cases: Array<{ args: string[]; stderr: RegExp }> = [
      { args: [], stderr: /no command given/ },
      { args: ['frobnicate'], stderr: /unknown command "frobnicate"/ },
      { args: ['--bogus', 'list'], stderr: /--bogus/ },
      { args: ['list', 'extra'], stderr: /list takes no arguments/ },
      ...['show', 'enable', 'disable', 'reset', 'drop-held'].flatMap((c) => [
        { args: [c], stderr: new RegExp(`${c} takes exactly one ACCOUNT`) },
        {
          args: [c, 'usage@test.example', 'other@test.example'],
          stderr: new RegExp(`${c} takes exactly one ACCOUNT`),
        },
      ]),
      { args: ['audit', 'a@test.example', 'b@test.example'], stderr: /audit takes at most one ACCOUNT/ },
      ...['abc', '0', '-1', '1.5', ''].map((v) => ({
        args: ['audit', `--limit=${v}`],
        stderr: /--limit must be a whole number/,
      })),
    ]
    const results = await Promise.all(cases.map((c) => cli(dir, c.args)))
    for (const [i, r] of results.entries()) {
      const c = cases[i]
      assert.ok(c)
      const what = `hijack-guard ${c.args.join(' ')}`
      assertExit(r, 2, what)
      assert.match(r.stderr, c.stderr, what)
      assert.match(
        r.stderr,
        /hijack-guard --help|Usage: hijack-guard -c HARAKA_DIR/,
        `${what}: points at --help or shows the usage`,
      )
    }
    // nothing happened to the account or the audit trail
    assert.deepEqual(await store.getDisabled('usage@test.example'), record)
    assert.equal((await store.auditLog()).length, 1)
    assert.equal((await counts('usage@test.example'))[0], 3)
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
    await waitUntil(() => Date.now() > record.at + 2, { timeoutMs: 2000, message: 'the clock moves on' })
    assert.equal(
      await store.disable({
        account: 'manual@test.example',
        reason: 'phished, ticket 4711',
        by: 'cli:someone',
        incident: 'manual-1',
      }),
      true,
    )

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
    const rows = arr(json(js, '--json list'), '--json list')
    assert.equal(rows.length, 2)
    const checked = rows.map((value) => {
      const row = assertKeys(value, LIST_KEYS, 'a list row')
      for (const k of Object.keys(row)) assert.ok([...LIST_KEYS, 'replyExpiresAt'].includes(k), `unexpected key ${k}`)
      assert.equal(typeof row.disabledAt, 'string')
      assert.equal(new Date(String(row.disabledAt)).toISOString(), row.disabledAt)
      assertCounts(row.counts, String(row.account))
      return row
    })
    const [manual, tripped] = checked
    assert.ok(manual && tripped)
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
    assert.deepEqual(
      assertCounts(tripped.counts, 'tripped').map((c) => [c.kind, c.text, c.count, c.max]),
      [
        ['messages', '3/1m', 3, 3],
        ['recipients', '10/1h', 6, 10],
      ],
    )
    assert.equal(tripped.incident, record.incident)
    assert.equal(tripped.held, 2)
    assert.ok(
      Date.parse(String(tripped.replyExpiresAt)) > Date.now() + 6 * 86_400_000,
      `the reply is good for 7 days: ${String(tripped.replyExpiresAt)}`,
    )
    assert.ok(Date.parse(String(manual.disabledAt)) >= Date.parse(String(tripped.disabledAt)))
  })

  // -------------------------------------------------------------------------------------------
  // show

  it("show: a disabled account's state, reason, incident, live counts, the counts at the incident, the evidence, held mail and recent audit; --json gives {account, state, disabled, counts, held, evidence, audit}", async function () {
    const { record } = await trip(store, config, 'shown@test.example')
    await store.hold('shown@test.example', 'q9.1', 60000)

    const r = await cli(dir, ['show', 'shown@test.example'])
    assertExit(r, 0, 'show')
    const out = r.stdout
    assert.match(out, /^Account +shown@test\.example$/m)
    assert.match(
      out,
      /^State +disabled since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by limit: reached 3 messages in 1 minute$/m,
    )
    assert.match(out, new RegExp(`^Incident +${record.incident} \\(reply to the alert until \\d{4}-.* UTC\\)$`, 'm'))
    assert.match(out, /^Held mail 1 message$/m)
    assert.match(out, /^Limits \(live counts\):\n {2}messages 3\/3 in 1 minute\n {2}recipients 6\/10 in 1 hour$/m)
    assert.match(out, /^At the incident:\n {2}messages 3\/3 in 1 minute\n {2}recipients 6\/10 in 1 hour$/m)
    assert.match(out, /^Evidence from its last 4 messages:$/m)
    for (const n of [1, 2, 3, 4]) {
      for (const bit of [`192.0.2.${n}`, `bot${n}.spam.example`, `victim${n}.example`, `"cheap pills ${n}"`]) {
        assert.ok(out.includes(bit), `evidence ${bit} in:\n${out}`)
      }
    }
    assert.match(out, /Source IPs:/)
    assert.match(out, /HELO names:/)
    assert.match(out, /Recipient domains:/)
    assert.match(out, /Subjects:/)
    assert.match(
      out,
      /^Recent audit:\n {2}\d{4}-.* UTC {2}disable +"shown@test\.example" by limit via limit: reached 3 messages$/m,
    )

    const js = await cli(dir, ['--json', 'show', 'shown@test.example'])
    assertExit(js, 0, '--json show')
    const o = assertKeys(json(js, '--json show'), SHOW_KEYS, 'show')
    assert.deepEqual(Object.keys(o).sort(), [...SHOW_KEYS, 'store'].sort())
    assert.equal(o.store, `redis ${HOST}:${redis.port}/0`)
    assert.equal(o.account, 'shown@test.example')
    assert.equal(o.state, 'disabled')
    const disabled = assertKeys(o.disabled, LIST_KEYS, 'show.disabled')
    assert.equal(disabled.limit, 'messages 3/1m')
    assert.equal(disabled.incident, record.incident)
    assert.equal(disabled.held, 1)
    assert.deepEqual(
      assertCounts(o.counts, 'show.counts').map((c) => [c.kind, c.count, c.max, c.windowMs]),
      [
        ['messages', 3, 3, 60000],
        ['recipients', 6, 10, 3600000],
      ],
    )
    assert.equal(o.held, 1)
    const evidence = arr(o.evidence, 'show.evidence')
    assert.equal(evidence.length, 4)
    assert.deepEqual(evidence[0], summary(4), 'newest evidence first')
    const audit = arr(o.audit, 'show.audit')
    assert.equal(audit.length, 1)
    assert.equal(assertEntry(audit[0], 'show.audit').actor, 'limit')
  })

  it('show: an active account with counted mail exits 0 (state active, live counts); an account hijack-guard never saw exits 1 and says so', async function () {
    const acct = 'busy@test.example'
    assert.equal((await store.record(recordInput(config, acct, 7))).status, 'ok')
    const r = await cli(dir, ['--json', 'show', acct])
    assertExit(r, 0, 'show of an active account')
    const o = obj(json(r, 'show'), 'show')
    assert.equal(o.state, 'active')
    assert.equal(o.disabled, null)
    assert.deepEqual(
      assertCounts(o.counts, 'show.counts').map((c) => c.count),
      [1, 2],
    )
    assert.deepEqual(o.evidence, [summary(7)])

    const [unknown, unknownJson] = await Promise.all([
      cli(dir, ['show', 'nobody@test.example']),
      cli(dir, ['--json', 'show', 'nobody@test.example']),
    ])
    assertExit(unknown, 1, 'show of an unknown account')
    assert.match(unknown.stdout, /^State +active$/m)
    assert.match(unknown.stdout, /hijack-guard has no record of nobody@test\.example/)
    assertExit(unknownJson, 1, '--json show of an unknown account')
    const u = obj(json(unknownJson, '--json show of an unknown account'), 'show')
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
    assert.deepEqual(await counts(acct), [0, 0])
    assert.deepEqual(await store.evidence(acct), [])
    const [entry] = await store.auditLog({ account: acct, limit: 1 })
    assert.ok(entry)
    assert.deepEqual(
      { ...entry, at: 0, reason: '' },
      { at: 0, account: acct, action: 'enable', actor: ACTOR, how: 'cli', reason: '' },
    )
    assert.match(entry.reason ?? '', /^probation until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(limits x0\.5\)$/)
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
      assert.deepEqual(await counts(a), [0, 0])
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
    assert.match(
      r.stdout,
      /^bob@test\.example disabled: AUTH gets 535 5\.7\.8 and MAIL FROM 550 5\.7\.1 until it is enabled$/m,
    )
    const rec = await store.getDisabled(acct)
    assert.ok(rec, 'disabled in the store')
    assert.equal(rec.by, ACTOR)
    assert.equal(rec.reason, 'phished, ticket 4711')
    assert.ok(rec.incident)
    const [entry] = await store.auditLog({ account: acct })
    assert.ok(entry)
    assert.deepEqual(
      { ...entry, at: 0 },
      { at: 0, account: acct, action: 'disable', actor: ACTOR, how: 'cli', reason: 'phished, ticket 4711' },
    )
    // a disabled account's mail is refused by the store the plugin uses
    assert.equal((await store.record(recordInput(config, acct, 1))).status, 'disabled')

    const again = await cli(dir, ['disable', acct, '--reason', 'second thoughts'])
    assertExit(again, 1, 'disable of a disabled account')
    assert.match(again.stdout, /bob@test\.example is disabled already/)
    assert.deepEqual(await store.getDisabled(acct), rec)
    assert.equal((await store.auditLog({ account: acct })).length, 1)

    const noReason = await cli(dir, ['disable', 'carol@test.example'])
    assertExit(noReason, 0, 'disable without --reason')
    assert.equal((await store.getDisabled('carol@test.example'))?.reason, 'disabled by an operator')
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
    assert.deepEqual(await counts(acct), [0, 0])
    assert.deepEqual(await store.evidence(acct), [])
    const [entry] = await store.auditLog({ account: acct, limit: 1 })
    assert.ok(entry)
    assert.deepEqual({ ...entry, at: 0 }, { at: 0, account: acct, action: 'reset', actor: ACTOR, how: 'cli' })
  })

  // -------------------------------------------------------------------------------------------
  // drop-held

  it("drop-held marks the account's queued mail for discarding (the mark outbound reads), says how many are held, and leaves an audit entry", async function () {
    const acct = 'held@test.example'
    await trip(store, config, acct)
    for (const id of ['a.1', 'b.1', 'c.1']) await store.hold(acct, id, 60000)
    assert.equal((await store.heldState(acct)).dropBefore, 0)
    const before = Date.now()
    const r = await cli(dir, ['drop-held', 'HELD@test.example'])
    assertExit(r, 0, 'drop-held')
    assert.match(
      r.stdout,
      /^held@test\.example: 3 held messages .*discarded at the next delivery attempt \(within 1 minute\), without bounces$/m,
    )
    const state = await store.heldState(acct)
    assert.equal(state.disabled, true)
    assert.ok(
      state.dropBefore >= before - 2000 && state.dropBefore <= Date.now() + 2000,
      `drop-before ${state.dropBefore}`,
    )
    const [entry] = await store.auditLog({ account: acct, limit: 1 })
    assert.ok(entry)
    assert.deepEqual(
      { ...entry, at: 0 },
      { at: 0, account: acct, action: 'drop-held', actor: ACTOR, how: 'cli', reason: '3 held' },
    )
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
    const raw = arr(json(all, '--json audit'), '--json audit')
    const entries = raw.map((e) => assertEntry(e, 'an audit entry'))
    assert.deepEqual(
      entries.map((e) => [e.action, e.account, e.actor, e.how]),
      [
        ['enable', 'y@test.example', ACTOR, 'cli'],
        ['enable', 'x@test.example', ACTOR, 'cli'],
        ['reset', 'x@test.example', ACTOR, 'cli'],
        ['disable', 'y@test.example', ACTOR, 'cli'],
        ['disable', 'x@test.example', 'limit', 'limit'],
      ],
    )
    for (let i = 1; i < entries.length; i++) {
      assert.ok(num(entries[i - 1]?.at, 'at') >= num(entries[i]?.at, 'at'), 'newest first')
    }

    const one = arr(json(await cli(dir, ['--json', 'audit', 'X@TEST.EXAMPLE']), 'audit X'), 'audit X').map((e) =>
      assertEntry(e, 'audit X'),
    )
    assert.deepEqual(
      one.map((e) => e.action),
      ['enable', 'reset', 'disable'],
    )
    assert.ok(one.every((e) => e.account === 'x@test.example'))
    const two = json(await cli(dir, ['--json', 'audit', '--limit', '2']), 'audit --limit 2')
    assert.deepEqual(two, raw.slice(0, 2))

    const text = await cli(dir, ['audit', '--limit=3'])
    assertExit(text, 0, 'audit')
    const [storeLine, ...lines] = text.stdout.trim().split('\n')
    assert.equal(storeLine, `store: redis ${HOST}:${redis.port}/0`)
    assert.equal(lines.length, 3, text.stdout)
    assert.match(
      lines[0] ?? '',
      new RegExp(
        `^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC {2}enable +"y@test\\.example" by ${ACTOR} via cli: probation until .* \\(limits x0\\.5\\)$`,
      ),
    )
    assert.match(lines[2] ?? '', /^.* UTC {2}reset +"x@test\.example" by cli:.* via cli$/)
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
    const runs = bad.map((b) => ({ ...b, dir: writeHarakaDir(b.ini) }))
    const results = await Promise.all(runs.map((b) => cli(b.dir, ['disable', 'cfg@test.example'])))
    for (const [i, r] of results.entries()) {
      const b = runs[i]
      assert.ok(b)
      assertExit(r, 3, b.ini)
      assert.equal(r.stdout, '')
      assert.ok(r.stderr.includes('hijack-guard.ini'), `names the file: ${r.stderr}`)
      assert.ok(r.stderr.includes(b.key), `names the key ${b.key}: ${r.stderr}`)
      assert.ok(r.stderr.includes(JSON.stringify(b.value)), `names the value ${b.value}: ${r.stderr}`)
      assert.ok(r.stderr.includes(b.dir), `names the Haraka directory: ${r.stderr}`)
    }
    assert.equal(await store.getDisabled('cfg@test.example'), null, 'nothing was disabled')
  })

  const STORE_COMMANDS = [
    ['list'],
    ['--json', 'list'],
    ['show', 'a@test.example'],
    ['enable', 'a@test.example'],
    ['disable', 'a@test.example'],
    ['reset', 'a@test.example'],
    ['audit'],
    ['drop-held', 'a@test.example'],
  ]

  // The CLI gives up on a store that does not answer after GIVE_UP_MS. The process runs get a
  // bound that allows for starting node on a loaded machine, and a kill far beyond it (a hang
  // shows as SIGKILL, not exit 4); the in-process test below holds runCli itself to GIVE_UP_MS.
  it(`a Redis port with nothing listening, or one that accepts and never answers: every command exits 4 within the store wait and close (${GIVE_UP_MS} ms) plus process start-up, stderr names the store`, async function () {
    this.timeout(240_000)
    const silent = await startSilentServer()
    try {
      for (const port of [await freePort(), silent.port]) {
        const down = writeHarakaDir(`[redis]\nport = ${port}\n`)
        const results = await Promise.all(STORE_COMMANDS.map((args) => cli(down, args, { timeoutMs: 90_000 })))
        for (const [i, r] of results.entries()) {
          const what = `${(STORE_COMMANDS[i] ?? []).join(' ')} (port ${port})`
          assertExit(r, 4, what)
          assert.ok(r.ms < GIVE_UP_MS + PROCESS_MARGIN_MS, `${what} took ${r.ms} ms: ${show(r)}`)
          assert.match(
            r.stderr,
            new RegExp(`the store \\(redis ${escapeRegExp(HOST)}:${port}/0\\) cannot be used`),
            what,
          )
          assert.equal(r.stdout, '', what)
        }
      }
    } finally {
      await silent.close()
    }
  })

  it(`in process: every command gives up on a Redis port with nothing listening, and on one that accepts and never answers, within the store wait and close (${GIVE_UP_MS} ms)`, async function () {
    this.timeout(60_000)
    const silent = await startSilentServer()
    try {
      for (const port of [await freePort(), silent.port]) {
        const down = writeHarakaDir(`[redis]\nport = ${port}\n`)
        const results = await Promise.all(STORE_COMMANDS.map((args) => runInProcess(['-c', down, ...args])))
        for (const [i, r] of results.entries()) {
          const what = `${(STORE_COMMANDS[i] ?? []).join(' ')} (port ${port})`
          assert.equal(r.code, EXIT.store, `${what}: ${JSON.stringify(r)}`)
          assert.ok(r.ms < GIVE_UP_MS + IN_PROCESS_MARGIN_MS, `${what} took ${r.ms} ms`)
          assert.match(r.err, new RegExp(`the store \\(redis ${escapeRegExp(HOST)}:${port}/0\\) cannot be used`), what)
          assert.equal(r.out, '', what)
        }
      }
      assert.ok(silent.connections() > 0, 'the runs did try the silent store')
    } finally {
      await silent.close()
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
      await Promise.all(
        Array.from({ length: 100 }, (_, j) =>
          store.audit({
            at: t0 + i + j,
            account: `a${i + j}@test.example`,
            action: 'disable',
            actor: 'limit',
            how: 'limit',
            reason,
          }),
        ),
      )
    }
    // a reader that takes its time (like `| jq` on a busy machine): it starts reading a second
    // after the CLI started writing, so the pipe is full for a while
    const env = { ...process.env }
    delete env.HARAKA
    const cmd = `"${process.execPath}" "${BIN}" -c "${dir}" --json audit --limit 1000 | (sleep 1; cat); exit \${PIPESTATUS[0]}`
    const r = await new Promise<{ code: number | string | null | undefined; stdout: string }>((resolve) => {
      childProcess.execFile(
        'bash',
        ['-c', cmd],
        { env, maxBuffer: 16 * 1024 * 1024, timeout: 40000 },
        (err, stdout) => {
          resolve({ code: err ? err.code : 0, stdout })
        },
      )
    })
    assert.equal(r.code, 0, '--json audit --limit 1000')
    let entries: unknown
    assert.doesNotThrow(
      () => {
        entries = JSON.parse(r.stdout)
      },
      `stdout through the pipe is ${r.stdout.length} bytes: ${JSON.stringify(r.stdout.slice(0, 40))} ... ${JSON.stringify(r.stdout.slice(-40))}`,
    )
    assert.equal(arr(entries, 'the audit').length, 1000)
  })

  // The arguments are checked before the config is read or the store opened: a mistyped
  // command line is a usage error (exit 2) at once, also while the store is down, so a script
  // can tell "fix your call" from "retry later" (exit 4). Two stores that are down: a port with
  // nothing listening (a run that tried it would exit 4 after the store wait) and a server that
  // accepts and never answers, with store_timeout = 60s (a run that tried it would still be
  // waiting at the 30 s kill), which also counts connections: none may come.
  it('a usage error (missing ACCOUNT, bad --limit) exits 2 at once also while the store is unreachable or hangs, without touching the store', async function () {
    const silent = await startSilentServer()
    try {
      const downs = [
        writeHarakaDir(`[redis]\nport = ${await freePort()}\n`),
        writeHarakaDir(`[main]\nstore_timeout = 60s\n[redis]\nport = ${silent.port}\n`),
      ]
      const runs = [['enable'], ['show'], ['audit', '--limit', 'abc'], ['list', 'extra']]
      const cases = downs.flatMap((down) => runs.map((args) => ({ down, args })))
      const results = await Promise.all(cases.map(({ down, args }) => cli(down, args, { timeoutMs: 30_000 })))
      for (const [i, r] of results.entries()) {
        const c = cases[i]
        assert.ok(c)
        assertExit(r, 2, `${c.args.join(' ')} (${c.down})`)
        assert.match(r.stderr, /Try: hijack-guard --help/, c.args.join(' '))
      }
      assert.equal(silent.connections(), 0, 'no usage error connected to the store')
      // in process, where no process start-up blurs the time: at once
      for (const { down, args } of cases) {
        const r = await runInProcess(['-c', down, ...args])
        assert.equal(r.code, EXIT.usage, `${args.join(' ')}: ${JSON.stringify(r)}`)
        assert.ok(r.ms < 1000, `${args.join(' ')} took ${r.ms} ms in process`)
      }
      assert.equal(silent.connections(), 0, 'no usage error connected to the store')
    } finally {
      await silent.close()
    }
  })
})

describe('cli: store = memory (the state file in the Haraka directory)', function () {
  this.timeout(60000)

  let dir: string
  let config: Config
  let stateFile: string

  const ini = [
    '[main]',
    'store = memory',
    '[limits]',
    'messages = 3/1m',
    'recipients = 10/1h',
    '[signals]',
    'networks =',
    '[alert]',
    'to = postmaster@test.example',
    '',
  ].join('\n')

  beforeEach(function () {
    dir = writeHarakaDir(ini)
    config = parseConfig(
      {
        main: { store: 'memory' },
        limits: { messages: '3/1m', recipients: '10/1h' },
        // The volume limits only: the networks signal has its own tests (test/e2e/networks.test.ts).
        signals: { networks: '' },
        alert: { to: 'postmaster@test.example' },
      },
      ME,
    )
    stateFile = path.join(dir, 'hijack-guard.state.json')
  })

  const readState = (): Json => obj(JSON.parse(fs.readFileSync(stateFile, 'utf8')), 'the state file')
  const disabledInState = (): Json => obj(readState().disabled, 'the state file: disabled')
  const auditInState = (): Json[] =>
    arr(readState().audit, 'the state file: audit').map((e) => obj(e, 'the state file: an audit entry'))

  it('list, show, enable, disable and audit work on DIR/hijack-guard.state.json, from any working directory; show says the live counts are in the Haraka process', async function () {
    const plugin = createMemoryStore({ stateFile }) // what the Haraka process holds
    const { record } = await trip(plugin, config, 'mem@test.example')
    const elsewhere = tmpDir('cli-cwd')
    try {
      const list = await cli(dir, ['--json', 'list'], { cwd: elsewhere })
      assertExit(list, 0, 'list')
      const rows = arr(json(list, 'list'), 'list').map((r) => obj(r, 'a list row'))
      assert.deepEqual(
        rows.map((r) => [r.account, r.by, r.limit, r.incident]),
        [['mem@test.example', 'limit', 'messages 3/1m', record.incident]],
      )

      const shown = await cli(dir, ['show', 'MEM@test.example'], { cwd: elsewhere })
      assertExit(shown, 0, 'show')
      assert.match(shown.stdout, /^State +disabled since .* by limit: reached 3 messages in 1 minute$/m)
      assert.match(
        shown.stdout,
        /^Limits \(live counts are kept inside the Haraka process with store = memory\):\n {2}messages 3\/1m\n {2}recipients 10\/1h$/m,
      )
      assert.match(shown.stdout, /^At the incident:\n {2}messages 3\/3 in 1 minute/m)
      assert.match(shown.stdout, /Evidence from its last 4 messages:/)
      const shownJson = obj(
        json(await cli(dir, ['--json', 'show', 'mem@test.example'], { cwd: elsewhere }), 'show --json'),
        'show --json',
      )
      assert.equal(shownJson.counts, null, 'no live counts from the CLI with store = memory')
      assert.equal(shownJson.state, 'disabled')

      const enabled = await cli(dir, ['enable', 'Mem@Test.Example'], { cwd: elsewhere })
      assertExit(enabled, 0, 'enable')
      assert.equal(
        Object.hasOwn(disabledInState(), 'mem@test.example'),
        false,
        'the state file no longer has the record',
      )
      assert.equal(await plugin.getDisabled('mem@test.example'), null, "the plugin's store sees the change")
      assert.equal(
        (await plugin.record(recordInput(config, 'mem@test.example', 1))).counts[0]?.count,
        1,
        'and the counters start over',
      )
      assertExit(await cli(dir, ['enable', 'mem@test.example'], { cwd: elsewhere }), 1, 'a second enable')

      const disabled = await cli(dir, ['disable', 'Other@Test.Example', '--reason', 'left the company'], {
        cwd: elsewhere,
      })
      assertExit(disabled, 0, 'disable')
      const rec = obj(
        disabledInState()['other@test.example'],
        `the state file has the record: ${fs.readFileSync(stateFile, 'utf8')}`,
      )
      assert.equal(rec.by, ACTOR)
      assert.equal(rec.reason, 'left the company')
      assert.equal(
        (await plugin.record(recordInput(config, 'other@test.example', 1))).status,
        'disabled',
        "the plugin's store refuses it",
      )
      assertExit(await cli(dir, ['disable', 'other@test.example'], { cwd: elsewhere }), 1, 'a second disable')

      const audit = arr(json(await cli(dir, ['--json', 'audit'], { cwd: elsewhere }), 'audit'), 'audit').map((e) =>
        assertEntry(e, 'audit'),
      )
      assert.deepEqual(
        audit.map((e) => [e.action, e.account, e.actor, e.how]),
        [
          ['disable', 'other@test.example', ACTOR, 'cli'],
          ['enable', 'mem@test.example', ACTOR, 'cli'],
          ['disable', 'mem@test.example', 'limit', 'limit'],
        ],
      )
      assert.deepEqual(
        auditInState().map((e) => e.action),
        ['disable', 'enable', 'disable'],
      )
      assert.equal(
        fs.existsSync(path.join(elsewhere, 'hijack-guard.state.json')),
        false,
        'nothing written to the working directory',
      )
    } finally {
      await plugin.close()
    }
  })

  it('[main] state_file is taken relative to the Haraka directory', async function () {
    fs.writeFileSync(
      path.join(dir, 'config', 'hijack-guard.ini'),
      ini.replace('store = memory', 'store = memory\nstate_file = var/hg.json'),
    )
    const r = await cli(dir, ['disable', 'rel@test.example'])
    assertExit(r, 0, 'disable')
    const file = path.join(dir, 'var', 'hg.json')
    assert.ok(fs.existsSync(file), `${file} exists`)
    const state = obj(JSON.parse(fs.readFileSync(file, 'utf8')), file)
    assert.ok(obj(state.disabled, `${file}: disabled`)['rel@test.example'])
    assert.equal(fs.existsSync(stateFile), false)
  })

  // The memory store's read-change-write of the state file holds <state file>.lock, so the
  // Haraka process (here: a process resetting an account's counters, one write each) and the
  // CLI never overwrite each other's changes: every disable the CLI reports is in the file.
  it('CLI disables of accounts while the Haraka process writes the state file are all kept', async function () {
    const script = path.join(dir, 'writer.js')
    fs.writeFileSync(
      script,
      [
        `const { createMemoryStore } = require(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'lib', 'store', 'memory'))})`,
        'const store = createMemoryStore({ stateFile: process.argv[2] })',
        'let n = 0',
        ";(async () => { for (;;) { await store.reset('busy@test.example'); if (++n === 20) process.stdout.write('ready\\n') } })()",
        '',
      ].join('\n'),
    )
    const writer = childProcess.spawn(process.execPath, [script, stateFile], { stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise((resolve) => writer.once('exit', resolve))
    try {
      let out = ''
      writer.stdout.on('data', (d: Buffer) => {
        out += d.toString()
      })
      await waitUntil(() => out.includes('ready'), { timeoutMs: 15000, message: 'the writer runs' })
      const accounts = Array.from({ length: 8 }, (_, i) => `victim${i}@test.example`)
      for (const a of accounts) assertExit(await cli(dir, ['disable', a, '--reason', 'phished']), 0, `disable ${a}`)
      writer.kill('SIGKILL')
      await exited
      const disabled = disabledInState()
      const kept = accounts.filter((a) => Object.hasOwn(disabled, a))
      assert.deepEqual(kept, accounts, `disable records left in the state file: ${kept.length} of ${accounts.length}`)
      assert.equal(
        auditInState().filter((e) => e.action === 'disable').length,
        accounts.length,
        'audit entries of the disables',
      )
    } finally {
      writer.kill('SIGKILL')
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
