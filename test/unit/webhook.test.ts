// The webhook: the payload, its signature, the attempts and their backoff on an injected clock,
// what is counted and logged, and [webhook] / [notify] in the config.

import * as assert from 'node:assert/strict'
import { createHmac, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import { ConfigError, parseConfig } from '../../lib/config'
import { composeOwnerNotice, ownerAddress } from '../../lib/alert'
import {
  buildPayload,
  createWebhook,
  fetchPoster,
  signature,
  SIGNATURE_HEADER,
  type PostResult,
  type WebhookConfig,
  type WebhookEvent,
} from '../../lib/webhook'

const SECRET = 'k3y-for-tests'
const CONFIG: WebhookConfig = {
  url: 'http://127.0.0.1:9/hook',
  secret: SECRET,
  events: new Set(['disabled', 'enabled', 'warning', 'held_released', 'held_dropped', 'password_refused']),
  timeoutMs: 5000,
}
const DISABLED: WebhookEvent = {
  event: 'disabled',
  account: 'alice@example.com',
  incident: 'abc',
  reason: 'reached messages 500/30m (501 in 30 min)',
  trigger: 'messages',
  counts: [{ kind: 'messages', count: 501, limit: '500/30m' }],
  via: 'limit',
  atMs: Date.UTC(2026, 0, 2, 3, 4, 5),
}

interface Call {
  readonly body: string
  readonly headers: Record<string, string>
  readonly timeoutMs: number
}

/** A webhook whose POSTs answer `answers` in turn and whose waits run when `advance` passes them. */
function harness(answers: PostResult[], config: WebhookConfig = CONFIG) {
  const calls: Call[] = []
  const errors: string[] = []
  const waits: number[] = []
  let pending: (() => void) | null = null
  const webhook = createWebhook({
    config,
    server: 'mx1.example.com',
    log: { info: () => undefined, error: (line) => errors.push(line) },
    post: (_url, body, headers, timeoutMs) => {
      calls.push({ body, headers, timeoutMs })
      return Promise.resolve(answers.shift() ?? { status: 200 })
    },
    schedule: (fn, ms) => {
      waits.push(ms)
      pending = fn
    },
  })
  /** Runs the pending wait, if any, and lets the promises it frees settle. */
  async function tick(): Promise<void> {
    for (let i = 0; i < 10; i++) await Promise.resolve()
    const fn = pending
    pending = null
    fn?.()
    for (let i = 0; i < 10; i++) await Promise.resolve()
  }
  return { webhook, calls, errors, waits, tick }
}

describe('webhook', function () {
  describe('buildPayload', function () {
    it('names the event, account, time (ISO), server and a unique id, and leaves unknown fields out', function () {
      const p = buildPayload({ event: 'enabled', account: 'bob', actor: 'cli:root', via: 'cli' }, 'mx1', 0)
      assert.deepEqual(Object.keys(p), ['id', 'event', 'account', 'at', 'server', 'actor', 'via'])
      assert.equal(p.at, '1970-01-01T00:00:00.000Z')
      assert.match(p.id, /^[0-9a-f]{32}$/)
      assert.notEqual(buildPayload(DISABLED, 'mx1', 0).id, buildPayload(DISABLED, 'mx1', 0).id)
    })

    it('takes the event time from atMs when given', function () {
      assert.equal(buildPayload(DISABLED, 'mx1', 0).at, '2026-01-02T03:04:05.000Z')
    })
  })

  describe('signature', function () {
    it('is sha256= and the hex HMAC-SHA256 of the raw body, which a receiver verifies', function () {
      const body = '{"event":"disabled"}'
      const sig = signature(SECRET, body)
      assert.equal(sig, `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`)
      const expected = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`)
      assert.ok(timingSafeEqual(Buffer.from(sig), expected))
      assert.notEqual(signature('other', body), sig)
    })
  })

  describe('createWebhook', function () {
    it('POSTs the JSON body once with its signature header and the configured timeout', async function () {
      const h = harness([{ status: 204 }])
      await h.webhook.emit(DISABLED)
      assert.equal(h.calls.length, 1)
      const call = h.calls[0]!
      const payload = JSON.parse(call.body) as Record<string, unknown>
      assert.equal(payload.event, 'disabled')
      assert.equal(payload.account, 'alice@example.com')
      assert.equal(payload.server, 'mx1.example.com')
      assert.equal(payload.incident, 'abc')
      assert.deepEqual(payload.counts, [{ kind: 'messages', count: 501, limit: '500/30m' }])
      assert.equal(call.headers[SIGNATURE_HEADER], signature(SECRET, call.body))
      assert.equal(call.headers['Content-Type'], 'application/json')
      assert.equal(call.timeoutMs, 5000)
      assert.deepEqual(h.webhook.stats, { sent: 1, failed: 0, inFlight: 0 })
    })

    it('tries 3 times, 1 s then 4 s apart, on errors and 5xx, with the same body and id', async function () {
      const h = harness([{ error: 'ECONNREFUSED' }, { status: 503 }, { status: 200 }])
      const done = h.webhook.emit(DISABLED)
      await h.tick()
      await h.tick()
      await done
      assert.equal(h.calls.length, 3)
      assert.deepEqual(h.waits, [1000, 4000])
      assert.equal(new Set(h.calls.map((c) => c.body)).size, 1)
      assert.deepEqual(h.errors, [])
      assert.equal(h.webhook.stats.sent, 1)
    })

    it('gives up after 3 attempts, logs it once and counts it', async function () {
      const h = harness([{ error: 'no answer within 5000 ms' }, { error: 'x' }, { status: 500 }])
      const done = h.webhook.emit(DISABLED)
      await h.tick()
      await h.tick()
      await done
      assert.equal(h.calls.length, 3)
      assert.equal(h.errors.length, 1)
      assert.match(
        h.errors[0]!,
        /webhook event disabled for "alice@example.com" .*NOT delivered .*HTTP 500 after 3 attempts/,
      )
      assert.deepEqual(h.webhook.stats, { sent: 0, failed: 1, inFlight: 0 })
    })

    it('does not try again after a 4xx answer (the receiver refused the event)', async function () {
      const h = harness([{ status: 401 }])
      await h.webhook.emit(DISABLED)
      assert.equal(h.calls.length, 1)
      assert.match(h.errors[0] ?? '', /HTTP 401 after 1 attempt\b/)
    })

    it('rate-limits the failure lines: one in full, the next ones counted', async function () {
      const h = harness([{ status: 400 }, { status: 400 }, { status: 400 }])
      await h.webhook.emit(DISABLED)
      await h.webhook.emit(DISABLED)
      await h.webhook.emit(DISABLED)
      assert.equal(h.errors.length, 1)
      assert.equal(h.webhook.stats.failed, 3)
    })

    it('sends only the events [webhook] events lists', async function () {
      const h = harness([], { ...CONFIG, events: new Set(['enabled']) })
      await h.webhook.emit(DISABLED)
      assert.equal(h.calls.length, 0)
    })

    it('drops and counts events beyond maxInFlight instead of queueing without bound', async function () {
      const errors: string[] = []
      const webhook = createWebhook({
        config: CONFIG,
        server: 'mx1',
        log: { info: () => undefined, error: (l) => errors.push(l) },
        post: () => new Promise<PostResult>(() => undefined),
        maxInFlight: 2,
      })
      void webhook.emit(DISABLED)
      void webhook.emit(DISABLED)
      await webhook.emit(DISABLED)
      assert.deepEqual(webhook.stats, { sent: 0, failed: 1, inFlight: 2 })
      assert.match(errors[0] ?? '', /2 events in flight already/)
    })
  })

  describe('fetchPoster against a receiver that does not answer', function () {
    it('ends the attempt at the timeout', async function () {
      const server = createServer(() => undefined)
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
      const { port } = server.address() as { port: number }
      const t0 = Date.now()
      const result = await fetchPoster(`http://127.0.0.1:${port}/`, '{}', {}, 200)
      server.closeAllConnections()
      server.close()
      assert.deepEqual(result, { error: 'no answer within 200 ms' })
      assert.ok(Date.now() - t0 < 2000)
    })
  })

  describe('[webhook] config', function () {
    it('is off without a url', function () {
      assert.equal(parseConfig({}).webhook, null)
    })

    it('reads url, secret, events and timeout', function () {
      const c = parseConfig({
        webhook: { url: 'https://hooks.example.com/hg', secret: 's', events: 'disabled, enabled', timeout: '2s' },
      })
      assert.equal(c.webhook?.url, 'https://hooks.example.com/hg')
      assert.deepEqual([...(c.webhook?.events ?? [])], ['disabled', 'enabled'])
      assert.equal(c.webhook?.timeoutMs, 2000)
      assert.ok(!c.warnings.some((w) => w.includes('[webhook]')))
    })

    it('sends every event by default', function () {
      const c = parseConfig({ webhook: { url: 'http://127.0.0.1/h', secret: 's' } })
      assert.equal(c.webhook?.events.size, 6)
    })

    it('refuses a url without a secret with a ConfigError naming webhook.secret', function () {
      assert.throws(
        () => parseConfig({ webhook: { url: 'https://hooks.example.com/' } }),
        (err: unknown) => err instanceof ConfigError && err.key === 'webhook.secret' && /required/.test(err.message),
      )
    })

    it('refuses a url that is not http(s) and an unknown event', function () {
      for (const url of ['ftp://example.com/', 'hooks.example.com', 'file:///etc/passwd'])
        assert.throws(() => parseConfig({ webhook: { url, secret: 's' } }), /webhook\.url/)
      assert.throws(
        () => parseConfig({ webhook: { url: 'https://h.example/', secret: 's', events: 'disabled, hacked' } }),
        /webhook\.events.*"hacked"/,
      )
      assert.throws(() => parseConfig({ webhook: { url: 'https://h.example/', secret: 's', timeout: '0s' } }))
    })

    it('warns about http:// to another host, not to loopback', function () {
      const far = parseConfig({ webhook: { url: 'http://hooks.example.com/', secret: 's' } })
      assert.ok(far.warnings.some((w) => /\[webhook\].*in clear/.test(w)))
      for (const url of ['http://127.0.0.1:8080/', 'http://localhost/', 'http://[::1]:9/'])
        assert.ok(!parseConfig({ webhook: { url, secret: 's' } }).warnings.some((w) => w.includes('[webhook]')))
    })
  })

  describe('[notify] and the owner notice', function () {
    it('is off by default with user_address %s', function () {
      assert.deepEqual(parseConfig({}).notify, { user: false, userAddress: '%s' })
    })

    it('refuses a user_address without %s or %u, or one that makes no address', function () {
      assert.throws(
        () => parseConfig({ notify: { user: 'true', user_address: 'root@example.com' } }),
        /notify\.user_address/,
      )
      assert.throws(
        () => parseConfig({ notify: { user: 'true', user_address: '%u at example.com' } }),
        /notify\.user_address/,
      )
      assert.equal(parseConfig({ notify: { user: 'yes', user_address: '%u@example.com' } }).notify.user, true)
    })

    it('derives the address: %s the login, %u its local part; null when that is no address', function () {
      assert.equal(ownerAddress('%s', 'alice@example.com'), 'alice@example.com')
      assert.equal(ownerAddress('%u@mail.example.org', 'alice@example.com'), 'alice@mail.example.org')
      assert.equal(ownerAddress('%u@example.com', 'bob'), 'bob@example.com')
      assert.equal(ownerAddress('%s', 'bob'), null)
      assert.equal(ownerAddress('%s', 'a b@example.com'), null)
      assert.equal(ownerAddress('%s', 'x@example.com>, evil@example.org'), null)
    })

    it('says what happened, whom to contact, to change the password; no token, no Reply-To', function () {
      const mail = composeOwnerNotice({
        account: 'alice@example.com',
        from: 'hijack-guard@mx1.example.com',
        to: 'alice@example.com',
        contact: 'helpdesk@example.com',
        me: 'mx1.example.com',
        now: 0,
        id: 'id1',
      })
      assert.deepEqual(mail.to, ['alice@example.com'])
      assert.match(mail.message, /^Subject: Your mail account alice@example.com was disabled/m)
      assert.match(mail.message, /unusual/)
      assert.match(mail.message, /Contact helpdesk@example.com/)
      assert.match(mail.message, /Change the password/)
      assert.doesNotMatch(mail.message, /^Reply-To:/im)
      assert.doesNotMatch(mail.message, /hg-[0-9a-f]|enable /i)
    })
  })
})
