// End-to-end: address-like config values (issue 8 items 9 and 10), with the real parts (a
// Haraka 3.3.4 process with the packed plugin, redis-server, a nodemailer client speaking AUTH
// PLAIN over loopback, a loopback SMTP sink). The README's old example
// `admins =              ; default: the [alert] to addresses` must not switch reactivation off;
// a bad login stops startup; `[alert] from = security@...` must not make mail to security@
// vanish into the reply address. See test/e2e/README.md.

import assert from 'node:assert/strict'
import { sendOne, tryAuth, waitUntil } from '../../support'
import {
  alertPrefix,
  assert250,
  disabledKey,
  pluginIni,
  sendAndSettle,
  waitSubjects,
  e2eWorld,
  replyToAlert,
} from './helpers'

const PW = 'pw'
const ADMIN = 'postmaster@test.example'
const OUT = 'bob@outside.example'

describe('e2e: address-like config values', function () {
  this.timeout(60000)

  const e2e = e2eWorld()
  const { haraka } = e2e

  it('item 9: with the README\'s old "admins =              ; default: the [alert] to addresses" the startup line names the real admins and Redis, and the admin\'s reply re-enables the account', async function () {
    const alice = 'alice@test.example'
    const srv = await haraka({
      users: { [alice]: PW, [ADMIN]: PW },
      pluginIni: pluginIni(e2e.redis.port, {
        limits: 'messages = 1/1m\nrecipients = 0',
        reactivate: 'admins =              ; default: the [alert] to addresses',
      }),
    })
    assert.match(
      srv.log(),
      new RegExp(
        `\\[hijack-guard\\] mode=enforce store=redis redis=127\\.0\\.0\\.1:${e2e.redis.port}/0 .* admins=postmaster@test\\.example reply_address=hijack-guard@mx\\.test\\.example`,
      ),
    )

    assert250(
      await sendOne({ port: srv.port, user: alice, pass: PW, from: alice, to: [OUT], subject: 'one' }),
      'message 1',
    )
    const over = await sendOne({ port: srv.port, user: alice, pass: PW, from: alice, to: [OUT], subject: 'two' })
    assert.equal(over.code, 550, JSON.stringify(over))
    const [alert] = await waitSubjects(e2e.sink, alertPrefix(alice), 1)
    assert.ok(alert)
    const to = alert.headers['reply-to']
    assert.ok(typeof to === 'string', `one Reply-To header: ${JSON.stringify(to)}`)
    const r = await replyToAlert(srv, alert, { user: ADMIN, pass: PW })
    assert250(r, "the admin's reply")
    assert.match(r.log, /ACCOUNT RE-ENABLED "alice@test\.example" by reply from postmaster@test\.example/)
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(alice)]), 0)
    assert.equal((await tryAuth({ port: srv.port, user: alice, pass: PW })).code, 235)
  })

  it('item 9: a login with a space in [reactivate] admins stops Haraka at startup, naming the file, key and value', async function () {
    const srv = await haraka(
      {
        users: {},
        pluginIni: pluginIni(e2e.redis.port, { reactivate: 'admins = postmaster@test.example root admin' }),
      },
      { start: false },
    )
    await assert.rejects(srv.start({ timeoutMs: 10000 }), /haraka exited during startup/)
    const line = srv
      .log()
      .split('\n')
      .find((l) => l.includes('reactivate.admins'))
    assert.ok(line, `a log line names reactivate.admins:\n${srv.log()}`)
    assert.match(
      line,
      /hijack-guard\.ini: reactivate\.admins = "postmaster@test\.example root admin": .*is not a login/,
    )
    assert.doesNotMatch(srv.log(), /Listening on/)
  })

  it('item 10: with [alert] from = security@test.example, mail to security@ and security+x@ is delivered, not consumed; replies go to hijack-guard@<me>', async function () {
    const alice = 'alice@test.example'
    const srv = await haraka({
      users: { [alice]: PW, [ADMIN]: PW },
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 1/1m\nrecipients = 0' }).replace(
        '[alert]\n',
        '[alert]\nfrom = security@test.example\n',
      ),
    })
    assert.match(srv.log(), /reply_address=hijack-guard@mx\.test\.example/)
    for (const to of ['security@test.example', 'security+x@test.example']) {
      // an outside sender (no AUTH): inbound mail for a local domain, forwarded to the sink
      const r = await sendAndSettle(srv, { from: 'someone@outside.example', to: [to], subject: `to ${to}` })
      assert250(r, `mail to ${to}`)
      assert.doesNotMatch(r.response, /Reply received by hijack-guard/, `${to} is not consumed`)
    }
    await waitUntil(
      () =>
        ['security@test.example', 'security+x@test.example'].every((a) =>
          e2e.sink.messages.some((m) => m.to.includes(a)),
        ),
      {
        timeoutMs: 15000,
        message: () => JSON.stringify(e2e.sink.messages.map((m) => [m.to, m.subject])),
      },
    )
    // the alert: from security@, Reply-To hijack-guard+hg-TOKEN@<me>
    assert250(
      await sendOne({ port: srv.port, user: alice, pass: PW, from: alice, to: [OUT], subject: 'one' }),
      'message 1',
    )
    assert.equal(
      (await sendOne({ port: srv.port, user: alice, pass: PW, from: alice, to: [OUT], subject: 'two' })).code,
      550,
    )
    const [alert] = await waitSubjects(e2e.sink, alertPrefix(alice), 1)
    assert.ok(alert)
    assert.match(String(alert.headers.from), /<security@test\.example>/)
    assert.match(String(alert.headers['reply-to']), /^hijack-guard\+hg-[0-9a-f]{32}@mx\.test\.example$/)
  })
})
