// [signals] networks, exempt_networks and [warn] at through the compiled plugin
// (haraka-test-fixtures), issue 11 items 1 and 4: the client network each message comes from is
// counted at queue_outbound, the message from one network too many is refused 550 5.7.1 and the
// alert names the networks; exempt networks and exempt accounts are not counted; one warning
// mail per window per account at the [warn] fraction.

import assert from 'node:assert/strict'
import * as constants from 'haraka-constants'
import { waitUntil } from '../../support/process'
import { callHook, fixtureSession, makeGuard, replyText, transactionOf, type GuardPlugin } from '../../support/plugin'

const INI = '[alert]\nto=postmaster@example.com\n'

/** Completes a message of `login` from `ip` at queue_outbound; resolves with its answer. */
function send(plugin: GuardPlugin, login: string, ip: string): Promise<{ rc: number | undefined; text: string }> {
  const c = fixtureSession({ login, relaying: true, mailFrom: login, rcptTo: ['r@example.net'], ip })
  transactionOf(c).add_header('Subject', 'hello')
  return callHook(plugin, 'count_message', c).then((a) => ({
    rc: a.rc,
    text: a.msg === undefined ? '' : replyText(a.msg),
  }))
}

/** The Subject header of a mail the plugin sent. */
const subjectOf = (message: string): string => /^Subject: (.*)$/m.exec(message)?.[1] ?? ''

describe('plugin: networks per login and early warning', function () {
  it('counts /24 networks, not addresses: the message from the fourth network in 3/6h is refused 550 5.7.1, the alert names them', async function () {
    const { plugin, sent } = makeGuard(`${INI}[signals]\nnetworks = 3/6h\n[warn]\nat =\n`)
    for (const ip of [
      '198.51.100.1',
      '198.51.100.200',
      '203.0.113.5',
      '192.0.2.9',
      '203.0.113.77',
      '::ffff:192.0.2.10',
    ])
      assert.equal((await send(plugin, 'alice@example.com', ip)).rc, undefined, ip)
    const over = await send(plugin, 'Alice@Example.com', '100.64.1.1')
    assert.equal(over.rc, constants.deny)
    assert.match(over.text, /^550 5\.7\.1 .*reached its limit of 3 client networks in 6 hours/)
    assert.equal((await send(plugin, 'alice@example.com', '198.51.100.1')).rc, constants.deny, 'disabled now')
    await waitForMail(sent, 1)
    const alert = sent[0]?.message ?? ''
    assert.match(subjectOf(alert), /disabled: reached 3 client networks in 6 hours/)
    for (const net of ['100.64.1.0/24', '192.0.2.0/24', '203.0.113.0/24', '198.51.100.0/24'])
      assert.ok(alert.includes(net), net)
  })

  it('never counts exempt_networks, nor exempt accounts', async function () {
    const { plugin } = makeGuard(
      `${INI}[signals]\nnetworks = 1/6h\nexempt_networks = 10.0.0.0/8, 2001:db8::/32\n[exempt]\naccounts = robot@example.com\n`,
    )
    assert.equal((await send(plugin, 'alice@example.com', '198.51.100.1')).rc, undefined)
    for (const ip of ['10.1.2.3', '10.200.0.1', '2001:db8:1::5', '::ffff:10.9.9.9'])
      assert.equal((await send(plugin, 'alice@example.com', ip)).rc, undefined, ip)
    assert.equal((await send(plugin, 'alice@example.com', '203.0.113.1')).rc, constants.deny)
    for (let i = 1; i < 5; i++) assert.equal((await send(plugin, 'robot@example.com', `198.51.${i}.1`)).rc, undefined)
  })

  it('lets an [account:LOGIN] section raise the networks limit for that account only', async function () {
    const { plugin } = makeGuard(`${INI}[signals]\nnetworks = 1/6h\n[account:roamer@example.com]\nnetworks = 5/6h\n`)
    for (let i = 1; i <= 5; i++) assert.equal((await send(plugin, 'roamer@example.com', `198.51.${i}.1`)).rc, undefined)
    assert.equal((await send(plugin, 'roamer@example.com', '198.51.6.1')).rc, constants.deny)
    assert.equal((await send(plugin, 'bob@example.com', '198.51.1.1')).rc, undefined)
    assert.equal((await send(plugin, 'bob@example.com', '198.51.2.1')).rc, constants.deny)
  })

  it('mails one warning per window at the [warn] fraction, with the counts and the commands, and refuses nothing', async function () {
    const { plugin, sent, logs } = makeGuard(
      `${INI}[limits]\nmessages = 10/1h\n[signals]\nnetworks = 5/6h\n[warn]\nat = 80%\n`,
    )
    for (let i = 0; i < 7; i++) assert.equal((await send(plugin, 'alice@example.com', '198.51.100.1')).rc, undefined)
    assert.equal(sent.length, 0)
    assert.equal((await send(plugin, 'alice@example.com', '198.51.100.1')).rc, undefined)
    await waitForMail(sent, 1)
    const warning = sent[0]?.message ?? ''
    assert.match(
      subjectOf(warning),
      /^Warning: account alice@example\.com at 80% of its limit of 10 messages in 1 hour$/,
    )
    assert.match(warning, /messages +8 of 10 in 1 hour/)
    assert.match(warning, /hijack-guard -c \S+ show alice@example\.com/)
    assert.match(warning, /hijack-guard -c \S+ disable alice@example\.com/)
    assert.ok(!/^Reply-To:/m.test(warning), 'a warning carries no reactivation token')
    assert.ok(logs.some(([l, m]) => l === 'loginfo' && /warning for "alice@example.com" queued/.test(m)))
    // Networks reach 4 of 5 in the same window: no second warning.
    for (const ip of ['203.0.113.1', '192.0.2.1', '100.64.0.1'])
      assert.equal((await send(plugin, 'alice@example.com', ip)).rc, ip === '100.64.0.1' ? constants.deny : undefined)
    assert.equal(sent.filter((m) => /^Subject: Warning/m.test(m.message)).length, 1)
  })
})

/** Waits (bounded) until the plugin has sent `n` mails: alerts and warnings are sent without blocking the answer. */
async function waitForMail(sent: readonly unknown[], n: number): Promise<void> {
  await waitUntil(() => sent.length >= n, { timeoutMs: 2000, message: `${n} mail(s) sent` })
}
