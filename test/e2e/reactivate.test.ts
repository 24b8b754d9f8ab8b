// End-to-end: the postmaster alert and reactivation by reply, with the real parts (a Haraka
// 3.3.4 process with the packed plugin installed by npm, redis-server, a nodemailer client
// speaking AUTH PLAIN over loopback, and a loopback SMTP sink as the outside world, where
// every outbound message, the alerts and the notices included, arrives). See
// test/e2e/README.md.

import assert from 'node:assert/strict'
import * as childProcess from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  escapeRegExp,
  openSession,
  sendOne,
  startRedis,
  tmpDir,
  tryAuth,
  waitUntil,
  type HarakaInstance,
  type RedisServer,
  type SendResult,
  type Sink,
  type SinkMessage,
} from '../../support'
import {
  AUDIT_KEY,
  NOT_ACCEPTED,
  SEND_EMAIL,
  alertPrefix,
  assert250,
  assert535,
  bySubject,
  countMatches,
  countsKey,
  disabledKey,
  pluginIni,
  preauthName,
  randomHex,
  redisNowMs,
  reenabledSubject,
  replyRaw,
  sendAndSettle,
  waitQueueEmpty,
  waitSubjects,
  type SettledResult,
  e2eWorld,
  headerOf,
  at,
  type AuditEntry,
  replyToAlert,
} from './helpers'

const PW = 'pw'
const ME = 'mx.test.example' // config/me of every instance (the support/ default)
const REPLY_BASE = `hijack-guard@${ME}` // [alert] reply_address default: hijack-guard@<me>
const ADMIN = 'postmaster@test.example' // a flat_file login listed in [alert] to
const ADMIN2 = 'security@example.net' // the second [alert] to address (no login)
const OTHER = 'eve@test.example' // a login that is not an admin
const OUT = 'bob@outside.example'

// the sink messages that went to the reply address (with any +detail): must never happen
const deliveredToReplyAddress = (sink: Sink): SinkMessage[] =>
  sink.messages.filter((m) => m.to.some((a) => /^hijack-guard(\+[^@]*)?@/i.test(a)))

/** The first group of `regex` in `text`; fails the test when it does not match. */
function capture(regex: RegExp, text: string, what: string): string {
  const value = regex.exec(text)?.[1]
  assert.ok(value !== undefined, `${what}: no ${String(regex)} in:\n${text}`)
  return value
}

// The token of an alert, from its Reply-To
function tokenOf(alert: SinkMessage): string {
  const replyTo = alert.headers['reply-to']
  const m = /^hijack-guard\+hg-([0-9a-f]{32})@mx\.test\.example$/.exec(String(replyTo))
  assert.ok(m?.[1], `Reply-To of the alert: ${JSON.stringify(replyTo)}`)
  return m[1]
}

// "  Label:   a, b," + aligned continuation lines, from the evidence paragraph, as one string
function evidenceList(body: string, label: string): string {
  const lines = body.split(/\r?\n/)
  const i = lines.findIndex((l) => l.startsWith(`  ${label}`))
  assert.ok(i !== -1, `no "${label}" line in the alert:\n${body}`)
  const parts = [
    at(lines, i, label)
      .slice(2 + label.length)
      .trim(),
  ]
  for (let j = i + 1; j < lines.length && /^ {21}\S/.test(lines[j] ?? ''); j++) parts.push(at(lines, j, label).trim())
  return parts.join(' ')
}

/** The audit list entries start..stop (LRANGE, newest first). */
async function auditRange(redis: RedisServer, start: number, stop: number): Promise<AuditEntry[]> {
  const raw = await redis.command(['LRANGE', AUDIT_KEY, start, stop])
  assert.ok(Array.isArray(raw), `LRANGE ${AUDIT_KEY}: ${JSON.stringify(raw)}`)
  return (raw as unknown[]).map((j) => JSON.parse(String(j)) as AuditEntry)
}

interface Trip {
  /** The alert copy for ADMIN, or the first. */
  readonly alert: SinkMessage
  readonly alerts: SinkMessage[]
  readonly token: string
  readonly sent: { from: string; to: string[]; subject: string }[]
}

describe('e2e: alert and reactivation by reply', function () {
  this.timeout(60000)

  // every instance: an admin's and another user's login, test_preauth before the auth plugin; started
  const e2e = e2eWorld({ users: { [ADMIN]: PW, [OTHER]: PW }, beforePlugins: ['test_preauth'] })
  const { haraka } = e2e

  // Sends max messages from account (all 250), then one more (550 5.7.1, the account is
  // disabled), and waits for the alert (one sink message per [alert] to domain). Returns the
  // alert (the copy for ADMIN, or the first), its token and what was sent.
  async function trip(
    srv: HarakaInstance,
    account: string,
    {
      max = 3,
      helo = 'client.test.example',
      tag = account,
      alertCopies = 1,
    }: { max?: number; helo?: string; tag?: string; alertCopies?: number } = {},
  ): Promise<Trip> {
    const before = bySubject(e2e.sink, alertPrefix(account)).length
    const deliveredBefore = bySubject(e2e.sink, `${tag} message `).length
    const s = await openSession({ port: srv.port, user: account, pass: PW, name: helo })
    const sent: Trip['sent'] = []
    for (let i = 1; i <= max + 1; i++) {
      const msg = {
        from: account,
        to: [`r${i}@d${i}.${tag.replace(/@.*/, '')}.example`],
        subject: `${tag} message ${i}`,
      }
      // the accepted ones leave before the disable, so none of them is held (lib/hooks/held.ts)
      if (i === max + 1) await waitSubjects(e2e.sink, `${tag} message `, deliveredBefore + max)
      const r = await s.send(msg)
      if (i <= max) {
        assert250(r, `${account} message ${i}`)
      } else {
        assert.equal(r.code, 550, `${account} message ${i} goes over: ${JSON.stringify(r)}`)
        assert.match(r.response, /^550 5\.7\.1 .*reached its limit/)
      }
      sent.push(msg)
    }
    await s.close()
    const alerts = (await waitSubjects(e2e.sink, alertPrefix(account), before + alertCopies)).slice(before)
    const alert = alerts.find((m) => m.to.includes(ADMIN)) ?? at(alerts, 0, `the alert for ${account}`)
    return { alert, alerts, token: tokenOf(alert), sent }
  }

  async function assertStillDisabled(srv: HarakaInstance, account: string, what: string): Promise<void> {
    assert.equal(
      await e2e.redis.command(['EXISTS', disabledKey(account)]),
      1,
      `${what}: the disable record is still there`,
    )
    assert535(await tryAuth({ port: srv.port, user: account, pass: PW }), `${what}: AUTH of ${account}`)
  }

  // a reply that was consumed: 250 from hijack-guard (not "Message Queued"), nothing queued but
  // `notices` notices, and nothing ever delivered to the reply address
  function assertConsumed(r: SettledResult, notices: number, what: string): void {
    assert250(r, what)
    assert.match(r.response, /Reply received by hijack-guard/, `${what}: consumed, not queued: ${r.response}`)
    assert.doesNotMatch(r.response, /Message Queued/, what)
    assert.equal(r.sendEmails, notices, `${what}: mails the plugin queued while handling the reply (notices)\n${r.log}`)
    assert.deepEqual(deliveredToReplyAddress(e2e.sink), [], `${what}: nothing delivered to the reply address`)
  }

  // -------------------------------------------------------------------------------------------
  // 1

  it("the alert goes to both [alert] to addresses with the evidence and the token; the admin's reply re-enables the account, confirmed by mail, counters reset", async function () {
    const alice = 'alice@test.example'
    const srv = await haraka({
      users: { [alice]: PW },
      pluginIni: pluginIni(e2e.redis.port, { to: `${ADMIN}, ${ADMIN2}` }),
    })
    const t0 = Date.now()
    const helo = 'laptop-7.alice.example'
    const s = await openSession({ port: srv.port, user: alice, pass: PW, name: helo })
    const sent = [
      { to: ['a1@first.example', 'a2@second.example'], subject: 's1 invoice 1' },
      { to: ['a3@third.example'], subject: 's1 invoice 2' },
      { to: ['a4@first.example'], subject: 's1 payment due' },
    ]
    for (const m of sent) assert250(await s.send({ from: alice, ...m }), m.subject)
    await waitSubjects(e2e.sink, 's1 invoice', 3) // delivered before the disable: nothing held
    await waitSubjects(e2e.sink, 's1 payment due', 1)
    const over = await s.send({ from: alice, to: ['a5@fourth.example'], subject: 's1 over' })
    assert.equal(over.code, 550, JSON.stringify(over))
    assert.match(over.response, /^550 5\.7\.1 Account alice@test\.example reached its limit of 3 messages in 1 minute/)
    await s.close()

    // one copy for each [alert] to address, one for each domain
    const alerts = await waitSubjects(e2e.sink, alertPrefix(alice), 2)
    await waitQueueEmpty(srv)
    const t1 = Date.now()
    assert.equal(bySubject(e2e.sink, alertPrefix(alice)).length, 2, 'exactly two alert deliveries')
    assert.deepEqual(
      alerts.flatMap((m) => m.to).sort(),
      [ADMIN, ADMIN2].sort(),
      'each [alert] to address got the alert exactly once',
    )
    assert.equal(countMatches(srv.log(), SEND_EMAIL), 1, 'one alert queued (one send_email call for both addresses)')

    const [alert0, alert1] = alerts
    assert.ok(alert0 && alert1, 'two alerts')
    const token = tokenOf(alert0)
    for (const alert of alerts) {
      const hd = alert.headers
      assert.equal(alert.from, REPLY_BASE, 'envelope sender of the alert')
      assert.match(String(hd['content-type']), /^text\/plain\b/, 'plain text')
      assert.doesNotMatch(alert.body, /<html|<p>|<br/i)
      assert.equal(hd['auto-submitted'], 'auto-generated')
      assert.equal(hd['reply-to'], `hijack-guard+hg-${token}@${ME}`)
      assert.ok(
        String(hd['message-id']).includes(`hg-${token}`),
        `Message-ID ${String(hd['message-id'])} carries the token`,
      )
      assert.match(headerOf(alert, 'message-id'), /^<[^<>\s]+@[^<>\s]+>$/)
      assert.equal(alert.subject, `Account ${alice} disabled: reached 3 messages in 1 minute [hg-${token}]`)
      assert.match(headerOf(alert, 'from'), new RegExp(`<${escapeRegExp(REPLY_BASE)}>`))
      for (const a of [ADMIN, ADMIN2]) assert.ok(String(hd.to).includes(a), `To: header names ${a}`)

      const b = alert.body
      // the account, the limit, the counts per window, when
      assert.match(
        b,
        /The account alice@test\.example was disabled at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\r?\nbecause it reached 3 messages in 1 minute\./,
      )
      const when = capture(/disabled at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC/, b, 'the disable time')
      const disabledAt = Date.parse(when.replace(' ', 'T') + 'Z')
      assert.ok(
        disabledAt >= Math.floor(t0 / 1000) * 1000 - 1000 && disabledAt <= t1 + 1000,
        `disable time ${new Date(disabledAt).toISOString()} within the test (${new Date(t0).toISOString()} .. ${new Date(t1).toISOString()})`,
      )
      assert.match(b, /^ {2}messages +3 of 3 in 1 minute +<- limit reached$/m)
      assert.match(b, /^ {2}recipients +4 of 100 in 1 hour$/m)
      // the evidence: what this client actually used
      assert.equal(evidenceList(b, 'Source IPs:'), '127.0.0.1')
      assert.equal(evidenceList(b, 'HELO names:'), helo)
      const domains = evidenceList(b, 'Recipient domains:').split(/,\s*/)
      for (const d of ['first.example', 'second.example', 'third.example'])
        assert.ok(domains.includes(d), `recipient domain ${d} in ${JSON.stringify(domains)}`)
      for (const d of domains)
        assert.ok(
          ['first.example', 'second.example', 'third.example', 'fourth.example'].includes(d),
          `unexpected domain ${d}`,
        )
      const subjectsText = evidenceList(b, 'Subjects:')
      const quotedSubjects = subjectsText.match(/"(?:[^"\\]|\\.)*"/g)
      assert.ok(quotedSubjects, `quoted subjects in ${JSON.stringify(subjectsText)}`)
      const subjects = quotedSubjects.map((x) => JSON.parse(x) as unknown)
      for (const m of sent)
        assert.ok(subjects.includes(m.subject), `subject ${m.subject} in ${JSON.stringify(subjects)}`)
      for (const x of subjects)
        assert.ok(
          typeof x === 'string' && [...sent.map((m) => m.subject), 's1 over'].includes(x),
          `unexpected subject ${JSON.stringify(x)}`,
        )
      // what to do first, how to re-enable, and that doing nothing keeps it disabled
      assert.match(b, /change it/)
      assert.match(b, /password/)
      assert.match(b, /reply to this message/)
      assert.ok(
        b.includes(`${srv.dir}/node_modules/.bin/hijack-guard -c ${srv.dir} enable ${alice}`),
        `the CLI command with this Haraka dir:\n${b}`,
      )
      assert.match(b, /If you do nothing, the account stays disabled\./)
      assert.ok(b.indexOf('change it') < b.indexOf('reply to this message'), 'changing the password comes first')
    }
    assert.equal(alert0.body, alert1.body, 'both addresses got the same text')
    assert.equal(alert0.headers['message-id'], alert1.headers['message-id'])

    // still disabled, of course
    await assertStillDisabled(srv, alice, 'after the alert')

    // the admin replies from a mail client, logged in, to the Reply-To address
    const alert = alerts.find((m) => m.to.includes(ADMIN))
    assert.ok(alert, `an alert went to ${ADMIN}`)
    const replyTo = headerOf(alert, 'reply-to')
    const raw = replyRaw({ from: ADMIN, to: replyTo, alert })
    const r = await sendAndSettle(srv, { user: ADMIN, pass: PW, from: ADMIN, to: [replyTo], raw })
    assertConsumed(r, 1, "the admin's reply")
    assert.match(r.log, /ACCOUNT RE-ENABLED "alice@test\.example" by reply from postmaster@test\.example/)

    // the confirmation, to the reply's envelope sender
    const confirm = at(await waitSubjects(e2e.sink, reenabledSubject(alice), 1), 0, 'the confirmation')
    assert.deepEqual(confirm.to, [ADMIN])
    assert.equal(confirm.from, REPLY_BASE)
    assert.match(headerOf(confirm, 'auto-submitted'), /^auto-/)
    assert.match(confirm.body, /alice@test\.example works again/)
    assert.equal(
      confirm.headers['in-reply-to'],
      capture(/^Message-ID: (.*)$/m, raw, "the reply's Message-ID"),
      'the confirmation threads under the reply',
    )
    await waitQueueEmpty(srv)
    assert.deepEqual(deliveredToReplyAddress(e2e.sink), [], 'the reply itself never reached the sink')
    assert.equal(bySubject(e2e.sink, 'Re: ').length, 0, "no message with the reply's subject reached the sink")
    assert.equal(await e2e.redis.command(['EXISTS', countsKey(ADMIN)]), 0, 'the reply was not counted for the admin')
    const audit = await auditRange(e2e.redis, 0, -1)
    assert.ok(
      audit.some((e) => e.account === alice && e.action === 'enable' && e.actor === ADMIN && e.how === 'reply'),
      `audit: ${JSON.stringify(audit)}`,
    )

    // the account works again, with fresh counters: 3 more, then the 4th is refused
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(alice)]), 0)
    const s2 = await openSession({ port: srv.port, user: alice, pass: PW })
    assert.equal(s2.auth?.code, 235)
    for (let i = 1; i <= 3; i++)
      assert250(await s2.send({ from: alice, to: [OUT], subject: `s1 after ${i}` }), `message ${i} after the reply`)
    await waitSubjects(e2e.sink, 's1 after ', 3)
    const again = await s2.send({ from: alice, to: [OUT], subject: 's1 after 4' })
    assert.equal(again.code, 550, JSON.stringify(again))
    assert.match(again.response, /^550 5\.7\.1 .*reached its limit of 3 messages/)
    await s2.close()
    assert.equal((await waitSubjects(e2e.sink, 's1 after ', 3)).length, 3)
    // a new incident: a new alert with a new token
    const second = await waitSubjects(e2e.sink, alertPrefix(alice), 4)
    assert.notEqual(tokenOf(at(second, 3, 'the alerts')), token, 'a new incident has a new token')
    await waitQueueEmpty(srv)
    assert.equal(bySubject(e2e.sink, 's1 after ').length, 3)
  })

  // -------------------------------------------------------------------------------------------
  // 2: replies that must not re-enable

  describe('replies that must not re-enable the account', function () {
    it('an unauthenticated reply with the right token (policy = admin): 250, consumed, no notice, still disabled; the token still works for the admin afterwards', async function () {
      const acct = 'u1@test.example'
      const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(e2e.redis.port) })
      const { alert } = await trip(srv, acct)
      const to = headerOf(alert, 'reply-to')

      // claims to be the admin in the envelope and in From: proves nothing
      const r = await sendAndSettle(srv, { from: ADMIN, to: [to], raw: replyRaw({ from: ADMIN, to, alert }) })
      assertConsumed(r, 0, 'unauthenticated reply with the right token')
      assert.match(
        r.log,
        /reply to alert not accepted from unauthenticated:postmaster@test\.example for "u1@test\.example": the reply was not sent by an authenticated session/,
      )
      assert.doesNotMatch(r.log, /ACCOUNT RE-ENABLED/)
      // any +detail is accepted without AUTH, and consumed the same way
      const r2 = await sendAndSettle(srv, {
        from: 'someone@elsewhere.example',
        to: [`hijack-guard+whatever@${ME}`],
        subject: 'hello',
        body: 'hi',
      })
      assertConsumed(r2, 0, 'unauthenticated mail to hijack-guard+whatever')
      await assertStillDisabled(srv, acct, 'after the unauthenticated replies')

      // the refused attempt did not spend the token
      const ok = await replyToAlert(srv, alert, { user: ADMIN, pass: PW })
      assertConsumed(ok, 1, "the admin's reply after the refused one")
      assert.match(ok.log, /ACCOUNT RE-ENABLED "u1@test\.example"/)
      await waitSubjects(e2e.sink, reenabledSubject(acct), 1, { rcpt: ADMIN })
      assert.equal((await tryAuth({ port: srv.port, user: acct, pass: PW })).code, 235)
      await waitQueueEmpty(srv)
      assert.equal(bySubject(e2e.sink, NOT_ACCEPTED).length, 0, 'no notice went anywhere (no backscatter)')
      assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
      assert.equal(e2e.sink.messages.filter((m) => m.to.includes('someone@elsewhere.example')).length, 0)
    })

    it('a reply from a login that is not an admin: 250, consumed, not counted, no notice, still disabled', async function () {
      const acct = 'u2@test.example'
      const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(e2e.redis.port) })
      const { alert } = await trip(srv, acct)
      const r = await replyToAlert(srv, alert, { user: OTHER, pass: PW })
      assertConsumed(r, 0, 'non-admin reply')
      assert.match(
        r.log,
        /reply to alert not accepted from eve@test\.example for "u2@test\.example": login "eve@test\.example" is not in \[reactivate\] admins/,
      )
      assert.equal(
        await e2e.redis.command(['EXISTS', countsKey(OTHER)]),
        0,
        'the reply was not counted for the non-admin',
      )
      await assertStillDisabled(srv, acct, 'after the non-admin reply')
      await waitQueueEmpty(srv)
      assert.equal(bySubject(e2e.sink, NOT_ACCEPTED).length, 0)
      assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
    })

    it('the disabled account itself, even when listed in [reactivate] admins, cannot reply: AUTH 535 5.7.8, and a session logged in another way is refused at MAIL FROM', async function () {
      const acct = 'selfadmin@test.example'
      const srv = await haraka({
        users: { [acct]: PW },
        pluginIni: pluginIni(e2e.redis.port, { reactivate: `admins = ${ADMIN}, ${acct}` }),
      })
      const { alert } = await trip(srv, acct)
      const to = headerOf(alert, 'reply-to')
      const mark = srv.logMark()
      assert535(await tryAuth({ port: srv.port, user: acct, pass: PW }), 'AUTH of the disabled account')
      // a session of an auth path the AUTH gate cannot wrap: the reply never gets past MAIL FROM
      const r = await sendOne({
        port: srv.port,
        name: preauthName(acct),
        from: acct,
        to: [to],
        raw: replyRaw({ from: acct, to, alert }),
      })
      assert.equal(r.stage, 'mail', JSON.stringify(r))
      assert.equal(r.code, 550)
      assert.match(r.response, /^550 5\.7\.1 .*is disabled/)
      assert.doesNotMatch(srv.log().slice(mark), /ACCOUNT RE-ENABLED|Reply received/)
      assert.equal(await e2e.redis.command(['EXISTS', disabledKey(acct)]), 1)
      await waitQueueEmpty(srv)
      assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
    })

    it('automatic replies from an authenticated admin (Auto-Submitted: auto-replied, X-Autoreply, Precedence: auto_reply|bulk|junk, null sender): consumed, no notice, still disabled', async function () {
      const acct = 'u3@test.example'
      const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(e2e.redis.port) })
      const { alert } = await trip(srv, acct)
      const to = headerOf(alert, 'reply-to')
      const cases: { what: string; from?: string; headers: Record<string, string>; reason: RegExp }[] = [
        {
          what: 'Auto-Submitted: auto-replied',
          headers: { 'Auto-Submitted': 'auto-replied' },
          reason: /automatic reply \(Auto-Submitted: auto-replied\)/,
        },
        {
          what: 'X-Autoreply: yes',
          headers: { 'X-Autoreply': 'yes' },
          reason: /automatic reply \(X-Autoreply header\)/,
        },
        {
          what: 'Precedence: auto_reply',
          headers: { Precedence: 'auto_reply' },
          reason: /automatic reply \(Precedence: auto_reply\)/,
        },
        { what: 'Precedence: bulk', headers: { Precedence: 'bulk' }, reason: /automatic reply \(Precedence: bulk\)/ },
        { what: 'Precedence: junk', headers: { Precedence: 'junk' }, reason: /automatic reply \(Precedence: junk\)/ },
        { what: 'null sender', from: '', headers: {}, reason: /automatic reply \(null sender\)/ },
      ]
      for (const c of cases) {
        const from = c.from ?? ADMIN
        const r = await sendAndSettle(srv, {
          user: ADMIN,
          pass: PW,
          from,
          to: [to],
          raw: replyRaw({ from: ADMIN, to, alert, headers: c.headers }),
        })
        assertConsumed(r, 0, c.what)
        assert.match(r.log, c.reason, c.what)
        assert.equal(await e2e.redis.command(['EXISTS', disabledKey(acct)]), 1, `${c.what}: still disabled`)
      }
      await assertStillDisabled(srv, acct, 'after the automatic replies')
      await waitQueueEmpty(srv)
      assert.equal(bySubject(e2e.sink, NOT_ACCEPTED).length, 0, 'automatic replies are never answered')
      assert.equal(bySubject(e2e.sink, reenabledSubject(acct)).length, 0)
      assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
    })

    it('a made-up token, or none, from an authenticated admin: consumed, the admin gets a "not accepted" notice, still disabled', async function () {
      const acct = 'u4@test.example'
      const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(e2e.redis.port) })
      const { token } = await trip(srv, acct)
      let fake = randomHex()
      while (fake === token) fake = randomHex()

      const forged = `hijack-guard+hg-${fake}@${ME}`
      const r1 = await sendAndSettle(srv, {
        user: ADMIN,
        pass: PW,
        from: ADMIN,
        to: [forged],
        raw: replyRaw({
          from: ADMIN,
          to: forged,
          subject: `Re: Account ${acct} disabled [hg-${fake}]`,
          inReplyTo: `<hg-${fake}.00000000@${ME}>`,
          references: '',
        }),
      })
      assertConsumed(r1, 1, 'made-up token')
      assert.match(r1.log, /reply to alert not accepted from postmaster@test\.example: unknown or expired token/)
      const n1 = at(await waitSubjects(e2e.sink, NOT_ACCEPTED, 1, { rcpt: ADMIN }), 0, 'the notice')
      assert.deepEqual(n1.to, [ADMIN])
      assert.match(n1.body, /unknown or expired token/)
      assert.match(headerOf(n1, 'auto-submitted'), /^auto-/)

      const plain = REPLY_BASE
      const r2 = await sendAndSettle(srv, {
        user: ADMIN,
        pass: PW,
        from: ADMIN,
        to: [plain],
        raw: replyRaw({ from: ADMIN, to: plain, subject: 'Re: your alert', inReplyTo: '', references: '' }),
      })
      assertConsumed(r2, 1, 'no token at all')
      assert.match(r2.log, /no incident token found/)
      const notices = await waitSubjects(e2e.sink, NOT_ACCEPTED, 2, { rcpt: ADMIN })
      assert.match(at(notices, 1, 'the notices').body, /no incident token found/)

      await assertStillDisabled(srv, acct, 'after the forged replies')
      await waitQueueEmpty(srv)
      assert.equal(bySubject(e2e.sink, NOT_ACCEPTED).length, 2)
      assert.equal(bySubject(e2e.sink, reenabledSubject(acct)).length, 0)
      assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
    })

    it('a token is single use: two replies at once with one token re-enable once; after a new incident the old token is refused and the new one works once', async function () {
      const acct = 'u5@test.example'
      const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(e2e.redis.port) })
      const first = await trip(srv, acct, { tag: 'u5a' })
      const to1 = headerOf(first.alert, 'reply-to')
      const replyTo = (to: string, alert: SinkMessage): Promise<SettledResult> =>
        replyToAlert(srv, alert, { user: ADMIN, pass: PW })

      // the same token twice, at the same time
      const mark0 = srv.logMark()
      const both = await Promise.all([1, 2].map(() => replyTo(to1, first.alert)))
      // the two transactions interleave in the log: count their notices together
      for (const r of both) assertConsumed({ ...r, sendEmails: 1 }, 1, 'one of two replies with one token')
      assert.equal(countMatches(srv.log().slice(mark0), SEND_EMAIL), 2, 'one confirmation and one notice queued')
      assert.equal(countMatches(srv.log(), /ACCOUNT RE-ENABLED "u5@test\.example"/), 1, 'exactly one re-enable')
      assert.equal(
        countMatches(
          srv.log(),
          /reply to alert not accepted from postmaster@test\.example for "u5@test\.example": the account is not disabled/,
        ),
        1,
        'the other reply refused',
      )
      await waitSubjects(e2e.sink, reenabledSubject(acct), 1, { rcpt: ADMIN })
      await waitSubjects(e2e.sink, NOT_ACCEPTED, 1, { rcpt: ADMIN })

      // a new incident
      const second = await trip(srv, acct, { tag: 'u5b' })
      assert.notEqual(second.token, first.token)
      const mark = srv.logMark()
      const old = await replyTo(to1, first.alert)
      assertConsumed(old, 1, 'the old token on the new incident')
      assert.match(
        old.log,
        /reply to alert not accepted from postmaster@test\.example for "u5@test\.example": the token is not the one of the current incident/,
      )
      const notices = await waitSubjects(e2e.sink, NOT_ACCEPTED, 2, { rcpt: ADMIN })
      assert.match(at(notices, 1, 'the notices').body, /not the one of the current incident/)
      await assertStillDisabled(srv, acct, 'after the old token')
      assert.doesNotMatch(srv.log().slice(mark), /ACCOUNT RE-ENABLED/)
      const last = at(await auditRange(e2e.redis, 0, 0), 0, 'the newest audit entry')
      assert.equal(last.account, acct)
      assert.equal(last.action, 'reactivate-failed')
      assert.equal(last.actor, ADMIN)
      assert.match(String(last.reason), /not the one of the current incident/)

      // the new token works, once
      const to2 = headerOf(second.alert, 'reply-to')
      const ok = await replyTo(to2, second.alert)
      assertConsumed(ok, 1, 'the new token')
      assert.match(ok.log, /ACCOUNT RE-ENABLED "u5@test\.example"/)
      const again = await replyTo(to2, second.alert)
      assertConsumed(again, 1, 'the new token a second time')
      assert.match(again.log, /the account is not disabled/)
      assert.equal(
        (await tryAuth({ port: srv.port, user: acct, pass: PW })).code,
        235,
        'enabled by the new token, and a second use changed nothing',
      )
      await waitSubjects(e2e.sink, reenabledSubject(acct), 2, { rcpt: ADMIN })
      await waitSubjects(e2e.sink, NOT_ACCEPTED, 3, { rcpt: ADMIN })
      await waitQueueEmpty(srv)
      assert.equal(bySubject(e2e.sink, reenabledSubject(acct)).length, 2)
      assert.equal(bySubject(e2e.sink, NOT_ACCEPTED).length, 3)
      assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
    })

    it("a token is bound to its account: A's token re-enables A only, even in a reply that names B; B stays disabled", async function () {
      const [va, vb] = ['va@test.example', 'vb@test.example']
      const srv = await haraka({ users: { [va]: PW, [vb]: PW }, pluginIni: pluginIni(e2e.redis.port) })
      const A = await trip(srv, va)
      const B = await trip(srv, vb)
      const to = headerOf(A.alert, 'reply-to')
      // a reply to A's address whose subject and text are about B (B's token nowhere)
      const raw = replyRaw({
        from: ADMIN,
        to,
        subject: `Re: Account ${vb} disabled: reached 3 messages in 1 minute`,
        inReplyTo: '',
        references: '',
        text: `Please re-enable ${vb}.`,
      })
      const r = await sendAndSettle(srv, { user: ADMIN, pass: PW, from: ADMIN, to: [to], raw })
      assertConsumed(r, 1, "A's token in a reply about B")
      assert.match(r.log, /ACCOUNT RE-ENABLED "va@test\.example"/)
      assert.doesNotMatch(r.log, /ACCOUNT RE-ENABLED "vb@test\.example"/)
      // A's token again, now with B's alert quoted and B's Message-ID in References: the
      // recipient's token decides, A is not disabled, nothing changes for B
      const again = await sendAndSettle(srv, {
        user: ADMIN,
        pass: PW,
        from: ADMIN,
        to: [to],
        raw: replyRaw({ from: ADMIN, to, alert: B.alert, inReplyTo: '' }),
      })
      assertConsumed(again, 1, "A's token once more, with B's References")
      assert.match(
        again.log,
        /not accepted from postmaster@test\.example for "va@test\.example": the account is not disabled/,
      )
      await assertStillDisabled(srv, vb, "B after replies carrying A's token")
      assert.equal((await tryAuth({ port: srv.port, user: va, pass: PW })).code, 235)
      await waitSubjects(e2e.sink, reenabledSubject(va), 1, { rcpt: ADMIN })
      await waitSubjects(e2e.sink, NOT_ACCEPTED, 1, { rcpt: ADMIN })
      await waitQueueEmpty(srv)
      assert.equal(bySubject(e2e.sink, reenabledSubject(vb)).length, 0)
      assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
    })

    it('an expired token (token_ttl = 2s): consumed, the admin is told it expired, still disabled', async function () {
      const acct = 'u6@test.example'
      const srv = await haraka({
        users: { [acct]: PW },
        pluginIni: pluginIni(e2e.redis.port, { reactivate: 'token_ttl = 2s' }),
      })
      const { alert } = await trip(srv, acct)
      assert.match(alert.body, /Replying works once, until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(2 seconds\)/)
      const expires = Number(await e2e.redis.command(['HGET', disabledKey(acct), 'token_expires']))
      assert.ok(expires > 0, 'the disable record has token_expires')
      await waitUntil(async () => (await redisNowMs(e2e.redis)) > expires + 50, {
        timeoutMs: 5000,
        intervalMs: 50,
        message: 'Redis clock past token_expires',
      })

      const r = await replyToAlert(srv, alert, { user: ADMIN, pass: PW })
      assertConsumed(r, 1, 'reply with the expired token')
      assert.match(r.log, /reply to alert not accepted from postmaster@test\.example.*expired/)
      const n = at(await waitSubjects(e2e.sink, NOT_ACCEPTED, 1, { rcpt: ADMIN }), 0, 'the notice')
      assert.match(n.body, /expired/)
      assert.ok(
        n.body.includes(`${srv.dir}/node_modules/.bin/hijack-guard -c ${srv.dir} enable`),
        'the notice names the command line',
      )
      await assertStillDisabled(srv, acct, 'after the expired token')
      await waitQueueEmpty(srv)
      assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
    })
  })

  // -------------------------------------------------------------------------------------------
  // 3

  it('policy = token: an unauthenticated reply with the right token re-enables the account (an automatic one still does not); the confirmation goes to [alert] to', async function () {
    const acct = 'tok@test.example'
    const stranger = 'someone@elsewhere.example'
    const srv = await haraka({
      users: { [acct]: PW },
      pluginIni: pluginIni(e2e.redis.port, { reactivate: 'policy = token' }),
    })
    const { alert } = await trip(srv, acct)
    const to = headerOf(alert, 'reply-to')

    const auto = await sendAndSettle(srv, {
      from: stranger,
      to: [to],
      raw: replyRaw({ from: stranger, to, alert, headers: { 'Auto-Submitted': 'auto-replied' } }),
    })
    assertConsumed(auto, 0, 'automatic unauthenticated reply')
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(acct)]), 1)

    const r = await sendAndSettle(srv, { from: stranger, to: [to], raw: replyRaw({ from: stranger, to, alert }) })
    assertConsumed(r, 1, 'unauthenticated reply with the token')
    assert.match(
      r.log,
      /ACCOUNT RE-ENABLED "tok@test\.example" by reply from unauthenticated:someone@elsewhere\.example/,
    )
    const confirm = at(await waitSubjects(e2e.sink, reenabledSubject(acct), 1), 0, 'the confirmation')
    assert.deepEqual(confirm.to, [ADMIN])
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(acct)]), 0)
    const s = await openSession({ port: srv.port, user: acct, pass: PW })
    assert.equal(s.auth?.code, 235)
    assert250(await s.send({ from: acct, to: [OUT], subject: 's3 after' }), 'sending after the reply')
    await s.close()
    await waitSubjects(e2e.sink, 's3 after', 1)
    await waitQueueEmpty(srv)
    assert.equal(
      e2e.sink.messages.filter((m) => m.to.includes(stranger)).length,
      0,
      'nothing to the unauthenticated sender',
    )
    assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
  })

  // -------------------------------------------------------------------------------------------
  // 4

  it('the token is found wherever the mail client kept it: +detail only, In-Reply-To only, References only, subject only, upper-cased address', async function () {
    const accts = ['k1@test.example', 'k2@test.example', 'k3@test.example', 'k4@test.example', 'k5@test.example']
    const srv = await haraka({
      users: Object.fromEntries(accts.map((a) => [a, PW])),
      pluginIni: pluginIni(e2e.redis.port),
    })
    const incidents: Trip[] = []
    for (const a of accts) incidents.push(await trip(srv, a))
    const alertOf = (i: number): SinkMessage => at(incidents, i, 'the incidents').alert
    const msgid = (i: number): string => headerOf(alertOf(i), 'message-id')
    const variants: {
      what: string
      to: string
      subject: string
      inReplyTo: string
      references: string
      headers?: Record<string, string>
    }[] = [
      {
        what: '+detail recipient only (subject edited, no In-Reply-To, no References)',
        to: headerOf(alertOf(0), 'reply-to'),
        subject: 'Re: please unlock',
        inReplyTo: '',
        references: '',
      },
      {
        what: 'plain reply address, In-Reply-To only',
        to: REPLY_BASE,
        subject: 'Re: unlock',
        inReplyTo: msgid(1),
        references: '',
      },
      {
        what: 'plain reply address, References only',
        to: REPLY_BASE,
        subject: 'Re: unlock',
        inReplyTo: '',
        references: `<older@client.test.example> ${msgid(2)}`,
      },
      {
        what: 'plain reply address, subject only',
        to: REPLY_BASE,
        subject: `Re: ${String(alertOf(3).subject)}`,
        inReplyTo: '',
        references: '',
      },
      {
        what: 'upper-cased +detail address, Auto-Submitted: no',
        to: headerOf(alertOf(4), 'reply-to').toUpperCase(),
        subject: 'RE: ok',
        inReplyTo: '',
        references: '',
        headers: { 'Auto-Submitted': 'no' },
      },
    ]
    for (const [i, v] of variants.entries()) {
      const acct = at(accts, i, 'the accounts')
      const raw = replyRaw({
        from: ADMIN,
        to: v.to,
        subject: v.subject,
        inReplyTo: v.inReplyTo,
        references: v.references,
        ...(v.headers ? { headers: v.headers } : {}),
        text: 'done, re-enable it',
      })
      const r = await sendAndSettle(srv, { user: ADMIN, pass: PW, from: ADMIN, to: [v.to], raw })
      assertConsumed(r, 1, v.what)
      assert.match(
        r.log,
        new RegExp(`ACCOUNT RE-ENABLED "${escapeRegExp(acct)}" by reply from postmaster@test\\.example`),
        v.what,
      )
      assert.equal(await e2e.redis.command(['EXISTS', disabledKey(acct)]), 0, `${v.what}: enabled`)
      for (const other of accts.slice(i + 1))
        assert.equal(await e2e.redis.command(['EXISTS', disabledKey(other)]), 1, `${v.what}: ${other} still disabled`)
    }
    const auths = await Promise.all(accts.map((a) => tryAuth({ port: srv.port, user: a, pass: PW })))
    for (const [i, a] of auths.entries()) assert.equal(a.code, 235, `${accts[i]}: ${JSON.stringify(a)}`)
    for (const a of accts) await waitSubjects(e2e.sink, reenabledSubject(a), 1, { rcpt: ADMIN })
    await waitQueueEmpty(srv)
    assert.equal(bySubject(e2e.sink, NOT_ACCEPTED).length, 0)
    assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
  })

  // -------------------------------------------------------------------------------------------
  // 5

  it('two Haraka processes on one Redis, parallel sessions of one account on both against messages = 10/1m: 10 accepted in total, exactly one alert', async function () {
    const carol = 'carol@test.example'
    const marker = 'marker@test.example'
    const opts = {
      users: { [carol]: PW, [marker]: PW },
      // No [warn]: this test counts the alert's send_email calls.
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 10/1m\nrecipients = 0', warn: 'at =' }),
    }
    const [a, b] = await Promise.all([haraka(opts), haraka(opts)])
    const run = async (srv: HarakaInstance, n: number): Promise<(SendResult & { subject: string })[]> => {
      const s = await openSession({ port: srv.port, user: carol, pass: PW })
      const rs: (SendResult & { subject: string })[] = []
      for (let i = 1; i <= 5 && !s.closed; i++) {
        const subject = `s5 ${srv.port}.${n}.${i}`
        const r = await s.send({ from: carol, to: [OUT], subject })
        rs.push({ ...r, subject })
        if (r.stage === 'mail') break
      }
      await s.close()
      return rs
    }
    const results = (await Promise.all([a, b].flatMap((srv) => [1, 2, 3, 4].map((n) => run(srv, n))))).flat()
    const accepted = results.filter((r) => r.code === 250)
    assert.equal(accepted.length, 10, `accepted ${accepted.length} of ${results.length}`)
    for (const r of results.filter((x) => x.code !== 250)) {
      assert.equal(r.code, 550, JSON.stringify(r))
      assert.match(r.response, /^550 5\.7\.1 /)
    }
    assert.equal(
      results.filter((r) => /reached its limit of 10 messages/.test(r.response)).length,
      1,
      'one message saw the limit',
    )

    // let both logs catch up (a marker transaction after everything), then count alert sends
    for (const srv of [a, b]) {
      const m = await sendAndSettle(srv, {
        user: marker,
        pass: PW,
        from: marker,
        to: [OUT],
        subject: `s5 marker ${srv.port}`,
      })
      assert250(m, 'marker')
    }
    const flips = [a, b].map((srv) => countMatches(srv.log(), /ACCOUNT DISABLED "carol@test\.example"/))
    assert.deepEqual(flips.slice().sort(), [0, 1], `ACCOUNT DISABLED lines per instance: ${flips.join(',')}`)
    const sends = [a, b].map((srv) => countMatches(srv.log(), SEND_EMAIL))
    const [sendsA = 0, sendsB = 0] = sends
    assert.equal(sendsA + sendsB, 1, `alert sends per instance: ${sends.join(',')}`)
    await waitSubjects(e2e.sink, alertPrefix(carol), 1)
    await waitSubjects(e2e.sink, 's5 marker', 2)
    await Promise.all([waitQueueEmpty(a), waitQueueEmpty(b)])
    assert.equal(bySubject(e2e.sink, alertPrefix(carol)).length, 1, 'exactly one alert')
    const alert = at(bySubject(e2e.sink, alertPrefix(carol)), 0, 'the alert')
    assert.deepEqual(alert.to, [ADMIN])
    // the admin answers through the instance that did NOT send the alert: the store is shared
    const other = sendsA === 1 ? b : a
    const r = await replyToAlert(other, alert, { user: ADMIN, pass: PW })
    assertConsumed(r, 1, 'the reply through the other instance')
    assert.match(r.log, /ACCOUNT RE-ENABLED "carol@test\.example"/)
    const auths = await Promise.all([a, b].map((srv) => tryAuth({ port: srv.port, user: carol, pass: PW })))
    assert.deepEqual(
      auths.map((x) => x.code),
      [235, 235],
      'carol can log in on both instances again',
    )
    await waitSubjects(e2e.sink, reenabledSubject(carol), 1, { rcpt: ADMIN })
    await Promise.all([waitQueueEmpty(a), waitQueueEmpty(b)])
    assert.equal(bySubject(e2e.sink, alertPrefix(carol)).length, 1, 'still exactly one alert')

    const delivered = e2e.sink.messages.filter((m) => /^s5 \d+\.\d\.\d$/.test(m.subject ?? ''))
    assert.equal(delivered.length, 10, 'exactly 10 messages reached the sink')
    assert.deepEqual(
      delivered.map((m) => m.subject).sort(),
      accepted.map((x) => x.subject).sort(),
      'the accepted ones, each once',
    )
    assert.ok(
      accepted.some((x) => x.subject.startsWith(`s5 ${a.port}.`)) ||
        accepted.some((x) => x.subject.startsWith(`s5 ${b.port}.`)),
    )
  })

  // -------------------------------------------------------------------------------------------
  // 6

  it('a reply must travel alone: with another recipient in the transaction the second RCPT gets 452 4.5.3, in either order; nothing is delivered for the reply address', async function () {
    const acct = 'alone@test.example'
    const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(e2e.redis.port) })
    const { alert } = await trip(srv, acct)
    const to = headerOf(alert, 'reply-to')
    const cc = 'colleague@outside.example'

    // another recipient first, then the reply address: the reply address is refused
    const r1 = await sendAndSettle(srv, {
      user: ADMIN,
      pass: PW,
      from: ADMIN,
      to: [cc, to],
      raw: replyRaw({ from: ADMIN, to: [cc, to], alert, subject: 's6 cc first' }),
    })
    assert250(r1, 'the message to the other recipient')
    assert.match(r1.response, /Message Queued/)
    assert.deepEqual(r1.accepted, [cc])
    assert.deepEqual(r1.rejected, [to])
    assert.equal(r1.rejectedErrors?.length, 1)
    assert.equal(r1.rejectedErrors?.[0]?.code, 452)
    assert.match(String(r1.rejectedErrors?.[0]?.response), /^452 4\.5\.3 /)
    assert.equal(r1.sendEmails, 0)
    assert.doesNotMatch(r1.log, /ACCOUNT RE-ENABLED|reply to alert/)
    const delivered = at(await waitSubjects(e2e.sink, 's6 cc first', 1), 0, 's6 cc first')
    assert.deepEqual(delivered.to, [cc])
    assert.equal(
      await e2e.redis.command(['EXISTS', disabledKey(acct)]),
      1,
      'still disabled: the reply never went through',
    )

    // the reply address first, then another recipient: the other one is refused, the reply
    // travels alone and is consumed
    const r2 = await sendAndSettle(srv, {
      user: ADMIN,
      pass: PW,
      from: ADMIN,
      to: [to, cc],
      raw: replyRaw({ from: ADMIN, to: [to, cc], alert, subject: 's6 reply first' }),
    })
    assertConsumed(r2, 1, 'the reply, sent alone after the other recipient was refused')
    assert.deepEqual(r2.accepted, [to])
    assert.deepEqual(r2.rejected, [cc])
    assert.equal(r2.rejectedErrors?.[0]?.code, 452)
    assert.match(String(r2.rejectedErrors?.[0]?.response), /^452 4\.5\.3 /)
    assert.match(r2.log, /ACCOUNT RE-ENABLED "alone@test\.example"/)
    await waitSubjects(e2e.sink, reenabledSubject(acct), 1, { rcpt: ADMIN })
    await waitQueueEmpty(srv)
    assert.equal(bySubject(e2e.sink, 's6 reply first').length, 0, 'the reply reached nobody')
    assert.equal(bySubject(e2e.sink, 's6 cc first').length, 1)
    assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
  })

  // -------------------------------------------------------------------------------------------
  // 7: the store while a reply is handled, and the memory store

  it('Redis frozen while the admin replies: 4xx 4.3.0 (not consumed, not lost, nothing delivered); the same reply once Redis answers re-enables the account', async function () {
    const acct = 'frozen@test.example'
    const own = await startRedis()
    try {
      const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(own.port) })
      const { alert } = await trip(srv, acct)
      const to = headerOf(alert, 'reply-to')
      const raw = replyRaw({ from: ADMIN, to, alert })
      const mark = srv.logMark()
      own.pause()
      let r: SettledResult
      try {
        r = await sendAndSettle(srv, { user: ADMIN, pass: PW, from: ADMIN, to: [to], raw })
      } finally {
        own.resume()
      }
      assert.equal(r.stage, 'data', JSON.stringify(r))
      // a temporary failure: Haraka's queue stage answers 450 to every temporary refusal
      assert.equal(r.code, 450, JSON.stringify(r))
      assert.match(r.response, /^450 4\.3\.0 Reply not processed yet; please try again later/)
      assert.equal(r.sendEmails, 0)
      assert.equal(await own.command(['EXISTS', disabledKey(acct)]), 1, 'still disabled')

      // the client retries later; by then the plugin has seen Redis answer again
      await srv.waitForLog(/answering again after/, { since: mark, timeoutMs: 5000 })
      const again = await sendAndSettle(srv, { user: ADMIN, pass: PW, from: ADMIN, to: [to], raw })
      assertConsumed(again, 1, 'the same reply once Redis answers')
      assert.match(again.log, /ACCOUNT RE-ENABLED "frozen@test\.example"/)
      assert.equal(await own.command(['EXISTS', disabledKey(acct)]), 0)
      await waitSubjects(e2e.sink, reenabledSubject(acct), 1, { rcpt: ADMIN })
      await waitQueueEmpty(srv)
      assert.equal(bySubject(e2e.sink, NOT_ACCEPTED).length, 0, 'the retry was not told "not accepted"')
      assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
    } finally {
      await own.stop()
    }
  })

  // docs/failure-policy.md: a reply to an alert while the store is down is refused for now
  // (450 4.3.0: Haraka's queue stage answers 450 to every temporary refusal), never consumed.
  it('a reply while Redis is down is answered 450 4.3.0 and not consumed', async function () {
    const acct = 'down@test.example'
    const own = await startRedis()
    try {
      const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(own.port) })
      const { alert } = await trip(srv, acct)
      await own.stop()
      const r = await replyToAlert(srv, alert, { user: ADMIN, pass: PW })
      assert.equal(r.stage, 'data', JSON.stringify(r))
      assert.match(r.log, /reply not processed, store unavailable/)
      assert.equal(r.sendEmails, 0)
      assert.match(r.response, /^\d{3} 4\.3\.0 Reply not processed yet/)
      assert.equal(r.code, 450, `answered: ${r.response}`)
      assert.match(r.response, /^450 4\.3\.0 /)
    } finally {
      await own.stop()
    }
  })

  it('store = memory: the token survives a Haraka restart; the reply afterwards re-enables the account', async function () {
    const acct = 'mem@test.example'
    const srv = await haraka({
      users: { [acct]: PW },
      pluginIni: pluginIni(null, { store: 'memory', limits: 'messages = 3/1m\nrecipients = 0' }),
    })
    const { alert } = await trip(srv, acct)
    await waitQueueEmpty(srv)
    await srv.restart()
    assert535(await tryAuth({ port: srv.port, user: acct, pass: PW }), 'disabled after the restart')
    const r = await replyToAlert(srv, alert, { user: ADMIN, pass: PW })
    assertConsumed(r, 1, 'the reply after the restart')
    assert.match(r.log, /ACCOUNT RE-ENABLED "mem@test\.example"/)
    const s = await openSession({ port: srv.port, user: acct, pass: PW })
    for (let i = 1; i <= 3; i++)
      assert250(await s.send({ from: acct, to: [OUT], subject: `s7 mem ${i}` }), `message ${i} after the reply`)
    await waitSubjects(e2e.sink, 's7 mem ', 3)
    const over = await s.send({ from: acct, to: [OUT], subject: 's7 mem 4' })
    assert.equal(over.code, 550, 'counters were reset: the 4th is refused again')
    await s.close()
    await waitSubjects(e2e.sink, reenabledSubject(acct), 1, { rcpt: ADMIN })
    await waitSubjects(e2e.sink, alertPrefix(acct), 2)
    await waitQueueEmpty(srv)
    assert.deepEqual(deliveredToReplyAddress(e2e.sink), [])
  })

  // -------------------------------------------------------------------------------------------
  // the other way to re-enable that the alert names

  it('the re-enable command the alert prints (DIR/node_modules/.bin/hijack-guard -c DIR enable ACCOUNT) works from any directory', async function () {
    const acct = 'cli@test.example'
    const srv = await haraka({ users: { [acct]: PW }, pluginIni: pluginIni(e2e.redis.port) })
    const { alert } = await trip(srv, acct)
    const m = /^ +(\S+) (-c .+)$/m.exec(alert.body)
    assert.ok(m?.[1] && m[2], `the alert names the command:\n${alert.body}`)
    const [, command, args] = m
    // the CLI the package installed into the Haraka directory, named by its full path (a bare
    // `npx hijack-guard` outside that directory would ask the public registry for a package)
    const bin = path.join(srv.dir, 'node_modules', '.bin', 'hijack-guard')
    assert.equal(command, bin)
    assert.equal(args, `-c ${srv.dir} enable ${acct}`)
    const pj = JSON.parse(
      fs.readFileSync(path.join(srv.dir, 'node_modules', 'haraka-plugin-hijack-guard', 'package.json'), 'utf8'),
    ) as Record<string, unknown>
    assert.ok(pj.bin, `the installed package.json declares no "bin" (keys: ${Object.keys(pj).join(', ')})`)
    assert.ok(fs.existsSync(bin), `${bin} does not exist`)
    const out = childProcess.spawnSync('sh', ['-c', `${command} ${args}`], {
      cwd: tmpDir('elsewhere'),
      encoding: 'utf8',
      timeout: 20000,
    })
    assert.equal(out.status, 0, `${command} ${args}: ${out.stdout}${out.stderr}`)
    assert.match(out.stdout, new RegExp(`^store: redis 127\\.0\\.0\\.1:${e2e.redis.port}/0$`, 'm'))
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(acct)]), 0)
    assert.equal((await tryAuth({ port: srv.port, user: acct, pass: PW })).code, 235)
    // a reply arriving after that changes nothing, and the admin is told so
    const r = await replyToAlert(srv, alert, { user: ADMIN, pass: PW })
    assertConsumed(r, 1, 'a reply after the command re-enabled the account')
    assert.match(r.log, /the account is not disabled/)
    const n = at(await waitSubjects(e2e.sink, NOT_ACCEPTED, 1, { rcpt: ADMIN }), 0, 'the notice')
    assert.match(n.body, /not disabled/)
  })

  it('the shipped config/hijack-guard.ini documents the [reactivate] keys (policy, admins, token_ttl) and says that [alert] to receives the alert', async function () {
    const srv = await haraka({ users: {}, pluginIni: pluginIni(e2e.redis.port) })
    const ini = fs.readFileSync(
      path.join(srv.dir, 'node_modules', 'haraka-plugin-hijack-guard', 'config', 'hijack-guard.ini'),
      'utf8',
    )
    assert.doesNotMatch(
      ini,
      /in a later release/,
      'the [alert] to comment says the alert mail comes "in a later release"',
    )
    assert.match(ini, /^\[reactivate\]/m, 'no [reactivate] section in the shipped ini')
    for (const key of ['policy', 'admins', 'token_ttl'])
      assert.match(ini, new RegExp(`^;?\\s*${key}\\s*=`, 'm'), `[reactivate] ${key} is not documented`)
  })
})
