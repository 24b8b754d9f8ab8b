// The webhook and the owner notice from the compiled plugin: a real loopback receiver gets the
// events the hooks cause, signed; a receiver that hangs does not delay the answer.

import assert from 'node:assert/strict'
import * as constants from 'haraka-constants'
import { startWebhookReceiver, waitUntil, type WebhookReceiver } from '../../support'
import { callHook, fixtureSession, makeGuard } from '../../support/plugin'

const SECRET = 'plugin-test-secret'

function session(login: string) {
  return fixtureSession({
    login,
    relaying: true,
    mailFrom: 'alice@example.com',
    rcptTo: ['bob@example.net'],
    ip: '192.0.2.7',
    headers: { Subject: 'hello' },
  })
}

describe('plugin: webhook and owner notice', function () {
  let receiver: WebhookReceiver | undefined
  afterEach(async function () {
    await receiver?.close()
    receiver = undefined
  })

  it('sends warning and disabled once each, signed, and queues the owner notice without token or Reply-To', async function () {
    receiver = await startWebhookReceiver({ secret: SECRET })
    const { plugin, sent } = makeGuard(
      `[limits]\nmessages=2/1m\n[warn]\nat=50%\n[alert]\nto=postmaster@example.com\ncontact=helpdesk@example.com\n` +
        `[webhook]\nurl=${receiver.url}\nsecret=${SECRET}\n[notify]\nuser=true\nuser_address=%u@owners.example.org\n`,
    )
    assert.equal((await callHook(plugin, 'count_message', session('alice@example.com'))).rc, undefined)
    assert.equal((await callHook(plugin, 'count_message', session('alice@example.com'))).rc, undefined)
    assert.equal((await callHook(plugin, 'count_message', session('alice@example.com'))).rc, constants.deny)
    await waitUntil(() => receiver?.named('disabled').length === 1 && receiver.named('warning').length === 1, {
      message: 'the receiver got warning and disabled',
    })
    const disabled = receiver.named('disabled')[0]!
    assert.ok(disabled.verified)
    assert.equal(disabled.payload.account, 'alice@example.com')
    assert.equal(disabled.payload.server, 'mx.test.example')
    assert.equal(disabled.payload.trigger, 'messages')
    assert.equal(disabled.payload.via, 'limit')
    assert.equal(typeof disabled.payload.incident, 'string')
    assert.ok(receiver.events.every((e) => e.verified))

    const notice = await waitUntil(() => sent.find((m) => m.to.includes('alice@owners.example.org')))
    assert.match(notice.message, /Contact helpdesk@example\.com/)
    assert.doesNotMatch(notice.message, /^Reply-To:/im)
    assert.doesNotMatch(notice.message, /hg-[0-9a-f]{8}/)
    // One alert to the postmaster besides: the owner notice is not instead of it.
    assert.ok(sent.some((m) => m.to.includes('postmaster@example.com')))
  })

  it('answers the message over the limit at once while the receiver hangs', async function () {
    receiver = await startWebhookReceiver({ secret: SECRET, hang: true })
    const { plugin } = makeGuard(
      `[limits]\nmessages=1/1m\n[webhook]\nurl=${receiver.url}\nsecret=${SECRET}\ntimeout=30s\n`,
    )
    await callHook(plugin, 'count_message', session('carol@example.com'))
    const t0 = Date.now()
    const over = await callHook(plugin, 'count_message', session('carol@example.com'))
    const ms = Date.now() - t0
    assert.equal(over.rc, constants.deny)
    await waitUntil(() => receiver?.named('disabled').length === 1)
    assert.ok(ms < 500, `answered after ${ms} ms`)
  })

  it('sends no owner notice with [notify] user off (the default)', async function () {
    const { plugin, sent } = makeGuard('[limits]\nmessages=1/1m\n[alert]\nto=postmaster@example.com\n')
    await callHook(plugin, 'count_message', session('dave@example.com'))
    await callHook(plugin, 'count_message', session('dave@example.com'))
    await waitUntil(() => sent.length >= 1)
    assert.deepEqual(
      sent.map((m) => m.to),
      [['postmaster@example.com']],
    )
  })
})
