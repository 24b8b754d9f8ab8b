// The hooks that run for every recipient, message or delivery attempt (issue 10, item 4),
// through the compiled plugin: what they answer for the ordinary case, that they answer before
// the hook call returns (no promise in between), and that they never reach the store then.

import assert from 'node:assert/strict'
import * as constants from 'haraka-constants'
import { Address } from '@haraka/email-address'
import type { FixtureConnection } from 'haraka-test-fixtures'
import type { Next } from '../../lib/haraka'
import type { Store } from '../../lib/store'
import { fakeStore } from '../../support'
import { callHook, fixtureSession, makeGuard, transactionOf, type GuardPlugin } from '../../support/plugin'

const INI = '[limits]\nmessages=100/1m\n[alert]\nto=postmaster@example.com\n[held]\nretry=30s\n'

/** A store that records the name of every member called (but watchEnables); each call rejects ("not stubbed") unless `overrides` has it. */
function recordingStore(overrides: Partial<Store> = {}): { store: Store; calls: string[] } {
  const calls: string[] = []
  const inner = fakeStore(overrides)
  const store = new Proxy(inner, {
    get(target, prop, receiver): unknown {
      const value: unknown = Reflect.get(target, prop, receiver)
      // watchEnables registers a listener once per store: no call to the store, not recorded.
      if (typeof value !== 'function' || prop === 'watchEnables') return value
      return (...args: unknown[]): unknown => {
        calls.push(String(prop))
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
  return { store, calls }
}

/** Calls a hook as Haraka does; `sync` is true when it answered before the call returned. */
function callNow(
  plugin: GuardPlugin,
  method: string,
  ...args: unknown[]
): { sync: boolean; rc?: number; msg?: unknown } {
  const hook = plugin[method] as (next: Next, ...rest: unknown[]) => void
  const out: { sync: boolean; rc?: number; msg?: unknown; answered: boolean } = { sync: false, answered: false }
  hook.call(
    plugin,
    (rc, msg) => {
      out.answered = true
      out.rc = rc
      out.msg = msg
    },
    ...args,
  )
  out.sync = out.answered
  return out
}

interface Queued {
  todo: { uuid: string; notes: Record<string, unknown> }
  hijackGuardDrop?: string
  logwarn(...args: unknown[]): void
  lognotice(...args: unknown[]): void
}

/** An outbound HMailItem as the hooks see it; `countedAgoMs` puts the plugin's count note on it. */
function queued(countedAgoMs?: number): Queued {
  const notes: Record<string, unknown> = {}
  if (countedAgoMs !== undefined)
    notes.hijack_guard = { account: 'alice@example.com', recipients: 1, at: 1000, countedAt: Date.now() - countedAgoMs }
  return { todo: { uuid: 'Q1', notes }, logwarn: () => undefined, lognotice: () => undefined }
}

function session(login?: string): FixtureConnection {
  return fixtureSession({ login, relaying: true, mailFrom: 'alice@example.com', rcptTo: ['bob@example.net'] })
}

describe('plugin: the hooks on every message answer at once and leave the store alone', function () {
  describe('send_email (outbound, every delivery attempt)', function () {
    it('lets a message that was never counted go on at once, without a store call', function () {
      const { store, calls } = recordingStore()
      const { plugin } = makeGuard(INI, { store })
      const out = callNow(plugin, 'hook_send_email', queued())
      assert.deepEqual([out.sync, out.rc], [true, undefined])
      assert.deepEqual(calls, [])
    })

    it('lets the first attempt of a message counted a moment ago go on at once, without a store call', function () {
      const { store, calls } = recordingStore()
      const { plugin } = makeGuard(INI, { store })
      const out = callNow(plugin, 'hook_send_email', queued(10))
      assert.deepEqual([out.sync, out.rc], [true, undefined])
      assert.deepEqual(calls, [])
    })

    it('looks a later attempt up and holds the message of a disabled account (DELAY by [held] retry)', async function () {
      const { store, calls } = recordingStore({
        heldState: async () => ({ disabled: true, dropBefore: 0 }),
        hold: async () => undefined,
      })
      const { plugin } = makeGuard(INI, { store })
      const out = await callHook(plugin, 'hook_send_email', queued(60_000))
      assert.deepEqual([out.rc, out.msg], [constants.delay, 30])
      assert.deepEqual(calls, ['heldState', 'hold'])
    })

    it('an enable notice (Store.watchEnables) hands the messages it holds of that account back to outbound now, once; null hands back all', async function () {
      let tell: (account: string | null) => void = () => assert.fail('watchEnables was not called')
      const { store } = recordingStore({
        heldState: async () => ({ disabled: true, dropBefore: 0 }),
        hold: async () => undefined,
        watchEnables: (listener) => void (tell = listener),
      })
      const { plugin } = makeGuard(INI, { store })
      const requeued: unknown[] = []
      const held = (plugin.guard as unknown as { process: { held: { requeue: (m: unknown) => boolean } } }).process.held
      held.requeue = (mail) => requeued.push(mail) > 0
      const mail = queued(60_000)
      assert.equal((await callHook(plugin, 'hook_send_email', mail)).rc, constants.delay)
      tell('bob@example.com')
      assert.deepEqual(requeued, [], 'another account: nothing')
      tell('alice@example.com')
      assert.deepEqual(requeued, [mail])
      tell('alice@example.com')
      assert.deepEqual(requeued, [mail], 'handed back once: the next attempt looks again')
      assert.equal((await callHook(plugin, 'hook_send_email', mail)).rc, constants.delay)
      tell(null)
      assert.deepEqual(requeued, [mail, mail])
    })

    it('an enable notice that comes while the store is being read hands the message back right after its DELAY', async function () {
      let tell: (account: string | null) => void = () => undefined
      const { store } = recordingStore({
        heldState: async () => {
          tell('alice@example.com') // the enable lands between the read and the DELAY
          return { disabled: true, dropBefore: 0 }
        },
        hold: async () => undefined,
        watchEnables: (listener) => void (tell = listener),
      })
      const { plugin } = makeGuard(INI, { store })
      const requeued: unknown[] = []
      const held = (plugin.guard as unknown as { process: { held: { requeue: (m: unknown) => boolean } } }).process.held
      held.requeue = (mail) => requeued.push(mail) > 0
      const mail = queued(60_000)
      assert.equal((await callHook(plugin, 'hook_send_email', mail)).rc, constants.delay)
      await new Promise((resolve) => setImmediate(resolve))
      assert.deepEqual(requeued, [mail])
    })

    it('marks a later attempt of a message an operator dropped, and lets it go on to get_mx', async function () {
      const { store } = recordingStore({
        heldState: async () => ({ disabled: true, dropBefore: 5000 }),
        release: async () => true,
      })
      const { plugin } = makeGuard(INI, { store })
      const mail = queued(60_000)
      const out = await callHook(plugin, 'hook_send_email', mail)
      assert.equal(out.rc, undefined)
      assert.match(mail.hijackGuardDrop ?? '', /dropped by an operator/)
    })
  })

  describe('get_mx and bounce (outbound)', function () {
    it('get_mx: answers CONT at once for a message not marked for dropping, DENY with the reason for one that is', function () {
      const { store, calls } = recordingStore()
      const { plugin } = makeGuard(INI, { store })
      const plain = callNow(plugin, 'refuse_dropped', queued(), 'example.net')
      assert.deepEqual([plain.sync, plain.rc], [true, undefined])
      const dropped = Object.assign(queued(60_000), { hijackGuardDrop: 'dropped by an operator' })
      const refused = callNow(plugin, 'refuse_dropped', dropped, 'example.net')
      assert.deepEqual([refused.sync, refused.rc, refused.msg], [true, constants.deny, 'dropped by an operator'])
      assert.deepEqual(calls, [])
    })

    it('bounce: lets a bounce go out (CONT) at once, and suppresses (OK) the bounce of a dropped message', function () {
      const { store, calls } = recordingStore()
      const { plugin } = makeGuard(INI, { store })
      assert.deepEqual(callNow(plugin, 'hook_bounce', queued(), new Error('550')).rc, undefined)
      const dropped = Object.assign(queued(60_000), { hijackGuardDrop: 'held longer than [held] max_hold' })
      const out = callNow(plugin, 'hook_bounce', dropped, new Error('No MX'))
      assert.deepEqual([out.sync, out.rc], [true, constants.ok])
      assert.deepEqual(calls, [])
    })
  })

  describe('rcpt, queue and queue_outbound', function () {
    it('rcpt: answers an ordinary recipient at once, without a store call, and still accepts the reply address', function () {
      const { store, calls } = recordingStore()
      const { plugin } = makeGuard(INI, { store })
      const c = session('alice@example.com')
      const out = callNow(plugin, 'check_rcpt', c, [new Address('<carol@Example.ORG>'), []])
      assert.deepEqual([out.sync, out.rc], [true, undefined])
      const c2 = fixtureSession({ relaying: false, mailFrom: 'someone@elsewhere.example' })
      const reply = new Address('<Hijack-Guard+hg-0123@MX.TEST.EXAMPLE>')
      transactionOf(c2).rcpt_to.push(reply)
      const accepted = callNow(plugin, 'check_rcpt', c2, [reply, []])
      assert.deepEqual([accepted.sync, accepted.rc], [true, constants.ok])
      assert.deepEqual(calls, [])
    })

    it('queue: passes a message that is not a reply to an alert on at once, without a store call', function () {
      const { store, calls } = recordingStore()
      const { plugin } = makeGuard(INI, { store })
      const c = fixtureSession({ relaying: false, mailFrom: 'someone@elsewhere.example', rcptTo: ['x@test.example'] })
      const out = callNow(plugin, 'consume_reply', c)
      assert.deepEqual([out.sync, out.rc], [true, undefined])
      assert.deepEqual(calls, [])
    })

    it('queue_outbound: answers at once for a session without a login and for an exempt account', function () {
      const { store, calls } = recordingStore()
      const { plugin } = makeGuard(`${INI}[exempt]\naccounts=newsletter@example.com\n`, { store })
      const anonymous = callNow(plugin, 'count_message', session())
      assert.deepEqual([anonymous.sync, anonymous.rc], [true, undefined])
      const c = session('Newsletter@Example.COM')
      const exempt = callNow(plugin, 'count_message', c)
      assert.deepEqual([exempt.sync, exempt.rc], [true, undefined])
      assert.deepEqual(calls, [])
    })

    it('queue_outbound: counts a message once with its evidence: distinct recipient domains in order, the decoded subject', async function () {
      const inputs: unknown[] = []
      const { store } = recordingStore({
        record: async (input) => {
          inputs.push(input.summary)
          return { status: 'ok', at: 1, counts: [], flipped: false }
        },
      })
      const { plugin } = makeGuard(INI, { store })
      const c = fixtureSession({
        login: 'alice@example.com',
        relaying: true,
        mailFrom: 'alice@example.com',
        rcptTo: [
          'a@one.example',
          'b@TWO.example',
          'c@one.example',
          'd@3.example',
          'e@4.example',
          'f@5.example',
          'g@6.example',
        ],
        headers: { Subject: '=?UTF-8?Q?Rechnung_=C3=BCberf=C3=A4llig?=' },
      })
      const out = await callHook(plugin, 'count_message', c)
      assert.equal(out.rc, undefined)
      assert.deepEqual(inputs, [
        {
          ip: '192.0.2.7',
          helo: 'client.example',
          domains: ['one.example', 'two.example', '3.example', '4.example', '5.example'],
          subject: 'Rechnung überfällig',
        },
      ])
    })
  })
})
