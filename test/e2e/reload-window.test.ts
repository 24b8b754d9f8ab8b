// End-to-end: a hot reload that changes a window, the buckets or adds an [account:] override
// must not give an account a fresh quota (issue 8, item 8). Real Haraka with the packed plugin,
// real redis-server (or the memory store), a real SMTP client, a loopback sink. The reload is
// awaited on Haraka's log ("hijack-guard.ini reloaded", about 5 s after the file changes).

import assert from 'node:assert/strict'
import { openSession, tryAuth, type HarakaInstance, type Session } from '../../support'
import {
  assert250,
  assert535,
  assert550,
  countMatches,
  disabledKey,
  pluginIni,
  waitSubjects,
  e2eWorld,
  cliOk,
} from './helpers'

const PW = 'pw'
const OUT = 'bob@outside.example'
const RELOADED = /hijack-guard\.ini reloaded: /
const RELOAD_TIMEOUT_MS = 20000

type StoreKind = 'redis' | 'memory'

/** One entry of `counts` in `hijack-guard --json show`: the live count of one limit. */
interface ShownCount {
  readonly kind: string
  readonly count: number
  readonly text: string
}

function isShownCount(value: unknown): value is ShownCount {
  if (value === null || typeof value !== 'object') return false
  const c = value as Record<string, unknown>
  return typeof c.kind === 'string' && typeof c.count === 'number' && typeof c.text === 'string'
}

describe('e2e: a reload that changes the windows keeps the counts', function () {
  this.timeout(90000)

  const e2e = e2eWorld()

  const iniFor = (store: StoreKind, limits: string): string =>
    pluginIni(store === 'redis' ? e2e.redis.port : null, { store, limits })

  /** A Haraka instance of the given store and limits, started. */
  const haraka = (store: StoreKind, limits: string, users: Record<string, string>): Promise<HarakaInstance> =>
    e2e.haraka({ users, pluginIni: iniFor(store, limits) })

  /** Rewrites config/hijack-guard.ini and waits (bounded) until the plugin logs the reload. */
  async function reload(srv: HarakaInstance, store: StoreKind, limits: string): Promise<void> {
    const since = srv.logMark()
    srv.writeConfig('hijack-guard.ini', iniFor(store, limits))
    await srv.waitForLog(RELOADED, { since, timeoutMs: RELOAD_TIMEOUT_MS })
    assert.doesNotMatch(srv.log().slice(since), /keeping the previous configuration/)
  }

  /** The live message count `hijack-guard --json show` reports ("19 of 20/2m"), by the CLI the package installed. */
  async function cliCount(srv: HarakaInstance, account: string): Promise<string> {
    const r = await cliOk(srv, ['--json', 'show', account])
    const shown: unknown = JSON.parse(r.stdout)
    const counts: unknown = shown !== null && typeof shown === 'object' && 'counts' in shown ? shown.counts : undefined
    assert.ok(Array.isArray(counts), `no counts in ${r.stdout}`)
    const c = counts.find((x: unknown) => isShownCount(x) && x.kind === 'messages') as unknown
    assert.ok(isShownCount(c), `no messages count in ${r.stdout}`)
    return `${c.count} of ${c.text}`
  }

  /** The message over the limit is refused 550 5.7.1, the account is disabled, and stays so. */
  async function assertRefusedAndDisabled(
    srv: HarakaInstance,
    s: Session,
    store: StoreKind,
    account: string,
    subject: string,
  ): Promise<void> {
    const over = await s.send({ from: account, to: [OUT], subject })
    assert550(over, 'data', 'the message over the limit after the reload')
    assert.match(over.response, /reached its limit of 20 messages/)
    assert.equal(countMatches(srv.log(), /ACCOUNT DISABLED/), 1)
    if (store === 'redis') assert.equal(await e2e.redis.command(['EXISTS', disabledKey(account)]), 1)
    assert535(await tryAuth({ port: srv.port, user: account, pass: PW }), 'AUTH of the disabled account')
  }

  for (const store of ['redis', 'memory'] as const) {
    it(`store = ${store}: 19 of messages = 20/1m (30 buckets), then 20/2m with buckets = 10: the 21st is refused 550 5.7.1 and the account disabled`, async function () {
      const alice = 'alice@test.example'
      const srv = await haraka(store, 'messages = 20/1m\nbuckets = 30\nrecipients = 0', { [alice]: PW })
      const s = await openSession({ port: srv.port, user: alice, pass: PW })
      for (let i = 1; i <= 19; i++) {
        assert250(await s.send({ from: alice, to: [OUT], subject: `rw-${store} ${i}` }), `message ${i}`)
      }

      await reload(srv, store, 'messages = 20/2m\nbuckets = 10\nrecipients = 0')
      assert.match(srv.log(), /reloaded: .*messages 20\/2m/)
      if (store === 'redis') {
        assert.equal(await cliCount(srv, alice), '19 of 20/2m', 'the CLI counts across the change too')
      }

      assert250(
        await s.send({ from: alice, to: [OUT], subject: `rw-${store} 20` }),
        'the 20th message, still under the limit',
      )
      await assertRefusedAndDisabled(srv, s, store, alice, `rw-${store} 21`)
      await s.close()
      assert.equal((await waitSubjects(e2e.sink, `rw-${store} `, 20)).length, 20)
      assert.ok(srv.alive())
    })

    it(`store = ${store}: 19 of messages = 20/1m, then an [account:] override 20/3m with buckets = 6: refused and disabled at the 21st; another account keeps the base rules`, async function () {
      const alice = 'alice@test.example'
      const bob = 'bob@test.example'
      const base = 'messages = 20/1m\nbuckets = 30\nrecipients = 0'
      const srv = await haraka(store, base, { [alice]: PW, [bob]: PW })
      const s = await openSession({ port: srv.port, user: alice, pass: PW })
      for (let i = 1; i <= 19; i++) {
        assert250(await s.send({ from: alice, to: [OUT], subject: `ro-${store} ${i}` }), `message ${i}`)
      }
      await reload(srv, store, `${base}\n\n[account:${alice}]\nmessages = 20/3m\nbuckets = 6`)
      if (store === 'redis') {
        assert.equal(await cliCount(srv, alice), '19 of 20/3m', 'the CLI counts across the change too')
      }

      assert250(
        await s.send({ from: alice, to: [OUT], subject: `ro-${store} 20` }),
        'the 20th message, still under the limit',
      )
      await assertRefusedAndDisabled(srv, s, store, alice, `ro-${store} 21`)
      await s.close()
      const b = await openSession({ port: srv.port, user: bob, pass: PW })
      for (let i = 1; i <= 20; i++) {
        assert250(await b.send({ from: bob, to: [OUT], subject: `ro-${store} bob ${i}` }), `bob ${i}`)
      }
      assert550(
        await b.send({ from: bob, to: [OUT], subject: `ro-${store} bob 21` }),
        'data',
        "bob's 21st under the base rules",
      )
      await b.close()
      assert.ok(srv.alive())
    })
  }
})
