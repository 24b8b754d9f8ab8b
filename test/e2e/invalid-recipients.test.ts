// End-to-end: recipients refused for good ([signals] invalid_recipients, issue 11 item 2) on a real
// Haraka 3.3.4 with the packed plugin, redis-server, an SMTP client speaking AUTH PLAIN over
// loopback and a loopback sink. See test/e2e/README.md.
//
// - another plugin (support/haraka-plugins/test_refuse_rcpt.js) refuses RCPTs with 550: over the
//   limit the account is disabled (the message in progress is refused at DATA, MAIL FROM of a
//   session that authenticated before gets 550 5.7.1, AUTH 535 5.7.8) and one alert goes out;
// - the next hop (the sink) refuses recipients with 550: Haraka's outbound bounces them, the
//   bounces count, and over the limit the account is disabled and alerted; the bounces still go out.

import assert from 'node:assert/strict'
import { openSession, tryAuth } from '../../support'
import {
  alertPrefix,
  assert250,
  assert535,
  assert550,
  countMatches,
  e2eWorld,
  pluginIni,
  waitQueueEmpty,
  waitSubjects,
} from './helpers'
import { waitUntil } from '../../support/process'

const PW = 'pw'
const alice = 'alice@test.example'
const bob = 'bob@test.example'
const ALERT_QUEUED = /alert for "alice@test\.example" queued/

describe('e2e: invalid recipients (issue 11)', function () {
  this.timeout(90000)

  const e2e = e2eWorld()
  const { haraka } = e2e

  it('RCPTs another plugin refuses with 550 count: the 4th of 3/1h disables the account, with one alert', async function () {
    const srv = await haraka({
      users: { [alice]: PW, [bob]: PW },
      extraPlugins: ['test_refuse_rcpt'],
      pluginIni: pluginIni(e2e.redis.port, {
        limits: 'messages = 100/1m\nrecipients = 1000/1h',
        signals: 'invalid_recipients = 3/1h',
      }),
    })
    assert.match(srv.log(), /\[hijack-guard\] mode=enforce .* invalid_recipients=3\/1h /)
    // A session that authenticated before the disable: MAIL FROM is the gate for it.
    const early = await openSession({ port: srv.port, user: alice, pass: PW })
    const s = await openSession({ port: srv.port, user: alice, pass: PW })
    const first = await s.send({
      from: alice,
      to: ['ok1@outside.example', 'nosuch1@outside.example', 'nosuch2@outside.example'],
      subject: 'invalid 1',
    })
    assert250(first, 'two of three recipients refused by another plugin: still under the limit')
    assert.deepEqual(first.rejected, ['nosuch1@outside.example', 'nosuch2@outside.example'])
    assert.match(first.rejectedErrors?.[0]?.response ?? '', /^550 No such user here/)
    const second = await s.send({
      from: alice,
      to: ['ok2@outside.example', 'nosuch3@outside.example', 'nosuch4@outside.example'],
      subject: 'invalid 2',
    })
    assert550(second, 'data', 'the 4th refused recipient disabled the account: the message is refused')
    await s.close()

    assert550(await early.send({ from: alice, to: ['ok3@outside.example'], subject: 'invalid 3' }), 'mail', 'MAIL FROM')
    await early.close()
    assert535(await tryAuth({ port: srv.port, user: alice, pass: PW }), 'AUTH of the disabled account')
    const other = await openSession({ port: srv.port, user: bob, pass: PW })
    assert250(
      await other.send({ from: bob, to: ['nosuch9@outside.example', 'x@outside.example'], subject: 'bob' }),
      'bob',
    )
    await other.close()

    const [alert] = await waitSubjects(e2e.sink, alertPrefix(alice), 1)
    assert.ok(alert)
    assert.match(
      alert.subject ?? '',
      /reached 3 invalid recipients \(refused for good at RCPT or hard-bounced\) in 1 hour/,
    )
    assert.match(alert.body, /invalid_recipients +3 of 3 in 1 hour +<- limit reached/)
    assert.match(alert.body, /550 No such user here \(test_refuse_rcpt\)/)
    await waitSubjects(e2e.sink, 'bob', 1)
    await waitQueueEmpty(srv)
    assert.equal(countMatches(srv.log(), ALERT_QUEUED), 1, 'one alert')
    assert.deepEqual(
      e2e.sink.messages.filter((m) => m.subject?.startsWith('invalid ')).map((m) => [m.subject, m.to]),
      [['invalid 1', ['ok1@outside.example']]],
    )
  })

  it('hard bounces from the next hop count: 2 + 2 bounced recipients go over 3/1h and disable the account; the bounces still go out', async function () {
    const bouncing = ['nobody1', 'nobody2', 'nobody3', 'nobody4'].map((u) => `${u}@outside.example`)
    const sink = await e2e.extraSink({ refuseRcpt: bouncing })
    const srv = await haraka({
      users: { [alice]: PW },
      sink,
      pluginIni: pluginIni(e2e.redis.port, {
        limits: 'messages = 100/1m\nrecipients = 1000/1h',
        signals: 'invalid_recipients = 3/1h',
      }),
    })
    const s = await openSession({ port: srv.port, user: alice, pass: PW })
    assert250(
      await s.send({ from: alice, to: ['fine@outside.example', ...bouncing.slice(0, 2)], subject: 'bounce 1' }),
      'accepted: the next hop refuses two recipients later',
    )
    // The bounce of the first message reaches alice before the second message is sent.
    await waitUntil(() => sink.messages.filter((m) => !m.from && m.to.includes(alice)).length === 1, {
      timeoutMs: 15000,
      message: () => `bounce 1 to alice; sink: ${JSON.stringify(sink.messages.map((m) => [m.from, m.to, m.subject]))}`,
    })
    assert.equal(countMatches(srv.log(), /ACCOUNT DISABLED/), 0, '2 of 3: not over')
    assert250(
      await s.send({ from: alice, to: bouncing.slice(2), subject: 'bounce 2' }),
      'accepted: still enabled when queued',
    )
    await s.close()

    const [alert] = await waitSubjects(sink, alertPrefix(alice), 1)
    assert.ok(alert)
    assert.match(alert.subject ?? '', /reached 3 invalid recipients/)
    assert.match(alert.body, /Recipient domains: +outside\.example/)
    await waitUntil(() => sink.messages.filter((m) => !m.from && m.to.includes(alice)).length === 2, {
      timeoutMs: 15000,
      message: 'both bounces reach alice',
    })
    assert535(await tryAuth({ port: srv.port, user: alice, pass: PW }), 'AUTH after the bounces')
    await waitQueueEmpty(srv)
    assert.equal(countMatches(srv.log(), ALERT_QUEUED), 1, 'one alert')
    assert.match(srv.log(), /ACCOUNT DISABLED "alice@test\.example": reached invalid_recipients 3\/1h .* at bounce/)
  })
})
