// The webhook and the owner notice on real Haraka processes: two instances on one Redis send each
// event once, signed, to a loopback receiver; a receiver that hangs does not slow the SMTP answer;
// the owner's notice reaches the sink without a token or a Reply-To.

import assert from 'node:assert/strict'
import { sendOne, startWebhookReceiver, waitUntil, type WebhookReceiver } from '../../support'
import { assert250, assert550, cliOk, e2eWorld, pluginIni, waitSubjects } from './helpers'

const PW = 'pw'
const OUT = 'bob@outside.example'
const SECRET = 'e2e-webhook-secret'

describe('e2e: webhook events and the owner notice', function () {
  this.timeout(120000)
  const e2e = e2eWorld()

  function ini(receiver: WebhookReceiver, extra = ''): string {
    return (
      pluginIni(e2e.redis.port, { limits: 'messages = 3/1m\nrecipients = 0', warn: 'at = 60%' }) +
      `[webhook]\nurl = ${receiver.url}\nsecret = ${SECRET}\ntimeout = 2s\n` +
      `[notify]\nuser = true\nuser_address = %s\n${extra}`
    )
  }

  it('two Haraka processes on one Redis: each event reaches the receiver once, signed; the owner gets a notice without token or Reply-To', async function () {
    const receiver = await startWebhookReceiver({ secret: SECRET })
    e2e.cleanup(() => receiver.close())
    const alice = 'alice@test.example'
    const opts = { users: { [alice]: PW }, pluginIni: ini(receiver) }
    const [a, b] = await Promise.all([e2e.haraka(opts), e2e.haraka(opts)])
    // Alternate the servers: both count into the one Redis; the one that flips the flag sends.
    for (let i = 1; i <= 3; i++) {
      const r = await sendOne({
        port: (i % 2 ? a : b).port,
        user: alice,
        pass: PW,
        from: alice,
        to: [OUT],
        subject: `w ${i}`,
      })
      assert250(r, `message ${i}`)
    }
    const over = await sendOne({ port: b.port, user: alice, pass: PW, from: alice, to: [OUT], subject: 'w 4' })
    assert550(over, 'data', 'the 4th message')
    await waitUntil(() => receiver.named('disabled').length >= 1 && receiver.named('warning').length >= 1, {
      timeoutMs: 15000,
      message: 'disabled and warning reach the receiver',
    })

    await cliOk(a, ['enable', alice])
    await cliOk(b, ['disable', alice, '--reason', 'e2e'])
    await cliOk(a, ['drop-held', alice])
    await waitUntil(() => receiver.named('held_dropped').length >= 1 && receiver.named('enabled').length >= 1)

    // Anything sent twice would have arrived by the time the owner's notice and a second look are in.
    const notice = (await waitSubjects(e2e.sink, `Your mail account ${alice} was disabled`, 1))[0]
    assert.ok(notice)
    assert.deepEqual(notice.to, [alice])
    assert.equal(notice.headers['reply-to'], undefined)
    assert.doesNotMatch(notice.raw, /hg-[0-9a-f]{8}/i)
    assert.match(notice.body, /change the password/i)

    const names = receiver.events.map((e) => e.payload.event).sort()
    assert.deepEqual(names, ['disabled', 'disabled', 'enabled', 'held_dropped', 'warning'])
    assert.ok(
      receiver.events.every((e) => e.verified),
      'every signature verifies',
    )
    assert.equal(new Set(receiver.events.map((e) => e.payload.id)).size, receiver.events.length, 'ids are unique')
    const [auto, manual] = receiver
      .named('disabled')
      .sort((x, y) => String(x.payload.via).localeCompare(String(y.payload.via)))
    assert.equal(manual?.payload.via, 'limit')
    assert.equal(manual?.payload.trigger, 'messages')
    assert.equal(auto?.payload.via, 'cli')
    assert.equal(auto?.payload.reason, 'e2e')
    assert.equal(receiver.named('enabled')[0]?.payload.via, 'cli')
    assert.match(String(receiver.named('enabled')[0]?.payload.actor), /^cli:/)
    for (const e of receiver.events) {
      assert.equal(e.payload.account, alice)
      assert.equal(e.payload.server, 'mx.test.example')
      assert.match(String(e.payload.at), /^\d{4}-\d\d-\d\dT/)
    }
  })

  it('a receiver that hangs does not delay mail: the refusal that disables comes at normal speed', async function () {
    const receiver = await startWebhookReceiver({ secret: SECRET, hang: true })
    e2e.cleanup(() => receiver.close())
    const carol = 'carol@test.example'
    const srv = await e2e.haraka({
      users: { [carol]: PW },
      pluginIni: ini(receiver).replace('timeout = 2s', 'timeout = 30s'),
    })
    const times: number[] = []
    for (let i = 1; i <= 4; i++) {
      const t0 = Date.now()
      const r = await sendOne({ port: srv.port, user: carol, pass: PW, from: carol, to: [OUT], subject: `h ${i}` })
      times.push(Date.now() - t0)
      if (i < 4) assert250(r, `message ${i}`)
      else assert550(r, 'data', 'the 4th message')
    }
    await waitUntil(() => receiver.named('disabled').length === 1, { message: 'the hung receiver got the event' })
    // The warning (message 2) and the disable (message 4) each left a POST hanging for 30 s.
    assert.ok(Math.max(...times) < 3000, `SMTP sessions took ${times.join(', ')} ms`)
    const after = Date.now()
    const r = await sendOne({ port: srv.port, user: carol, pass: PW, from: carol, to: [OUT], subject: 'h 5' })
    assert.ok(Date.now() - after < 3000)
    assert.equal(r.code, 535)
  })
})
