// End-to-end: the operator's tools with the real parts (a Haraka 3.3.4 process with the packed
// plugin installed by npm, redis-server, a nodemailer client speaking AUTH PLAIN over loopback,
// a loopback SMTP sink as the outside world) and the CLI the package installs into the Haraka
// directory (DIR/node_modules/.bin/hijack-guard), run as a process: the audit trail, held
// outbound mail of a disabled account (released by enable, discarded by drop-held), and an
// incident handled with the CLI alone. See test/e2e/README.md.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {
  escapeRegExp,
  openSession,
  sendOne,
  tail,
  tryAuth,
  waitUntil,
  type HarakaInstance,
  type Sink,
  type SinkMessage,
} from '../../support'
import {
  alertPrefix,
  assert250,
  assert535,
  bySubject,
  countMatches,
  pluginIni,
  queueFiles,
  waitQueueEmpty,
  waitSubjects,
  e2eWorld,
  cliOk,
  at,
  type AuditEntry,
  replyToAlert,
  RETRYING_OUTBOUND,
} from './helpers'
import { describeCli } from '../../support/cli'

const PW = 'pw'
const ADMIN = 'postmaster@test.example' // a flat_file login listed in [alert] to: an admin
const OTHER = 'eve@test.example' // a login that is not an admin
const OUT = 'bob@outside.example'
const ACTOR = `cli:${os.userInfo().username}`

// waitQueueEmpty in these tests: a longer bound (15 s) and a shorter poll (50 ms) than its default
const QUEUE_WAIT = { timeoutMs: 15000, intervalMs: 50 }

// What `hijack-guard --json ...` prints, as far as these tests read it.

/** `list`: one disabled account. */
interface ListRow {
  readonly account: string
  readonly limit: string
  readonly counts: readonly { readonly kind: string; readonly count: number; readonly max: number }[]
  /** undefined or null when it could not be counted. */
  readonly held?: number | null
}

/** `show ACCOUNT`. */
interface ShowResult {
  readonly state: string
  readonly held: number
  readonly evidence: readonly { readonly helo: string; readonly ip: string }[]
}

// bounces: mail from the null sender
const bounces = (sink: Sink): SinkMessage[] => sink.messages.filter((m) => !m.from)

async function hgJson(srv: HarakaInstance, args: readonly string[]): Promise<unknown> {
  const r = await cliOk(srv, ['--json', ...args])
  try {
    return JSON.parse(r.stdout) as unknown
  } catch (err) {
    assert.fail(`${describeCli(r)}\nnot JSON: ${err instanceof Error ? err.message : String(err)}`)
  }
}

/** `hijack-guard --json ...` that prints a list. */
async function hgJsonList<T>(srv: HarakaInstance, args: readonly string[]): Promise<T[]> {
  const value = await hgJson(srv, args)
  assert.ok(Array.isArray(value), `hijack-guard --json ${args.join(' ')}: not a list: ${JSON.stringify(value)}`)
  return value as T[]
}

const hgAudit = (srv: HarakaInstance, args: readonly string[]): Promise<AuditEntry[]> =>
  hgJsonList<AuditEntry>(srv, ['audit', ...args])
const hgList = (srv: HarakaInstance): Promise<ListRow[]> => hgJsonList<ListRow>(srv, ['list'])

async function hgShow(srv: HarakaInstance, account: string): Promise<ShowResult> {
  const value = await hgJson(srv, ['show', account])
  assert.ok(
    typeof value === 'object' && value !== null && !Array.isArray(value),
    `hijack-guard --json show ${account}: ${JSON.stringify(value)}`,
  )
  return value as ShowResult
}

// the held count `hijack-guard --json list` shows for an account (undefined: not listed)
async function listedHeld(srv: HarakaInstance, account: string): Promise<number | null | undefined> {
  const row = (await hgList(srv)).find((r) => r.account === account)
  return row ? row.held : undefined
}

describe('e2e: operator tools (CLI, audit trail, held mail)', function () {
  this.timeout(60000)

  // every instance: an admin's and another user's login; started
  const e2e = e2eWorld({ users: { [ADMIN]: PW, [OTHER]: PW } })
  const { haraka } = e2e

  // Sends `max` messages from account (250), then one more (550 5.7.1, the account is now
  // disabled). Returns the subjects of the accepted ones.
  async function trip(
    srv: HarakaInstance,
    account: string,
    { max = 3, helo = 'client.test.example', tag = 'm' }: { max?: number; helo?: string; tag?: string } = {},
  ): Promise<string[]> {
    const s = await openSession({ port: srv.port, user: account, pass: PW, name: helo })
    const accepted: string[] = []
    for (let i = 1; i <= max + 1; i++) {
      const subject = `${tag} ${account} ${i}`
      const r = await s.send({ from: account, to: [`r${i}@d${i}.outside.example`], subject })
      if (i <= max) {
        assert250(r, `${account} message ${i}`)
        accepted.push(subject)
      } else {
        assert.equal(r.code, 550, `${account} message ${i} goes over: ${JSON.stringify(r)}`)
        assert.match(r.response, /^550 5\.7\.1 .*reached its limit/)
      }
    }
    await s.close()
    return accepted
  }

  // trip, then the alert and the audit entry of the automatic disable; returns the alert
  async function tripAudited(srv: HarakaInstance, account: string): Promise<SinkMessage> {
    await trip(srv, account)
    const alert = at(await waitSubjects(e2e.sink, alertPrefix(account), 1), 0, 'the alert')
    await waitAudit(srv, account, (e) => e.action === 'disable', 'the automatic disable')
    return alert
  }

  async function waitAudit(
    srv: HarakaInstance,
    account: string,
    pred: (e: AuditEntry) => boolean,
    what: string,
  ): Promise<AuditEntry[]> {
    let entries: AuditEntry[] = []
    await waitUntil(
      async () => {
        entries = await hgAudit(srv, [account])
        return entries.some(pred)
      },
      {
        timeoutMs: 10000,
        intervalMs: 200,
        message: () => `${what}: audit of ${account}: ${JSON.stringify(entries)}`,
      },
    )
    return entries
  }

  // -------------------------------------------------------------------------------------------
  // a. the audit trail

  it("the audit trail records every path with its actor: disable by the limit, enable by the admin's reply, a failed reply, CLI disable / reset / drop-held / enable by cli:<os user>", async function () {
    const acct = 'audited@test.example'
    const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(e2e.redis.port) })

    const alert = await tripAudited(srv, acct)

    // the admin answers the alert: re-enabled
    const ok = await replyToAlert(srv, alert, { user: ADMIN, pass: PW })
    assert250(ok, "the admin's reply")
    assert.match(ok.log, /ACCOUNT RE-ENABLED "audited@test\.example" by reply from postmaster@test\.example/)
    // the same reply again: the token is spent, nothing changes (a failed reactivation)
    const again = await replyToAlert(srv, alert, { user: ADMIN, pass: PW })
    assert250(again, 'the second reply')
    assert.match(again.log, /reply to alert not accepted from postmaster@test\.example for "audited@test\.example"/)

    // the CLI, with the login written differently each time
    await cliOk(srv, ['disable', 'Audited@Test.Example', '--reason', 'ticket 4711'])
    await cliOk(srv, ['reset', 'AUDITED@test.example'])
    await cliOk(srv, ['drop-held', acct])
    await cliOk(srv, ['enable', 'audited@TEST.example'])

    const entries = await hgAudit(srv, [acct])
    assert.deepEqual(
      entries.map((e) => [e.action, e.actor, e.how]),
      [
        ['enable', ACTOR, 'cli'],
        ['drop-held', ACTOR, 'cli'],
        ['reset', ACTOR, 'cli'],
        ['disable', ACTOR, 'cli'],
        ['reactivate-failed', ADMIN, 'reply'],
        ['enable', ADMIN, 'reply'],
        ['disable', 'limit', 'limit'],
      ],
      JSON.stringify(entries, null, 2),
    )
    for (const e of entries) assert.equal(e.account, acct)
    for (let i = 1; i < entries.length; i++)
      assert.ok(at(entries, i - 1, 'audit').at >= at(entries, i, 'audit').at, 'newest first')
    assert.match(String(at(entries, 6, 'audit').reason), /reached 3 messages in 1 minute|messages 3\/1m/)
    assert.equal(at(entries, 3, 'audit').reason, 'ticket 4711')
    assert.match(String(at(entries, 4, 'audit').reason), /not disabled|used already/)
    assert.equal(at(entries, 1, 'audit').reason, '0 held')

    // the text form names the actor and the way of each line
    const text = await cliOk(srv, ['audit', acct])
    const [storeLine, ...lines] = text.stdout.trim().split('\n')
    assert.match(String(storeLine), /^store: redis 127\.0\.0\.1:\d+\/0$/)
    assert.equal(lines.length, 7, text.stdout)
    assert.match(
      at(lines, 0, 'audit text'),
      new RegExp(`enable +"audited@test\\.example" by ${escapeRegExp(ACTOR)} via cli$`),
    )
    assert.match(at(lines, 5, 'audit text'), /enable +"audited@test\.example" by postmaster@test\.example via reply$/)
    assert.match(at(lines, 6, 'audit text'), /disable +"audited@test\.example" by limit via limit: /)

    // the account works again
    assert250(
      await sendOne({ port: srv.port, user: acct, pass: PW, from: acct, to: [OUT], subject: 'after the audit' }),
      'after the CLI enable',
    )
    await waitSubjects(e2e.sink, 'after the audit', 1)
  })

  // A refused reply whose token names an account is audited as reactivate-failed with the
  // login that sent it, also when it is refused for the login (not an admin) rather than the
  // token.
  it("a non-admin's reply to the alert leaves a reactivate-failed audit entry naming that login", async function () {
    const acct = 'forged@test.example'
    const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(e2e.redis.port) })
    const alert = await tripAudited(srv, acct)
    const r = await replyToAlert(srv, alert, { user: OTHER, pass: PW })
    assert250(r, "the non-admin's reply is consumed")
    assert.match(r.log, /reply to alert not accepted from eve@test\.example/)
    assert535(await tryAuth({ port: srv.port, user: acct, pass: PW }), 'still disabled', { text: null })
    const entries = await hgAudit(srv, [acct])
    assert.ok(
      entries.some((e) => e.action === 'reactivate-failed' && e.actor === OTHER && e.how === 'reply'),
      `no reactivate-failed entry by ${OTHER} in the audit of ${acct}: ${JSON.stringify(entries.map((e) => [e.action, e.actor, e.how]))}`,
    )
  })

  // -------------------------------------------------------------------------------------------
  // b, c. held mail

  // An instance that looks at held mail every second and retries refused mail (RETRYING_OUTBOUND)
  const heldRetrying = (acct: string): Promise<HarakaInstance> =>
    haraka({
      users: { [acct]: PW },
      pluginIni: pluginIni(e2e.redis.port, { held: 'retry = 1s' }),
      config: { 'outbound.ini': RETRYING_OUTBOUND },
    })

  // The account queues mail while the sink answers 451 (Haraka keeps it, retrying every 5 s),
  // then goes over its limit. Once the retries find the account disabled they are held. The
  // sink then accepts again. Returns the subjects of the queued messages.
  async function queueThenHold(srv: HarakaInstance, acct: string): Promise<string[]> {
    e2e.sink.refuse(451)
    const queued = await trip(srv, acct, { tag: 'held' })
    await waitUntil(async () => (await listedHeld(srv, acct)) === queued.length, {
      timeoutMs: 20000,
      intervalMs: 250,
      message: () =>
        `held count of ${acct} in hijack-guard list did not reach ${queued.length}\n${tail(srv.log(), 30)}`,
    })
    assert.ok(e2e.sink.refused >= queued.length, `the sink refused the first attempts (${e2e.sink.refused})`)
    assert.equal(bySubject(e2e.sink, `held ${acct}`).length, 0)
    e2e.sink.accept()
    // the alert was refused too; it goes out at its next retry, which proves the sink is back
    await waitSubjects(e2e.sink, alertPrefix(acct), 1, { timeoutMs: 15000 })
    return queued
  }

  it('held mail: what a disabled account queued stays in the queue while the sink accepts again (list shows it held); enable releases it to the sink at the next retry', async function () {
    const acct = 'queued@test.example'
    const srv = await heldRetrying(acct)
    const queued = await queueThenHold(srv, acct)

    // several [held] retry intervals with the sink accepting: each retry holds it again
    const mark = srv.logMark()
    await srv.waitForLog(/holding queued mail of disabled account "queued@test\.example"; next look in 1 s/, {
      count: 3 * queued.length,
      since: mark,
      timeoutMs: 15000,
    })
    assert.equal(bySubject(e2e.sink, `held ${acct}`).length, 0, 'none of the held messages reached the sink')
    assert.equal(queueFiles(srv).length, queued.length, `queue: ${JSON.stringify(queueFiles(srv))}`)
    const list = await cliOk(srv, ['list'])
    assert.match(list.stdout, /^queued@test\.example$/m)
    assert.match(list.stdout, /^ {2}held mail 3; incident /m)
    assert.equal((await hgShow(srv, acct)).held, 3)

    const enabled = await cliOk(srv, ['enable', acct])
    assert.match(
      enabled.stdout,
      /3 held messages go out within seconds: .* \(at the latest at the next delivery attempt, within 1 second\)/,
    )
    const delivered = await waitSubjects(e2e.sink, `held ${acct}`, queued.length, { timeoutMs: 10000 })
    await waitQueueEmpty(srv, QUEUE_WAIT)
    assert.deepEqual(
      delivered.map((m) => m.subject).sort(),
      [...queued].sort(),
      'each held message delivered exactly once',
    )
    assert.equal(bySubject(e2e.sink, `held ${acct}`).length, queued.length)
    assert.equal(
      countMatches(srv.log(), /releasing held mail of "queued@test\.example": the account is enabled/),
      queued.length,
    )
    assert.equal((await hgShow(srv, acct)).held, 0, 'nothing held any more')
    assert.deepEqual(bounces(e2e.sink), [])
  })

  it('drop-held: the held messages never reach the sink, the queue empties without a bounce to anyone, and enabling afterwards does not bring them back', async function () {
    const acct = 'dropped@test.example'
    const srv = await heldRetrying(acct)
    const queued = await queueThenHold(srv, acct)
    const mark = srv.logMark()

    const dropped = await cliOk(srv, ['drop-held', acct])
    assert.match(dropped.stdout, /^dropped@test\.example: 3 held messages .* without bounces$/m)
    await waitQueueEmpty(srv, QUEUE_WAIT)
    await srv.waitForLog(/discarded queued mail without a bounce: dropped by an operator/, {
      count: queued.length,
      since: mark,
      timeoutMs: 5000,
    })
    // the bounce hook said no: Haraka neither queued nor sent a bounce
    assert.doesNotMatch(srv.log().slice(mark), /\[outbound\] Sending email via params|Double bounce/)
    assert.equal((await hgShow(srv, acct)).held, 0)

    // enabled again: the dropped messages are gone for good, new mail flows
    await cliOk(srv, ['enable', acct])
    assert250(
      await sendOne({ port: srv.port, user: acct, pass: PW, from: acct, to: [OUT], subject: 'after drop-held' }),
      'new mail after the enable',
    )
    await waitSubjects(e2e.sink, 'after drop-held', 1)
    await waitQueueEmpty(srv, QUEUE_WAIT)
    assert.equal(bySubject(e2e.sink, `held ${acct}`).length, 0, 'no dropped message reached the sink')
    assert.deepEqual(bounces(e2e.sink), [], 'no bounce reached the sink')
    assert.deepEqual(
      e2e.sink.messages.filter((m) => m.to.includes(acct)),
      [],
      'nothing was sent to the account',
    )
    const [entry] = (await hgAudit(srv, [acct, '--limit', '2'])).filter((e) => e.action === 'drop-held')
    assert.ok(entry, 'a drop-held entry among the last two audit entries')
    assert.deepEqual([entry.actor, entry.how, entry.reason], [ACTOR, 'cli', '3 held'])
  })

  // Held mail is released by what the store says, not by anything kept in memory: after a
  // Haraka restart the enabled account's messages go out and are no longer counted as held.
  it('held mail across a Haraka restart: enabled while Haraka is down, the messages go out at startup and are no longer counted as held', async function () {
    const acct = 'restarted@test.example'
    const srv = await heldRetrying(acct)
    const queued = await queueThenHold(srv, acct)
    await srv.stop()
    assert.equal(
      queueFiles(srv).length,
      queued.length,
      `the held messages stay in the queue directory: ${JSON.stringify(queueFiles(srv))}`,
    )
    const enabled = await cliOk(srv, ['enable', acct])
    assert.match(enabled.stdout, /3 held messages go out/)
    await srv.start()
    await waitSubjects(e2e.sink, `held ${acct}`, queued.length, { timeoutMs: 15000 })
    await waitQueueEmpty(srv, QUEUE_WAIT)
    assert.equal(bySubject(e2e.sink, `held ${acct}`).length, queued.length, 'each delivered once')
    const shown = await hgShow(srv, acct)
    assert.equal(shown.state, 'active')
    assert.equal(
      shown.held,
      0,
      `show --json still counts ${shown.held} held messages of ${acct} after all of them were delivered`,
    )
  })

  // -------------------------------------------------------------------------------------------
  // d. an incident with the CLI alone

  it('a postmaster runs an incident with the CLI alone: list shows the account with its limit and counts, show the evidence, enable lets it send again', async function () {
    const acct = 'incident@test.example'
    const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(e2e.redis.port) })
    const empty = await cliOk(srv, ['list'])
    assert.equal(empty.stdout.trim().split('\n').pop(), '0 disabled accounts')

    await trip(srv, acct, { helo: 'laptop-9.incident.example', tag: 'spam' })
    assert535(await tryAuth({ port: srv.port, user: acct, pass: PW }), 'AUTH of the tripped account', { text: null })

    const list = await cliOk(srv, ['list'])
    assert.match(list.stdout, /^1 disabled account$/m)
    assert.match(list.stdout, /^incident@test\.example$/m)
    assert.match(
      list.stdout,
      /^ {2}disabled \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by limit: reached 3 messages in 1 minute$/m,
    )
    assert.match(
      list.stdout,
      /^ {2}counts messages 3\/3 in 1 minute, recipients 3\/100 in 1 hour, networks 1\/5 in 6 hours, networks 1\/9 in 1 day$/m,
    )
    const row = at(await hgList(srv), 0, 'list --json')
    assert.equal(row.account, acct)
    assert.equal(row.limit, 'messages 3/1m')
    assert.deepEqual(
      row.counts.map((c) => [c.kind, c.count, c.max]),
      [
        ['messages', 3, 3],
        ['recipients', 3, 100],
        ['networks', 1, 5],
        ['networks', 1, 9],
      ],
    )

    const shown = await cliOk(srv, ['show', acct])
    const out = shown.stdout
    assert.match(out, /^State +disabled since .* by limit: reached 3 messages in 1 minute$/m)
    assert.match(out, /^Evidence from its last 4 messages:$/m)
    assert.match(out, /Source IPs: +127\.0\.0\.1$/m)
    assert.match(out, /HELO names: +laptop-9\.incident\.example$/m)
    for (const d of ['d1.outside.example', 'd2.outside.example', 'd3.outside.example'])
      assert.ok(out.includes(d), `recipient domain ${d}:\n${out}`)
    for (const i of [1, 2, 3]) assert.ok(out.includes(`"spam incident@test.example ${i}"`), `subject ${i}:\n${out}`)
    assert.match(out, /^Recent audit:\n.* disable +"incident@test\.example" by limit via limit/m)
    const js = await hgShow(srv, acct)
    assert.equal(js.state, 'disabled')
    assert.ok(
      js.evidence.some((e) => e.helo === 'laptop-9.incident.example' && e.ip === '127.0.0.1'),
      JSON.stringify(js.evidence),
    )

    const enabled = await cliOk(srv, ['enable', acct])
    assert.match(enabled.stdout, /^incident@test\.example enabled: flag and counters cleared\.$/m)
    assert.equal((await cliOk(srv, ['list'])).stdout.trim().split('\n').pop(), '0 disabled accounts')
    // it sends again, with fresh counters: three messages are fine
    const s = await openSession({ port: srv.port, user: acct, pass: PW })
    for (let i = 1; i <= 3; i++)
      assert250(await s.send({ from: acct, to: [OUT], subject: `after enable ${i}` }), `message ${i} after the enable`)
    await s.close()
    await waitSubjects(e2e.sink, 'after enable ', 3)
    assert.equal((await hgShow(srv, acct)).state, 'active')
  })

  // -------------------------------------------------------------------------------------------
  // the memory store: the CLI and a running Haraka share the state file

  it('store = memory: the CLI enables and disables accounts of a running Haraka through DIR/hijack-guard.state.json', async function () {
    const acct = 'memory@test.example'
    const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(e2e.redis.port, { store: 'memory' }) })
    await trip(srv, acct)
    assert535(await tryAuth({ port: srv.port, user: acct, pass: PW }), 'tripped', { text: null })
    await waitAudit(srv, acct, (e) => e.action === 'disable' && e.actor === 'limit', 'the automatic disable')
    const row = at(await hgList(srv), 0, 'list --json')
    assert.equal(row.account, acct)
    assert.equal(row.limit, 'messages 3/1m')
    const shown = await cliOk(srv, ['show', acct])
    assert.match(shown.stdout, /live counts are kept inside the Haraka process with store = memory/)
    assert.ok(fs.existsSync(path.join(srv.dir, 'hijack-guard.state.json')))

    await cliOk(srv, ['enable', 'MEMORY@test.example'])
    const s = await openSession({ port: srv.port, user: acct, pass: PW })
    for (let i = 1; i <= 3; i++)
      assert250(
        await s.send({ from: acct, to: [OUT], subject: `mem after enable ${i}` }),
        `message ${i} after the enable`,
      )
    await s.close()
    await waitSubjects(e2e.sink, 'mem after enable ', 3)

    await cliOk(srv, ['disable', acct, '--reason', 'by hand'])
    assert535(await tryAuth({ port: srv.port, user: acct, pass: PW }), 'disabled by the CLI', { text: null })
    const entries = await hgAudit(srv, [acct])
    assert.deepEqual(
      entries.map((e) => [e.action, e.actor]),
      [
        ['disable', ACTOR],
        ['enable', ACTOR],
        ['disable', 'limit'],
      ],
    )
  })
})
