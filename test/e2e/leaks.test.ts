// End-to-end: issue 8's smaller leaks, with the real parts (a Haraka 3.3.4 process with the
// packed plugin, redis-server, an SMTP client over loopback, a loopback sink). See
// test/e2e/README.md.
//
// - AUTH of a disabled account answers the same whatever the password (no oracle);
// - a manual (CLI) disable says "by the postmaster", not "after unusual sending";
// - reactivation tokens are never in clear in Redis nor in the plugin's log lines, and the
//   clear token of the alert still re-enables;
// - monitor mode's report carries the stored evidence.

import assert from 'node:assert/strict'
import * as os from 'node:os'
import { dumpRedis, openSession, sendOne, tryAuth, type HarakaInstance } from '../../support'
import {
  alertPrefix,
  assert250,
  assert535,
  assert550,
  countMatches,
  disabledKey,
  pluginIni,
  preauthName,
  reenabledSubject,
  waitSubjects,
  e2eWorld,
  cliOk,
  headerOf,
  replyToAlert,
} from './helpers'

const PW = 'pw'
const ADMIN = 'postmaster@test.example' // a login listed in [alert] to (so an admin)
const OUT = 'bob@outside.example'

/** Sends one message of `user` per subject (one session); asserts each answer is 250. */
async function sendMany(srv: HarakaInstance, user: string, subjects: readonly string[]): Promise<void> {
  const s = await openSession({ port: srv.port, user, pass: PW })
  for (const subject of subjects) assert250(await s.send({ from: user, to: [OUT], subject }), subject)
  await s.close()
}

describe('e2e: smaller leaks (issue 8)', function () {
  this.timeout(90000)

  // every instance: the admin's login, test_preauth before the auth plugin; started
  const e2e = e2eWorld({ users: { [ADMIN]: PW }, beforePlugins: ['test_preauth'] })
  const { haraka } = e2e

  it('AUTH of a disabled account: the right and a wrong password get the identical 535 5.7.8 "is disabled" answer', async function () {
    const alice = 'alice@test.example'
    const srv = await haraka({
      users: { [alice]: PW },
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 1/1m\nrecipients = 0' }),
    })
    await sendMany(srv, alice, ['o1 1'])
    const over = await sendOne({ port: srv.port, user: alice, pass: PW, from: alice, to: [OUT], subject: 'o1 over' })
    assert550(over, 'data', 'over the limit')
    // side by side: Haraka delays each failed AUTH by a second
    const [right, wrong] = await Promise.all([
      tryAuth({ port: srv.port, user: alice, pass: PW }),
      tryAuth({ port: srv.port, user: alice, pass: 'not-the-password' }),
    ])
    assert535(right, 'right password', { text: /is disabled after unusual sending; contact / })
    assert535(wrong, 'wrong password', { text: /is disabled after unusual sending; contact / })
    assert.equal(wrong.response, right.response)
    // the log says the password was not looked at
    assert.equal(
      countMatches(srv.log(), /refusing AUTH of disabled account "alice@test\.example" \(password not checked\)/),
      2,
    )
    // an enabled account's wrong password still gets the auth plugin's own answer
    const other = await tryAuth({ port: srv.port, user: ADMIN, pass: 'not-the-password' })
    assert.equal(other.code, 535)
    assert.doesNotMatch(other.response, /disabled/)
  })

  it('a CLI disable says "disabled by the postmaster" at AUTH and MAIL FROM, not "after unusual sending"', async function () {
    const carol = 'carol@test.example'
    const srv = await haraka({ users: { [carol]: PW }, pluginIni: pluginIni(e2e.redis.port) })
    await cliOk(srv, ['disable', carol, '--reason', 'laptop stolen'])
    assert.equal(await e2e.redis.command(['HGET', disabledKey(carol), 'by']), `cli:${os.userInfo().username}`)
    const auth = await tryAuth({ port: srv.port, user: carol, pass: PW })
    assert535(auth, 'AUTH', { text: /Account carol@test\.example is disabled by the postmaster; contact / })
    assert.doesNotMatch(auth.response, /unusual sending|laptop/)
    // MAIL FROM of a session that logged in another way (the gate every auth path meets)
    const fresh = await openSession({ port: srv.port, name: preauthName(carol) })
    const mail = await fresh.send({ from: carol, to: [OUT], subject: 'o2' })
    await fresh.close()
    assert550(mail, 'mail', 'MAIL FROM')
    assert.match(mail.response, /Account carol@test\.example is disabled by the postmaster; contact /)
    assert.doesNotMatch(mail.response, /unusual sending|laptop/)
  })

  it("keeps the reactivation token out of Redis and out of the plugin's log; the clear token of the alert still re-enables", async function () {
    const dave = 'dave@test.example'
    const srv = await haraka({
      users: { [dave]: PW },
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 1/1m\nrecipients = 0' }),
    })
    await sendMany(srv, dave, ['o3 1'])
    assert550(
      await sendOne({ port: srv.port, user: dave, pass: PW, from: dave, to: [OUT], subject: 'o3 over' }),
      'data',
      'over',
    )
    const [alert] = await waitSubjects(e2e.sink, alertPrefix(dave), 1)
    assert.ok(alert)
    const replyTo = headerOf(alert, 'reply-to')
    const token = /^hijack-guard\+hg-([0-9a-f]{32})@/.exec(replyTo)?.[1]
    assert.ok(token, `a token in Reply-To: ${replyTo}`)
    const dump = await dumpRedis(await e2e.redis.client())
    assert.ok(dump.includes('hijack-guard:token-sha256:'), dump)
    assert.ok(!dump.toLowerCase().includes(token), `the token is in clear in Redis:\n${dump}`)

    const reply = await replyToAlert(srv, alert, { user: ADMIN, pass: PW })
    assert.equal(reply.code, 250, JSON.stringify(reply))
    await waitSubjects(e2e.sink, reenabledSubject(dave), 1)
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(dave)]), 0, 're-enabled')
    assert.ok(!(await dumpRedis(await e2e.redis.client())).toLowerCase().includes(token))

    // The plugin's own log lines never carry the token; Haraka's own lines at INFO do (the
    // hook result line of the accepted RCPT: see docs/security.md).
    const lines = srv
      .log()
      .split('\n')
      .filter((l) => l.toLowerCase().includes(token))
    const plugins = lines.filter((l) => /\[hijack-guard\]/.test(l) && !/ hook=\w+ plugin=hijack-guard /.test(l))
    // Haraka's own: the rcpt hook's result (INFO) and the recipient line (NOTICE), both the RCPT
    const core = lines.filter((l) => !plugins.includes(l))
    assert.deepEqual(plugins, [], 'log lines of the plugin with the token')
    assert.ok(
      core.every((l) => /hook=rcpt plugin=hijack-guard |\[core\] recipient <hijack-guard\+hg-/.test(l)),
      core.join('\n'),
    )
  })

  it('monitor mode mails one report that carries the stored evidence of the earlier messages', async function () {
    const erin = 'erin@test.example'
    const srv = await haraka({
      users: { [erin]: PW },
      pluginIni: pluginIni(e2e.redis.port, { main: 'mode = monitor', limits: 'messages = 2/1m\nrecipients = 0' }),
    })
    await sendMany(srv, erin, ['o4 first', 'o4 second', 'o4 third', 'o4 fourth'])
    const [report] = await waitSubjects(e2e.sink, `Monitor: account ${erin} `, 1)
    assert.ok(report)
    assert.match(report.body, /Evidence from its last 3 messages:/)
    for (const subject of ['o4 first', 'o4 second', 'o4 third']) {
      assert.ok(report.body.includes(JSON.stringify(subject)), `${subject} in\n${report.body}`)
    }
    await waitSubjects(e2e.sink, 'o4 ', 4)
    assert.equal(
      e2e.sink.messages.filter((m) => m.subject?.startsWith(`Monitor: account ${erin} `)).length,
      1,
      'one report per window',
    )
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(erin)]), 0, 'monitor mode never disables')
  })
})
