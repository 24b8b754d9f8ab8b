// [signals] invalid_recipients through the compiled plugin (haraka-test-fixtures), issue 11 item 2:
// Haraka's deny hook reports another plugin's 5xx to a RCPT (counted), the plugin's own 550 5.5.3
// cap refusal is not; the outbound bounce hook counts the hard-failed recipients of a counted
// message. Over the limit the account is disabled with one alert; monitor mode only reports.

import assert from 'node:assert/strict'
import * as constants from 'haraka-constants'
import DSN from 'haraka-dsn'
import { Address } from '@haraka/email-address'
import type { FixtureConnection } from 'haraka-test-fixtures'
import type { RecordInput, Store } from '../../lib/store'
import {
  callHook,
  distMemoryStore,
  failingStore,
  fixtureSession,
  guardStore,
  makeGuard,
  rcptTo,
  replyText,
  transactionOf,
  type Guard,
} from '../../support/plugin'
import { tmpDir, waitUntil } from '../../support/process'
import * as path from 'node:path'

const INI = '[alert]\nto=postmaster@example.com\n[signals]\ninvalid_recipients=3/1h\n'

/** The memory store, with every invalid() call noted. */
function countingStore(): { store: Store; calls: RecordInput[] } {
  const inner = distMemoryStore().createMemoryStore({ stateFile: path.join(tmpDir('invalid'), 'state.json') })
  const calls: RecordInput[] = []
  return {
    store: {
      ...inner,
      invalid: (input) => {
        calls.push(input)
        return inner.invalid(input)
      },
    },
    calls,
  }
}

function session(login: string | null = 'Alice@Example.com'): FixtureConnection {
  return fixtureSession({ login: login ?? undefined, relaying: login !== null, mailFrom: 'alice@example.com' })
}

/** Haraka's deny hook after `by` answered `rc` to RCPT TO `address` (params as plugins.js passes them). */
function deny(
  g: Guard,
  c: FixtureConnection,
  address: string,
  {
    rc = constants.deny,
    msg = 'No such user',
    by = 'rcpt_to.in_host_list',
    hook = 'rcpt',
  }: { rc?: number; msg?: unknown; by?: string; hook?: string } = {},
) {
  const recipient = new Address(`<${address}>`)
  return callHook(g.plugin, 'count_refused_rcpt', c, [rc, msg, by, 'hook_rcpt', [recipient, {}], hook])
}

const mailFrom = (g: Guard, c: FixtureConnection) =>
  callHook(g.plugin, 'hook_mail', c, [transactionOf(c).mail_from, {}])

/** A queued message of `account` as outbound hands it to the bounce hook. */
function queued(account: string, rcpts: Array<{ host: string; code: number }>) {
  return {
    todo: {
      uuid: 'Q1',
      notes: { hijack_guard: { account, recipients: rcpts.length, at: Date.now(), countedAt: Date.now() } },
      rcpt_to: rcpts.map((r, i) =>
        Object.assign(new Address(`<u${i}@${r.host}>`), { dsn_smtp_code: r.code, dsn_smtp_response: 'User unknown' }),
      ),
    },
    logwarn: () => undefined,
    lognotice: () => undefined,
  }
}

describe('plugin: invalid recipients ([signals] invalid_recipients)', function () {
  it('counts RCPTs another plugin refuses with 550; the 4th of 3/1h disables the account with one alert, and MAIL FROM is refused', async function () {
    const { store, calls } = countingStore()
    const g = makeGuard(INI, { store })
    const c = session()
    for (let i = 0; i < 4; i++) assert.equal((await deny(g, c, `nobody${i}@example.net`)).rc, undefined, 'CONT')
    assert.deepEqual(
      calls.map((x) => [x.account, x.recipients]),
      Array.from({ length: 4 }, () => ['alice@example.com', 1]),
    )
    const record = await guardStore(g.plugin).getDisabled('alice@example.com')
    assert.ok(record, 'disabled')
    assert.equal(record.over?.kind, 'invalid_recipients')
    assert.deepEqual(record.evidence[0]?.domains, ['example.net'])
    assert.match(record.evidence[0]?.subject ?? '', /^550 No such user \(rcpt_to\.in_host_list\)$/)
    await waitFor(() => g.sent.length === 1)
    const alert = g.sent[0]?.message ?? ''
    assert.match(alert, /Subject: Account alice@example\.com disabled: reached 3 invalid recipients/)
    assert.match(alert, /refused for good at RCPT or hard-bounced/)
    assert.match(alert, /invalid_recipients {5}3 of 3 in 1 hour {3}<- limit reached/)
    const next = session()
    const answer = await mailFrom(g, next)
    assert.equal(answer.rc, constants.denydisconnect)
    assert.match(replyText(answer.msg), /^550 5\.7\.1 /)
    await deny(g, c, 'more@example.net')
    assert.equal(g.sent.length, 1, 'one alert per incident')
  })

  it('does not count its own 550 5.5.3 cap refusals, soft refusals, a DSN with a 4xx code, other hooks or unauthenticated sessions', async function () {
    const { store, calls } = countingStore()
    const g = makeGuard(`${INI}[limits]\nmax_recipients_per_message=1\n`, { store })
    const c = session()
    assert.equal((await rcptTo(g.plugin, c, 'a@example.net')).rc, undefined)
    const own = await rcptTo(g.plugin, c, 'b@example.net')
    assert.equal(own.rc, constants.deny, 'the cap refuses the second recipient')
    assert.equal((await deny(g, c, 'b@example.net', { by: g.plugin.name, msg: own.msg })).rc, undefined)
    await deny(g, c, 'x@example.net', { rc: constants.denysoft })
    await deny(g, c, 'x@example.net', { msg: DSN.create(450, 'try later', 1, 0) })
    await deny(g, c, 'x@example.net', { hook: 'mail' })
    await deny(g, session(null), 'x@example.net')
    assert.deepEqual(calls, [])
    await deny(g, c, 'x@example.net', { rc: constants.denydisconnect, msg: DSN.create(550, 'No such user here', 1, 1) })
    await deny(g, c, 'y@example.net', { hook: 'rcpt_ok' })
    assert.equal(calls.length, 2, 'DENYDISCONNECT with a 5xx DSN and a refusal at rcpt_ok count')
  })

  it('never counts an [exempt] account', async function () {
    const { store, calls } = countingStore()
    const g = makeGuard(`${INI}[exempt]\naccounts=alice@example.com\n`, { store })
    for (let i = 0; i < 5; i++) await deny(g, session(), `n${i}@example.net`)
    await callHook(g.plugin, 'hook_bounce', queued('alice@example.com', [{ host: 'example.net', code: 550 }]), {})
    assert.deepEqual(calls, [])
    assert.equal(await guardStore(g.plugin).getDisabled('alice@example.com'), null)
  })

  it('takes an [account:LOGIN] invalid_recipients, and empty turns it off', async function () {
    const { store, calls } = countingStore()
    const g = makeGuard(
      `${INI}[account:bob@example.com]\ninvalid_recipients=1/1h\n[account:carol@example.com]\ninvalid_recipients=\n`,
      {
        store,
      },
    )
    await deny(g, session('bob@example.com'), 'a@example.net')
    await deny(g, session('bob@example.com'), 'b@example.net')
    assert.equal((await guardStore(g.plugin).getDisabled('bob@example.com'))?.over?.text, '1/1h')
    await deny(g, session('carol@example.com'), 'a@example.net')
    assert.deepEqual(
      calls.map((x) => x.account),
      ['bob@example.com', 'bob@example.com'],
    )
  })

  it('bounce: counts the hard-failed recipients of a counted message and disables over the limit; the bounce still goes out', async function () {
    const { store, calls } = countingStore()
    const g = makeGuard(INI, { store })
    const mail = queued('alice@example.com', [
      { host: 'example.net', code: 550 },
      { host: 'example.org', code: 550 },
      { host: 'example.com', code: 451 },
    ])
    assert.equal((await callHook(g.plugin, 'hook_bounce', mail, new Error('x'))).rc, undefined)
    assert.deepEqual(
      calls.map((x) => x.recipients),
      [2],
      'only the 5xx recipients',
    )
    const err = Object.assign(new Error('Some recipients failed'), {
      bounced_rcpt: [Object.assign(new Address('<z@example.net>'), { dsn_smtp_code: '550' })],
    })
    assert.equal((await callHook(g.plugin, 'hook_bounce', mail, err)).rc, undefined)
    assert.deepEqual(
      calls.map((x) => x.recipients),
      [2, 1],
      'err.bounced_rcpt names the failed recipients',
    )
    assert.equal(await guardStore(g.plugin).getDisabled('alice@example.com'), null, '3 of 3: not over')
    await callHook(g.plugin, 'hook_bounce', mail, err)
    const record = await guardStore(g.plugin).getDisabled('alice@example.com')
    assert.equal(record?.over?.kind, 'invalid_recipients')
    await waitFor(() => g.sent.length === 1)
  })

  it('bounce: ignores mail it did not count, a bounce after temporary failures, and a dropped message (OK)', async function () {
    const { store, calls } = countingStore()
    const g = makeGuard(INI, { store })
    const plain = { todo: { uuid: 'Q', notes: {}, rcpt_to: [{ host: 'x', dsn_smtp_code: 550 }] } }
    assert.equal((await callHook(g.plugin, 'hook_bounce', plain, new Error('x'))).rc, undefined)
    const tempFailed = queued('alice@example.com', [{ host: 'example.net', code: 421 }])
    assert.equal((await callHook(g.plugin, 'hook_bounce', tempFailed, new Error('Too many failures'))).rc, undefined)
    const dropped = Object.assign(queued('alice@example.com', [{ host: 'example.net', code: 550 }]), {
      hijackGuardDrop: 'dropped by an operator',
    })
    assert.equal((await callHook(g.plugin, 'hook_bounce', dropped, new Error('No MX'))).rc, constants.ok)
    assert.deepEqual(calls, [])
  })

  it('monitor mode: reports once when over the limit and never disables', async function () {
    const g = makeGuard(`${INI}[main]\nmode=monitor\n`)
    for (let i = 0; i < 6; i++) await deny(g, session(), `n${i}@example.net`)
    assert.equal(await guardStore(g.plugin).getDisabled('alice@example.com'), null)
    await waitFor(() => g.sent.length === 1)
    assert.match(
      g.sent[0]?.message ?? '',
      /Subject: Monitor: account alice@example\.com would be disabled: reached 3 invalid recipients/,
    )
    assert.equal((await mailFrom(g, session())).rc, undefined)
  })

  it('a store that fails: the deny and bounce hooks answer CONT and log; nothing throws', async function () {
    const g = makeGuard(`${INI}[main]\non_store_error=closed\n`, { store: failingStore() })
    const c = session()
    assert.equal((await deny(g, c, 'a@example.net')).rc, undefined)
    const results = c.results as { get(plugin: unknown): { msg?: string[] } | undefined }
    assert.match(results.get(g.plugin)?.msg?.join('\n') ?? '', /deny \(rcpt\), invalid_recipients not counted/)
    // The first failure of an outage is logged, later ones counted: a fresh plugin for the bounce.
    const b = makeGuard(INI, { store: failingStore() })
    const bounced = await callHook(b.plugin, 'hook_bounce', queued('alice@example.com', [{ host: 'x', code: 550 }]), {})
    assert.equal(bounced.rc, undefined)
    assert.ok(b.logs.some(([level, m]) => level === 'logerror' && /bounce, invalid_recipients not counted/.test(m)))
  })
})

function waitFor(check: () => boolean): Promise<unknown> {
  return waitUntil(async () => check(), { timeoutMs: 2000, intervalMs: 5, message: 'the alert is queued' })
}
