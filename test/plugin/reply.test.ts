// Reactivation by reply through the compiled plugin as Haraka loads it (haraka-test-fixtures),
// with the memory store and a sendMail seam that records the mail the plugin would queue.
// The helpers replay what Haraka does around a hook: RCPT TO appends the recipient before the
// rcpt hooks run and drops it again on a refusal; a deny runs the deny hooks with
// [rc, msg, plugin, method, params, hook].

import assert from 'node:assert/strict'
import { waitUntil } from '../../support/process'
import { Address } from '@haraka/email-address'
import * as constants from 'haraka-constants'
import { Header } from 'haraka-email-message'
import * as fixtures from 'haraka-test-fixtures'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import type { OutgoingMail } from '../../lib/alert'
import {
  callHook,
  failingStore,
  guardStore,
  makeGuard as makeShared,
  replyText,
  transactionOf,
  type Guard,
  type GuardOptions,
  type HookOutcome,
  fixtureSession,
  rcptTo,
} from '../../support/plugin'

const ADMIN = 'postmaster@example.com'
const ALICE = 'alice@example.com'
const REPLY_ADDRESS = 'hijack-guard@mx.test.example'
const INI = `[limits]\nmessages=1/1m\nrecipients=0\n[alert]\nto=${ADMIN}\n`

/** The shared plugin set-up, with this file's default config. */
const makeGuard = (ini = INI, opts?: GuardOptions): Guard => makeShared(ini, opts)

interface SessionOptions {
  readonly login?: string
  readonly relaying?: boolean
  readonly mailFrom?: string
  readonly headers?: Record<string, string>
}

/** A session in a transaction after MAIL FROM, with no recipient yet. */
function session({
  login,
  relaying = login !== undefined,
  mailFrom = login ?? 'someone@elsewhere.example',
  headers = {},
}: SessionOptions = {}): FixtureConnection {
  return fixtureSession({ login, relaying, mailFrom, headers: { Subject: 'hello', ...headers } })
}

const rcpt = rcptTo

type Hook = (plugin: FixturePlugin, c: FixtureConnection) => Promise<HookOutcome>
const mail: Hook = (plugin, c) => callHook(plugin, 'hook_mail', c, [transactionOf(c).mail_from, {}])
const queueOutbound: Hook = (plugin, c) => callHook(plugin, 'count_message', c)
const queue: Hook = (plugin, c) => callHook(plugin, 'consume_reply', c)

/** Lets the mail the plugin queues without waiting reach the seam. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** An ordinary message of `login` through queue_outbound. */
async function send(plugin: FixturePlugin, login: string): Promise<HookOutcome> {
  const c = session({ login })
  await rcpt(plugin, c, 'bob@example.net')
  return queueOutbound(plugin, c)
}

function parseHeader(message: string): Header {
  const header = new Header()
  header.parse(message.slice(0, message.indexOf('\r\n\r\n') + 2).split(/(?<=\r\n)/))
  return header
}

/** What the admin's mail client needs of an alert to reply to it. */
interface AlertReplyTarget {
  readonly subject: string
  readonly messageId: string
  readonly replyTo: string
}

/** Trips alice over messages = 1/1m; returns the alert the seam received. */
async function trip(
  plugin: FixturePlugin,
  sent: readonly OutgoingMail[],
): Promise<AlertReplyTarget & { alert: OutgoingMail }> {
  assert.equal((await send(plugin, ALICE)).rc, undefined)
  const over = await send(plugin, ALICE)
  assert.equal(over.rc, constants.deny)
  // The alert is queued after the disable's audit entry and password record, not with the answer.
  await waitUntil(() => sent.some((m) => /Auto-Submitted: auto-generated/.test(m.message)), {
    timeoutMs: 5000,
    message: 'the alert',
  })
  const alerts = sent.filter((m) => /Auto-Submitted: auto-generated/.test(m.message))
  assert.equal(alerts.length, 1)
  const alert = alerts[0]
  assert.ok(alert)
  const header = parseHeader(alert.message)
  const replyTo = header.get_addresses('Reply-To')[0]
  assert.ok(replyTo instanceof Address, `Reply-To: ${header.get('Reply-To')}`)
  return {
    alert,
    replyTo: replyTo.address,
    messageId: header.get_decoded('Message-ID').trim(),
    subject: header.get_decoded('Subject'),
  }
}

/** The admin's reply to an alert, as a mail client writes it, up to the end of RCPT TO; login null: no AUTH. */
async function adminReply(
  plugin: FixturePlugin,
  alert: AlertReplyTarget,
  { login = ADMIN, relaying }: { login?: string | null; relaying?: boolean } = {},
): Promise<FixtureConnection> {
  const c = session({
    ...(login === null ? {} : { login }),
    ...(relaying === undefined ? {} : { relaying }),
    mailFrom: ADMIN,
    headers: {
      Subject: `Re: ${alert.subject}`,
      'In-Reply-To': alert.messageId,
      References: alert.messageId,
      'Message-ID': '<3f6c1a2e-8b4d-4e0f-9a7c-2d5e6f708192@example.com>',
    },
  })
  assert.equal((await rcpt(plugin, c, alert.replyTo)).rc, constants.ok)
  return c
}

describe('plugin: reactivation by reply', function () {
  describe('RCPT TO', function () {
    it('accepts the reply address, with or without a +detail, with OK from a session that is not relaying', async function () {
      const { plugin } = makeGuard()
      for (const address of [
        REPLY_ADDRESS,
        'hijack-guard+hg-5f2b8c1d9e0a4b7c8d6e3f1a2b9c0d4e@mx.test.example',
        'Hijack-Guard+X@MX.Test.Example',
      ]) {
        const c = session({ relaying: false })
        const answer = await rcpt(plugin, c, address)
        assert.equal(answer.rc, constants.ok, address)
        assert.match(replyText(answer.msg), /^250 /)
      }
    })

    it('leaves every other recipient to the other rcpt plugins (CONT)', async function () {
      const { plugin } = makeGuard()
      for (const address of ['bob@example.net', 'hijack-guardx@mx.test.example', 'hijack-guard@example.com']) {
        assert.equal((await rcpt(plugin, session({ relaying: false }), address)).rc, undefined, address)
      }
    })

    it('refuses a second, different recipient after the reply address with 452 4.5.3, and keeps the reply address', async function () {
      const { plugin } = makeGuard()
      const c = session({ relaying: false })
      assert.equal((await rcpt(plugin, c, REPLY_ADDRESS)).rc, constants.ok)
      const second = await rcpt(plugin, c, 'bob@example.net')
      assert.equal(second.rc, constants.denysoft)
      assert.match(replyText(second.msg), /^452 4\.5\.3 .*hijack-guard@mx\.test\.example/)
      assert.deepEqual(
        transactionOf(c).rcpt_to.map((a) => a.address),
        [REPLY_ADDRESS],
      )
    })

    it('refuses the reply address after another recipient with 452 4.5.3', async function () {
      const { plugin } = makeGuard()
      const c = session({ login: 'bob@example.com' })
      assert.equal((await rcpt(plugin, c, 'carol@example.net')).rc, undefined)
      const answer = await rcpt(plugin, c, REPLY_ADDRESS)
      assert.equal(answer.rc, constants.denysoft)
      assert.match(replyText(answer.msg), /^452 4\.5\.3 /)
      assert.deepEqual(
        transactionOf(c).rcpt_to.map((a) => a.address),
        ['carol@example.net'],
      )
    })
  })

  describe('the alert', function () {
    it('hands the alert to the mail seam exactly once when an account trips, to the alert recipients, carrying a live token', async function () {
      const { plugin, sent } = makeGuard()
      const { alert, replyTo, messageId, subject } = await trip(plugin, sent)
      for (let i = 0; i < 3; i++) assert.equal((await send(plugin, ALICE)).rc, constants.deny)
      await settle()
      assert.equal(sent.length, 1)
      assert.deepEqual([...alert.to], [ADMIN])
      assert.equal(alert.from, REPLY_ADDRESS)
      const token = /^hijack-guard\+hg-([0-9a-f]{32})@mx\.test\.example$/.exec(replyTo)?.[1]
      assert.ok(token, replyTo)
      assert.ok(alert.message.includes(token))
      assert.ok(messageId.includes(token))
      assert.ok(subject.includes(token))
      assert.match(subject, /alice@example\.com/)
      assert.equal(await guardStore(plugin).tokenAccount(token), ALICE)
    })
  })

  describe('consuming a reply', function () {
    it('consumes a reply at queue_outbound with OK (250) and does not count it', async function () {
      const { plugin } = makeGuard()
      const c = await adminReply(plugin, { subject: 'x', messageId: '<x@example.com>', replyTo: REPLY_ADDRESS })
      const answer = await queueOutbound(plugin, c)
      assert.equal(answer.rc, constants.ok)
      assert.match(replyText(answer.msg), /^250 /)
      // messages = 1/1m: the reply took none of it.
      assert.equal((await send(plugin, ADMIN)).rc, undefined)
      assert.equal((await send(plugin, ADMIN)).rc, constants.deny)
    })

    it('consumes a reply at queue with OK (250), and leaves other messages to the queue plugins', async function () {
      const { plugin } = makeGuard()
      const c = session({ relaying: false, mailFrom: ADMIN })
      assert.equal((await rcpt(plugin, c, REPLY_ADDRESS)).rc, constants.ok)
      const answer = await queue(plugin, c)
      assert.equal(answer.rc, constants.ok)
      assert.match(replyText(answer.msg), /^250 /)
      const other = session({ relaying: false })
      assert.equal((await rcpt(plugin, other, 'bob@example.net')).rc, undefined)
      assert.equal((await queue(plugin, other)).rc, undefined)
    })

    it('re-enables the account on an authenticated admin reply, confirms once to the admin, and MAIL FROM and counting start afresh', async function () {
      const { plugin, sent } = makeGuard()
      const alert = await trip(plugin, sent)
      assert.equal((await mail(plugin, session({ login: ALICE }))).rc, constants.denydisconnect)

      const c = await adminReply(plugin, alert)
      const answer = await queueOutbound(plugin, c)
      assert.equal(answer.rc, constants.ok)
      assert.match(replyText(answer.msg), /^250 /)
      await settle()

      const notices = sent.slice(1)
      assert.equal(notices.length, 1)
      const notice = notices[0]
      assert.ok(notice)
      assert.deepEqual([...notice.to], [ADMIN])
      const header = parseHeader(notice.message)
      assert.equal(header.get_decoded('In-Reply-To').trim(), '<3f6c1a2e-8b4d-4e0f-9a7c-2d5e6f708192@example.com>')
      assert.equal(header.get_decoded('Auto-Submitted').trim(), 'auto-replied')
      assert.match(header.get_decoded('Subject'), /alice@example\.com.*re-enabled/)
      assert.deepEqual(fixtures.getResult(transactionOf(c), plugin).pass, ['reactivated'])

      const after = session({ login: ALICE })
      assert.equal((await mail(plugin, after)).rc, undefined)
      const store = guardStore(plugin)
      assert.equal(await store.getDisabled(ALICE), null)
      // Its counters start again from zero: messages = 1/1m allows one more.
      assert.equal((await send(plugin, ALICE)).rc, undefined)
      const audit = await store.auditLog({ account: ALICE })
      assert.deepEqual(
        audit.map((e) => [e.action, e.actor, e.how]),
        [
          ['enable', ADMIN, 'reply'],
          ['disable', 'limit', 'limit'],
        ],
      )
    })

    it('consumes but does not act on the same reply from a session that did not authenticate, and answers nobody', async function () {
      const { plugin, sent } = makeGuard()
      const alert = await trip(plugin, sent)
      const c = await adminReply(plugin, alert, { login: null, relaying: false })
      const answer = await queue(plugin, c)
      assert.equal(answer.rc, constants.ok)
      await settle()
      assert.equal(sent.length, 1, 'no notice')
      assert.equal((await mail(plugin, session({ login: ALICE }))).rc, constants.denydisconnect)
      assert.match(fixtures.getResult(transactionOf(c), plugin).fail.join(), /authenticated/)
    })

    it('tells an admin whose reply carries an unknown token why nothing was re-enabled', async function () {
      const { plugin, sent } = makeGuard()
      const alert = await trip(plugin, sent)
      const forged = {
        ...alert,
        replyTo: 'hijack-guard+hg-0123456789abcdef0123456789abcdef@mx.test.example',
        subject: 'x',
        messageId: '<x@example.com>',
      }
      const answer = await queueOutbound(plugin, await adminReply(plugin, forged))
      assert.equal(answer.rc, constants.ok)
      await settle()
      assert.equal(sent.length, 2)
      assert.deepEqual([...(sent[1]?.to ?? [])], [ADMIN])
      assert.match(sent[1]?.message ?? '', /unknown or expired token/)
      assert.notEqual(await guardStore(plugin).getDisabled(ALICE), null)
    })

    it('answers 451 4.3.0 (DENYSOFT) rather than consuming a reply when the store fails', async function () {
      const { plugin, sent } = makeGuard(INI, { store: failingStore('connection refused') })
      const alert = {
        subject: 'Re: x',
        messageId: '<x@example.com>',
        replyTo: 'hijack-guard+hg-5f2b8c1d9e0a4b7c8d6e3f1a2b9c0d4e@mx.test.example',
      }
      for (const [hook, relaying] of [
        [queueOutbound, true],
        [queue, false],
      ] as const) {
        const c = await adminReply(plugin, alert, { relaying })
        const answer = await hook(plugin, c)
        assert.equal(answer.rc, constants.denysoft)
        assert.match(replyText(answer.msg), /^451 4\.3\.0 /)
        assert.match(fixtures.getResult(c, plugin).err.join(), /connection refused/)
      }
      assert.equal(sent.length, 0)
    })
  })

  describe('a message refused after it was counted', function () {
    it('keeps the count when a later queue_outbound plugin refuses the message: the plugin has no deny hook', async function () {
      const { plugin } = makeGuard(`[limits]\nmessages=2/1m\nrecipients=0\n[alert]\nto=${ADMIN}\n`)
      assert.equal(plugin.hook_deny, undefined)
      assert.equal((await send(plugin, ALICE)).rc, undefined)
      assert.equal((await send(plugin, ALICE)).rc, undefined)
      assert.equal((await send(plugin, ALICE)).rc, constants.deny)
    })
  })
})
