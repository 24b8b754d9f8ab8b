// End-to-end: networks per login and the early warning (issue 11 items 1 and 4) on a real Haraka
// 3.3.4 with the packed plugin, redis-server, an SMTP client speaking AUTH PLAIN from several
// loopback networks (127.1.0.0/24, 127.2.0.0/24, ...) and a loopback sink. See test/e2e/README.md.
//
// - [signals] networks = 3/6h: mail from three /24 networks (two addresses in one of them) goes
//   through; the message from a fourth is refused 550 5.7.1, one alert names the networks, AUTH
//   and MAIL FROM are refused after it; the CLI enable lets the account send again;
// - exempt_networks are never counted;
// - [warn] at = 50% of messages = 10/1h: the fifth message sends one warning, later ones none,
//   nothing is refused.

import assert from 'node:assert/strict'
import { sendOne, tryAuth, type HarakaInstance, type SendResult } from '../../support'
import {
  alertPrefix,
  assert250,
  assert535,
  assert550,
  bySubject,
  cliOk,
  countMatches,
  e2eWorld,
  pluginIni,
  waitSubjects,
} from './helpers'

const PW = 'pw'
const alice = 'alice@test.example'

function send(srv: HarakaInstance, localAddress: string, subject = 'hello'): Promise<SendResult> {
  return sendOne({
    port: srv.port,
    user: alice,
    pass: PW,
    localAddress,
    from: alice,
    to: 'someone@outside.example',
    subject,
  })
}

describe('e2e: networks per login and early warning (issue 11)', function () {
  this.timeout(90000)

  const e2e = e2eWorld()
  const { haraka } = e2e

  it('networks = 3/6h: the message from a fourth /24 is refused 550 5.7.1, the alert names the networks, and the account is disabled until enabled', async function () {
    const srv = await haraka({
      users: { [alice]: PW },
      pluginIni: pluginIni(e2e.redis.port, {
        limits: 'messages = 100/1h',
        signals: 'networks = 3/6h\nexempt_networks = 127.9.0.0/16',
        warn: 'at =',
      }),
    })
    for (const ip of ['127.1.0.1', '127.1.0.2', '127.2.0.1', '127.9.0.1', '127.9.1.1', '127.3.0.1', '127.1.0.3'])
      assert250(await send(srv, ip), `from ${ip}`)
    const over = await send(srv, '127.4.0.1', 'the fourth network')
    assert550(over, 'data', 'from a fourth network')
    assert.match(over.response, /reached its limit of 3 client networks in 6 hours/)
    const [alert] = await waitSubjects(e2e.sink, alertPrefix(alice), 1)
    assert.ok(alert)
    assert.match(alert.subject ?? '', /reached 3 client networks in 6 hours/)
    assert.match(alert.body, /Client networks it sent from in that window \(newest first\):/)
    for (const net of ['127.4.0.0/24', '127.1.0.0/24', '127.2.0.0/24', '127.3.0.0/24'])
      assert.ok(alert.body.includes(net), `the alert names ${net}:\n${alert.body}`)
    assert.ok(!alert.body.includes('127.9.0.0/24'), 'an exempt network is not counted, so not named')
    assert535(
      await tryAuth({ port: srv.port, user: alice, pass: PW, localAddress: '127.1.0.1' }),
      'AUTH after the disable',
    )
    const show = await cliOk(srv, ['show', alice])
    assert.match(show.stdout, /networks/)
    await cliOk(srv, ['enable', alice])
    assert250(await send(srv, '127.5.0.1'), 'after the enable, the networks start from zero')
    assert.equal(countMatches(srv.log(), /ACCOUNT DISABLED "alice@test\.example": reached networks 3\/6h/), 1)
  })

  it('[warn] at = 50%: the fifth of 10/1h messages sends one warning with the commands; nothing is refused', async function () {
    const srv = await haraka({
      users: { [alice]: PW },
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 10/1h', warn: 'at = 50%' }),
    })
    for (let i = 1; i <= 8; i++) assert250(await send(srv, '127.1.0.1', `message ${i}`), `message ${i}`)
    const [warning] = await waitSubjects(e2e.sink, `Warning: account ${alice} at 50% of its limit`, 1)
    assert.ok(warning)
    assert.match(warning.body, /reached 5 messages in 1 hour/)
    assert.match(warning.body, /hijack-guard -c \S+ show alice@test\.example/)
    assert.match(warning.body, /hijack-guard -c \S+ disable alice@test\.example/)
    assert.match(warning.body, /Subjects:/)
    assert.equal(bySubject(e2e.sink, alertPrefix(alice)).length, 0, 'not disabled')
    assert.equal(countMatches(srv.log(), /warning for "alice@test\.example" queued/), 1, 'one warning')
  })
})
