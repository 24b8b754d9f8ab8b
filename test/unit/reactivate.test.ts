// The security decision of reactivation by reply (docs/security.md), against the memory store with an
// injectable clock. Each account is tripped for real (store.record over a limit of 1), so the
// token is one the store issued; every refusal is followed by the check that it changed nothing
// and did not spend the token.

import * as assert from 'node:assert/strict'
import * as path from 'node:path'
import { parseConfig, type Config } from '../../lib/config'
import { handleReply, type ReplyMessage } from '../../lib/reactivate'
import type { Store } from '../../lib/store'
import { createMemoryStore } from '../../lib/store/memory'
import { tmpDir } from '../../support/process'
import { newToken, refused, trip, type Refusal } from './helpers'

const T0 = Date.UTC(2024, 2, 5, 14, 7, 9)
const DAY = 86_400_000
const ALICE = 'alice@example.com'
const ADMIN = 'postmaster@example.com'

/** A config as the plugin builds it from hijack-guard.ini. */
function config(reactivate: Record<string, string> = {}): Config {
  return parseConfig(
    {
      limits: { messages: '1/1m', recipients: '0' },
      alert: { to: ADMIN },
      reactivate,
    },
    'mx.test.example',
  )
}

interface World {
  readonly store: Store
  readonly config: Config
  /** The store's clock: the test moves `now`. */
  readonly clock: { now: number }
  /** Sends two messages over messages = 1/1m: the second disables the account under `token`. */
  trip(account?: string, token?: string): Promise<string>
}

/** A memory store on a temp state file whose clock the test moves. */
function world(reactivate: Record<string, string> = {}): World {
  const clock = { now: T0 }
  const store = createMemoryStore({ stateFile: path.join(tmpDir('reactivate'), 'state.json'), now: () => clock.now })
  const cfg = config(reactivate)
  return {
    store,
    config: cfg,
    clock,
    trip: (account = ALICE, token = newToken()) =>
      trip(store, { account, rules: cfg.rules, tokenTtlMs: cfg.reactivate.tokenTtlMs, token }),
  }
}

type ReplyOverrides = Partial<ReplyMessage> & {
  /** Header fields (lower-case names) over the defaults; '' for a field the reply does not have. */
  readonly headers?: Record<string, string>
}

/** An admin's reply to the alert of `token`, sent to the Reply-To address. */
function reply(token: string, overrides: ReplyOverrides = {}): ReplyMessage {
  const { headers, ...rest } = overrides
  const fields: Record<string, string> = {
    subject: `Re: Account alice@example.com disabled: reached 1 messages in 1 minute [hg-${token}]`,
    'in-reply-to': `<hg-${token}.7d3e9a41@mx.test.example>`,
    references: `<hg-${token}.7d3e9a41@mx.test.example>`,
    ...headers,
  }
  return {
    authUser: ADMIN,
    mailFrom: ADMIN,
    recipients: [{ local: `hijack-guard+hg-${token}`, domain: 'mx.test.example' }],
    header: (name) => fields[name.toLowerCase()] ?? '',
    ...rest,
  }
}

describe('reactivate: handleReply', function () {
  /** Refused, still disabled, and the same token still re-enables the account for the admin. */
  async function assertRefusedAndUnspent(
    w: World,
    outcome: Refusal,
    reason: RegExp,
    token: string,
    account = ALICE,
  ): Promise<void> {
    assert.equal(outcome.result, 'refused', JSON.stringify(outcome))
    assert.match(outcome.reason, reason)
    assert.notEqual(await w.store.getDisabled(account), null, 'still disabled')
    const retry = await handleReply(reply(token), w.config, w.store)
    assert.deepEqual(retry, { result: 'reactivated', account, actor: ADMIN }, 'the token was not spent')
    assert.equal(await w.store.getDisabled(account), null)
  }

  describe('[reactivate] max_reply_enables', function () {
    const enabledByReply = async (w: World, at: number): Promise<void> =>
      w.store.audit({ at, account: ALICE, action: 'enable', actor: ADMIN, how: 'reply' })

    it('refuses a reply once the account was re-enabled by reply max times in the window; the token is not spent', async function () {
      const w = world({ max_reply_enables: '2/30d' })
      await enabledByReply(w, Date.now() - 40 * 86_400_000)
      await enabledByReply(w, Date.now() - 86_400_000)
      const token = await w.trip()
      assert.deepEqual(await handleReply(reply(token), w.config, w.store), {
        result: 'reactivated',
        account: ALICE,
        actor: ADMIN,
      })
      await enabledByReply(w, Date.now())
      const again = await w.trip()
      const outcome = await handleReply(reply(again), w.config, w.store)
      assert.equal(outcome.result, 'refused')
      assert.equal(outcome.result === 'refused' && outcome.code, 'too-many-replies')
      assert.match(
        outcome.result === 'refused' ? outcome.reason : '',
        /re-enabled by reply 2 times within 2\/30d.*use the command line/,
      )
      assert.equal(outcome.result === 'refused' && outcome.tellSender, true, 'the admin hears why')
      assert.notEqual(await w.store.getDisabled(ALICE), null, 'still disabled')
      assert.deepEqual(await handleReply(reply(again), config({ max_reply_enables: '' }), w.store), {
        result: 'reactivated',
        account: ALICE,
        actor: ADMIN,
      })
    })
  })

  describe('success', function () {
    it('re-enables the account for an authenticated admin with the current token, and clears its counters', async function () {
      const w = world()
      const token = await w.trip()
      const outcome = await handleReply(reply(token), w.config, w.store)
      assert.deepEqual(outcome, { result: 'reactivated', account: ALICE, actor: ADMIN })
      assert.equal(await w.store.getDisabled(ALICE), null)
      assert.deepEqual(
        (await w.store.counts(ALICE, w.config.rules)).map((c) => c.count),
        w.config.rules.map(() => 0),
      )
    })

    it('accepts the admin login in any case and with surrounding white space', async function () {
      const w = world()
      const token = await w.trip()
      const outcome = await handleReply(reply(token, { authUser: ' PostMaster@Example.COM ' }), w.config, w.store)
      assert.equal(outcome.result, 'reactivated')
      assert.equal(outcome.actor, ADMIN)
    })

    it('accepts a login named in [reactivate] admins, which then replaces the alert recipients', async function () {
      const w = world({ admins: 'Ops@Example.com' })
      const token = await w.trip()
      const byPostmaster = await handleReply(reply(token), w.config, w.store)
      assert.equal(byPostmaster.result, 'refused')
      const byOps = await handleReply(
        reply(token, { authUser: 'ops@example.com', mailFrom: 'ops@example.com' }),
        w.config,
        w.store,
      )
      assert.equal(byOps.result, 'reactivated')
    })

    it('finds the token wherever the client kept it: only the recipient, only In-Reply-To, only References, only the Subject', async function () {
      const plain = [{ local: 'hijack-guard', domain: 'mx.test.example' }]
      const none = { subject: 'Re: alice', 'in-reply-to': '', references: '' }
      const cases: Record<string, (t: string) => ReplyMessage> = {
        recipient: (t) => reply(t, { headers: none }),
        'In-Reply-To': (t) =>
          reply(t, { recipients: plain, headers: { ...none, 'in-reply-to': `<hg-${t}.7d3e9a41@mx.test.example>` } }),
        References: (t) =>
          reply(t, {
            recipients: plain,
            headers: { ...none, references: `<x@example.com> <hg-${t}.7d3e9a41@mx.test.example>` },
          }),
        Subject: (t) =>
          reply(t, { recipients: plain, headers: { ...none, subject: `Re: Account disabled [hg-${t}]` } }),
      }
      for (const [where, make] of Object.entries(cases)) {
        const w = world()
        const token = await w.trip()
        assert.equal((await handleReply(make(token), w.config, w.store)).result, 'reactivated', where)
      }
    })

    it('under policy = token, re-enables for anyone who has the token, even without AUTH', async function () {
      const w = world({ policy: 'token' })
      const token = await w.trip()
      const outcome = await handleReply(
        reply(token, { authUser: null, mailFrom: 'someone@elsewhere.example' }),
        w.config,
        w.store,
      )
      assert.equal(outcome.result, 'reactivated')
      assert.equal(outcome.account, ALICE)
      assert.match(outcome.actor, /someone@elsewhere\.example/)
      assert.equal(await w.store.getDisabled(ALICE), null)
    })

    it('under policy = token, also re-enables for an authenticated login that is not an admin', async function () {
      const w = world({ policy: 'token' })
      const token = await w.trip()
      const outcome = await handleReply(
        reply(token, { authUser: 'bob@example.com', mailFrom: 'bob@example.com' }),
        w.config,
        w.store,
      )
      assert.deepEqual(outcome, { result: 'reactivated', account: ALICE, actor: 'bob@example.com' })
    })
  })

  describe('refusals', function () {
    it('refuses an automatic reply (Auto-Submitted) from an admin, and tells nobody', async function () {
      const w = world()
      const token = await w.trip()
      const outcome = refused(
        await handleReply(reply(token, { headers: { 'auto-submitted': 'auto-replied' } }), w.config, w.store),
      )
      assert.equal(outcome.tellSender, false)
      await assertRefusedAndUnspent(w, outcome, /automatic reply/, token)
    })

    it('refuses a reply with the null sender (a bounce) as automatic', async function () {
      const w = world()
      const token = await w.trip()
      const outcome = refused(await handleReply(reply(token, { mailFrom: '' }), w.config, w.store))
      assert.equal(outcome.tellSender, false)
      await assertRefusedAndUnspent(w, outcome, /automatic reply.*null sender/, token)
    })

    it('refuses an automatic reply under policy = token too', async function () {
      const w = world({ policy: 'token' })
      const token = await w.trip()
      const outcome = refused(
        await handleReply(reply(token, { authUser: null, headers: { precedence: 'bulk' } }), w.config, w.store),
      )
      await assertRefusedAndUnspent(w, outcome, /automatic reply/, token)
    })

    it('refuses a reply from a session that did not authenticate under policy = admin, whatever From and envelope say', async function () {
      const w = world()
      const token = await w.trip()
      const outcome = refused(
        await handleReply(
          reply(token, { authUser: null, headers: { from: `Postmaster <${ADMIN}>` } }),
          w.config,
          w.store,
        ),
      )
      assert.equal(outcome.tellSender, false)
      assert.equal(outcome.actor, `unauthenticated:${ADMIN}`)
      await assertRefusedAndUnspent(w, outcome, /not sent by an authenticated session/, token)
    })

    it('refuses a reply from an authenticated login that is not an admin', async function () {
      const w = world()
      const token = await w.trip()
      const outcome = refused(
        await handleReply(reply(token, { authUser: 'bob@example.com', mailFrom: ADMIN }), w.config, w.store),
      )
      assert.equal(outcome.tellSender, false)
      assert.equal(outcome.actor, 'bob@example.com')
      await assertRefusedAndUnspent(w, outcome, /"bob@example\.com" is not in \[reactivate\] admins/, token)
    })

    it('refuses an admin reply that carries no token, and tells the admin', async function () {
      const w = world()
      const token = await w.trip()
      const fields: Record<string, string> = { subject: 'please re-enable alice' }
      const outcome = refused(
        await handleReply(
          {
            authUser: ADMIN,
            mailFrom: ADMIN,
            recipients: [{ local: 'hijack-guard', domain: 'mx.test.example' }],
            header: (name) => fields[name.toLowerCase()] ?? '',
          },
          w.config,
          w.store,
        ),
      )
      assert.equal(outcome.tellSender, true)
      assert.equal(outcome.account, undefined)
      await assertRefusedAndUnspent(w, outcome, /no incident token/, token)
    })

    it('refuses an unknown token, and tells the admin', async function () {
      const w = world()
      const token = await w.trip()
      const outcome = refused(await handleReply(reply(newToken()), w.config, w.store))
      assert.equal(outcome.tellSender, true)
      await assertRefusedAndUnspent(w, outcome, /unknown or expired token/, token)
    })

    it('refuses a reply from the disabled account itself, even when it is an admin', async function () {
      const w = world({ admins: `${ADMIN}, ${ALICE}` })
      const token = await w.trip()
      const outcome = refused(
        await handleReply(reply(token, { authUser: 'Alice@Example.com', mailFrom: ALICE }), w.config, w.store),
      )
      assert.equal(outcome.account, ALICE)
      await assertRefusedAndUnspent(w, outcome, /cannot re-enable itself/, token)
    })

    it('refuses a reply from the disabled account itself under policy = token', async function () {
      const w = world({ policy: 'token' })
      const token = await w.trip()
      const outcome = refused(await handleReply(reply(token, { authUser: ALICE, mailFrom: ALICE }), w.config, w.store))
      await assertRefusedAndUnspent(w, outcome, /cannot re-enable itself/, token)
    })

    it('refuses the token of an earlier incident of the same account; the current token still works', async function () {
      const w = world()
      const first = await w.trip()
      assert.equal(await w.store.enable(ALICE), true)
      const second = await w.trip()
      const outcome = refused(await handleReply(reply(first), w.config, w.store))
      assert.equal(outcome.account, ALICE)
      assert.equal(outcome.tellSender, true)
      await assertRefusedAndUnspent(w, outcome, /not the one of the current incident/, second)
    })

    it('refuses a token used a second time', async function () {
      const w = world()
      const token = await w.trip()
      assert.equal((await handleReply(reply(token), w.config, w.store)).result, 'reactivated')
      const again = refused(await handleReply(reply(token), w.config, w.store))
      assert.equal(again.result, 'refused')
      assert.match(again.reason, /not disabled|used already/)
      assert.equal(again.account, ALICE)
    })

    it('refuses a used token replayed after the account was disabled again', async function () {
      const w = world()
      const first = await w.trip()
      assert.equal((await handleReply(reply(first), w.config, w.store)).result, 'reactivated')
      const second = await w.trip()
      const replay = refused(await handleReply(reply(first), w.config, w.store))
      await assertRefusedAndUnspent(w, replay, /not the one of the current incident/, second)
    })

    it('lets two replies race with one token re-enable the account once', async function () {
      const w = world()
      const token = await w.trip()
      const outcomes = await Promise.all([
        handleReply(reply(token), w.config, w.store),
        handleReply(reply(token), w.config, w.store),
      ])
      assert.deepEqual(outcomes.map((o) => o.result).sort(), ['reactivated', 'refused'])
    })

    it('accepts the token until token_ttl has passed, and refuses it as expired after', async function () {
      const ttl = 2 * DAY
      const early = world({ token_ttl: '2d' })
      const t1 = await early.trip()
      early.clock.now = T0 + ttl - 1000
      assert.equal((await handleReply(reply(t1), early.config, early.store)).result, 'reactivated')

      const late = world({ token_ttl: '2d' })
      const t2 = await late.trip()
      late.clock.now = T0 + ttl + 1000
      const outcome = refused(await handleReply(reply(t2), late.config, late.store))
      assert.equal(outcome.result, 'refused')
      assert.match(outcome.reason, /expired/)
      assert.equal(outcome.tellSender, true)
      assert.notEqual(await late.store.getDisabled(ALICE), null, 'still disabled')
    })

    it('refuses a long-expired token as unknown, and the account stays disabled', async function () {
      const w = world({ token_ttl: '1d' })
      const token = await w.trip()
      w.clock.now = T0 + 30 * DAY
      const outcome = refused(await handleReply(reply(token), w.config, w.store))
      assert.equal(outcome.result, 'refused')
      assert.match(outcome.reason, /unknown or expired token/)
      assert.notEqual(await w.store.getDisabled(ALICE), null)
    })

    it('does not let a token of one account re-enable another', async function () {
      const w = world()
      const aliceToken = await w.trip(ALICE)
      const bobToken = await w.trip('bob@example.com')
      const outcome = await handleReply(reply(aliceToken), w.config, w.store)
      assert.deepEqual(outcome, { result: 'reactivated', account: ALICE, actor: ADMIN })
      assert.notEqual(await w.store.getDisabled('bob@example.com'), null)
      assert.equal((await handleReply(reply(bobToken), w.config, w.store)).account, 'bob@example.com')
    })

    it('reads the token from the recipient first: an unknown token there is refused though the headers carry the right one', async function () {
      const w = world()
      const token = await w.trip()
      const outcome = refused(
        await handleReply(
          reply(token, { recipients: [{ local: `hijack-guard+hg-${newToken()}`, domain: 'mx.test.example' }] }),
          w.config,
          w.store,
        ),
      )
      await assertRefusedAndUnspent(w, outcome, /unknown or expired token/, token)
    })
  })
})
