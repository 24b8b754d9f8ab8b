// The one contract both stores keep (lib/store/index.ts). Each implementation's test file calls
// contract(name, openStore), where openStore({ now }) opens a fresh, empty store and says what the
// test can do with the store's time (its `clock`):
//   'injected'  the store reads a clock the test owns; `now` is its start, advance(ms) moves it
//               and now() reads it (the memory store)
//   'real'      the store reads a clock nobody can move (Redis TIME)
//
// Each test states the time control it needs:
//   within(...)   everything happens inside one window; any clock
//   passing(...)  store time must pass: an injected clock is advanced, a real one is awaited
//                 (bounded polling) with short windows
//   exact(...)    exact instants on bucket boundaries; registered only for a store opened with
//                 { clock: 'injected' }

import * as assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'

import { parseRules, type Mode, type Rule } from '../../lib/config'
import {
  AUTH_SOURCES_CAP,
  EVIDENCE_CAP,
  NETWORKS_CAP,
  PASSWORDS_CAP,
  type AuthFailureResult,
  type AuditEntry,
  type MessageSummary,
  type RecordInput,
  type RecordResult,
  type Store,
  type WindowCount,
} from '../../lib/store'
import type { PasswordHash } from '../../lib/password'
import { countersTtlMs } from '../../lib/store/series'
import { waitUntil } from '../../support/process'

/** A store opened for one test; cleanup() closes it. */
interface OpenedStore {
  readonly store: Store
  cleanup(): Promise<void>
}

/** A store whose clock the test owns (the memory store's `now` option). */
export interface InjectedClockStore extends OpenedStore {
  readonly clock: 'injected'
  /** Moves the store's clock forward. */
  advance(ms: number): void
  /** The store's clock. */
  now(): number
}

/** A store whose clock nobody can move (Redis TIME). */
export interface RealClockStore extends OpenedStore {
  readonly clock: 'real'
}

export type ContractStore = InjectedClockStore | RealClockStore

/** Opens a fresh, empty store; `now` is where an injected clock starts. */
export type OpenStore<S extends ContractStore> = (start: { readonly now: number }) => Promise<S>

// 2030-01-01T00:00:00Z: on a boundary of every bucket size the tests use.
export const T0 = Date.UTC(2030, 0, 1)
// How long past the nominal window a real clock may take before a test gives up.
const REAL_CLOCK_MARGIN_MS = 3000
const POLL_MS = 25

/** Accounts whose names stress the key encoding; each must be counted on its own. */
export const ODD_ACCOUNTS: readonly string[] = [
  '',
  ' ',
  'a:b',
  '{x}',
  '}{',
  'a}b{c',
  'ü',
  '😀',
  'x'.repeat(300),
  'x'.repeat(1024),
  'a b',
  'a%20b',
  'a%3Ab',
  '%',
  '__proto__',
  'constructor',
  'alice@example.com',
]

/** Pairs that differ only in characters the key encoding escapes. */
export const ESCAPE_PAIRS: readonly (readonly [string, string])[] = [
  ['a b', 'a%20b'],
  ['a:b', 'a%3Ab'],
  ['', '%'],
  ['{x}', '%7Bx%7D'],
]

/** Rules as config.ts builds them, e.g. rules({ messages: '20/1h' }). */
export function rules({
  messages = '',
  recipients = '',
  networks = '',
  buckets = 30,
}: { messages?: string; recipients?: string; networks?: string; buckets?: number } = {}): Rule[] {
  return [
    ...parseRules('limits.messages', 'messages', messages, buckets),
    ...parseRules('limits.recipients', 'recipients', recipients, buckets),
    ...parseRules('signals.networks', 'networks', networks, 1),
  ]
}

/** The summary of message `n`, with `extra` fields replaced. */
export function summary(n: number, extra: Partial<MessageSummary> = {}): MessageSummary {
  return {
    ip: `192.0.2.${n % 250}`,
    helo: `helo${n}.example`,
    domains: [`d${n}.example`],
    subject: `subject ${n}`,
    ...extra,
  }
}

export const TOKEN_TTL_MS = 7 * 86_400_000

export interface RecordOptions {
  readonly recipients?: number
  readonly mode?: Mode
  readonly summary?: MessageSummary
  /** The message's client network ('' = not counted). */
  readonly network?: string
  /** [warn] at, a fraction; 0 = off. */
  readonly warnAt?: number
}

/** A RecordInput; every call carries a fresh reactivation token, as the plugin gives one. */
export function recordInput(
  account: string,
  ruleSet: readonly Rule[],
  { recipients = 1, mode = 'enforce', summary: s = summary(0), network = '', warnAt = 0 }: RecordOptions = {},
): RecordInput {
  return {
    account,
    recipients,
    rules: ruleSet,
    mode,
    summary: s,
    token: randomBytes(16).toString('hex'),
    tokenTtlMs: TOKEN_TTL_MS,
    network,
    warnAt,
  }
}

/** The fields of a RecordResult the contract is about (stores may add more). */
function outcome(result: RecordResult): {
  status: RecordResult['status']
  counts: readonly WindowCount[]
  flipped: boolean
  over?: WindowCount
} {
  const { status, counts, flipped } = result
  return { status, counts, flipped, ...('over' in result && result.over !== undefined ? { over: result.over } : {}) }
}

/** The rule a result went over: fails when it went over none. */
function overOf(result: RecordResult): WindowCount {
  assert.ok('over' in result && result.over, `${result.status}: over no rule`)
  return result.over
}

/** A property of `value` that its type does not declare (to check that it is absent). */
function undeclared(value: object, key: string): unknown {
  return (value as Record<string, unknown>)[key]
}

/**
 * Registers the contract suite for one store. A store with an injected clock is declared with
 * { clock: 'injected' } and also runs the exact-instant tests; a real-clock store without options.
 */
export function contract(name: string, openStore: OpenStore<InjectedClockStore>, options: { clock: 'injected' }): void
export function contract(name: string, openStore: OpenStore<RealClockStore>): void
export function contract(
  name: string,
  openStore: OpenStore<ContractStore>,
  { clock = 'real' }: { clock?: ContractStore['clock'] } = {},
): void {
  describe(`Store contract: ${name}`, function () {
    this.timeout(15_000)

    let ctx: ContractStore | null = null
    let seq = 0

    afterEach(async function () {
      if (ctx) await ctx.cleanup()
      ctx = null
    })

    async function setUp(): Promise<ContractStore> {
      const opened = await openStore({ now: T0 })
      ctx = opened
      assert.equal(opened.clock, clock, `openStore must open a store with the clock it was declared with`)
      return opened
    }

    function within(title: string, fn: (c: ContractStore) => Promise<void>): void {
      it(title, async function () {
        await fn(await setUp())
      })
    }

    function passing(title: string, fn: (c: ContractStore) => Promise<void>): void {
      it(title, async function () {
        await fn(await setUp())
      })
    }

    function exact(title: string, fn: (c: InjectedClockStore) => Promise<void>): void {
      if (clock !== 'injected') return
      it(title, async function () {
        const c = await setUp()
        assert.equal(c.clock, 'injected')
        await fn(c)
      })
    }

    /**
     * Lets `ms` of store time pass, then expects `check` to hold: an injected clock is moved by
     * `ms` and checked once; a real one is polled until `check` holds, at most ms + margin.
     */
    async function afterTime(c: ContractStore, ms: number, check: () => Promise<boolean>, what: string): Promise<void> {
      if (c.clock === 'injected') {
        c.advance(ms)
        assert.ok(await check(), `${what}: not so after ${ms} ms of store time`)
        return
      }
      await waitUntil(check, { timeoutMs: ms + REAL_CLOCK_MARGIN_MS, intervalMs: POLL_MS, message: what })
    }

    /** A store-clock instant the record should carry. */
    function assertStoreNow(c: ContractStore, at: number): void {
      assert.equal(typeof at, 'number')
      if (c.clock === 'injected') assert.equal(at, c.now())
      else assert.ok(Math.abs(at - Date.now()) < 5000, `at ${at} is not close to now ${Date.now()}`)
    }

    function record(
      store: Store,
      account: string,
      ruleSet: readonly Rule[],
      { recipients = 1, mode = 'enforce', summary: s, network = '', warnAt = 0 }: RecordOptions = {},
    ): Promise<RecordResult> {
      seq += 1
      return store.record(
        recordInput(account, ruleSet, { recipients, mode, summary: s ?? summary(seq), network, warnAt }),
      )
    }

    /** The networks total of a result (the first networks rule): fails when there is none. */
    function networkCount(result: RecordResult): number {
      const count = result.counts.find((c) => c.kind === 'networks')?.count
      assert.ok(count !== undefined, `no networks count in ${JSON.stringify(result.counts)}`)
      return count
    }

    /** The total of the messages rule in a result: fails when there is none. */
    function messageCount(result: RecordResult): number {
      const count = result.counts.find((c) => c.kind === 'messages')?.count
      assert.ok(count !== undefined, `no messages count in ${JSON.stringify(result.counts)}`)
      return count
    }

    /** The account's total against the first rule: fails when there is none. */
    async function firstCount(store: Store, account: string, ruleSet: readonly Rule[]): Promise<number> {
      const count = (await store.counts(account, ruleSet))[0]?.count
      assert.ok(count !== undefined, 'counts() answers a total for the first rule')
      return count
    }

    describe('counting', function () {
      within(
        'counts one message and its recipients; the returned counts include the message and counts() agrees',
        async ({ store }) => {
          const r = rules({ messages: '100/1h', recipients: '1000/1h' })
          const first = await record(store, 'alice', r, { recipients: 3 })
          assert.deepEqual(outcome(first), {
            status: 'ok',
            flipped: false,
            counts: [
              { kind: 'messages', max: 100, windowMs: 3_600_000, text: '100/1h', count: 1 },
              { kind: 'recipients', max: 1000, windowMs: 3_600_000, text: '1000/1h', count: 3 },
            ],
          })
          const second = await record(store, 'alice', r, { recipients: 5 })
          assert.deepEqual(
            second.counts.map((c) => c.count),
            [2, 8],
          )
          assert.deepEqual(await store.counts('alice', r), second.counts)
        },
      )

      within('reports zero for every rule and no evidence for an account that never sent', async ({ store }) => {
        const r = rules({ messages: '100/1h', recipients: '1000/1h' })
        assert.deepEqual(
          (await store.counts('nobody', r)).map((c) => [c.text, c.count]),
          [
            ['100/1h', 0],
            ['1000/1h', 0],
          ],
        )
        assert.deepEqual(await store.evidence('nobody'), [])
        assert.equal(await store.getDisabled('nobody'), null)
      })

      within('counts a message in every window of its kind', async ({ store }) => {
        const r = rules({ messages: '100/1m, 1000/1h', recipients: '50/1m, 500/1d' })
        await record(store, 'alice', r, { recipients: 2 })
        const res = await record(store, 'alice', r, { recipients: 4 })
        assert.deepEqual(
          res.counts.map((c) => [c.text, c.count]),
          [
            ['100/1m', 2],
            ['1000/1h', 2],
            ['50/1m', 6],
            ['500/1d', 6],
          ],
        )
        assert.deepEqual(await store.counts('alice', r), res.counts)
      })

      within('counts a message with no recipients as one message and zero recipients', async ({ store }) => {
        const r = rules({ messages: '10/1h', recipients: '10/1h' })
        const res = await record(store, 'alice', r, { recipients: 0 })
        assert.deepEqual(
          res.counts.map((c) => c.count),
          [1, 0],
        )
      })

      within('counts and refuses nothing when there are no rules', async ({ store }) => {
        for (let i = 0; i < 3; i++) {
          assert.deepEqual(outcome(await record(store, 'alice', [], { recipients: 100 })), {
            status: 'ok',
            counts: [],
            flipped: false,
          })
        }
        assert.equal(await store.getDisabled('alice'), null)
      })

      within(
        'answers counts() for the rules asked, whatever rules the messages were counted under',
        async ({ store }) => {
          await record(store, 'alice', rules({ messages: '100/1h', recipients: '100/1h' }), { recipients: 2 })
          const onlyRecipients = rules({ recipients: '100/1h' })
          assert.deepEqual(
            (await store.counts('alice', onlyRecipients)).map((c) => [c.kind, c.count]),
            [['recipients', 2]],
          )
          assert.deepEqual(
            (await store.counts('alice', rules({ messages: '100/1d', recipients: '100/10m' }))).map((c) => c.count),
            [1, 2],
          )
        },
      )

      within(`keeps the newest ${EVIDENCE_CAP} message summaries as evidence, newest first`, async ({ store }) => {
        const r = rules({ messages: '100/1h' })
        const sent = []
        for (let i = 0; i < EVIDENCE_CAP + 3; i++) {
          const s = summary(i, { domains: [`a${i}.example`, `b${i}.example`] })
          sent.push(s)
          await record(store, 'alice', r, { summary: s })
        }
        assert.deepEqual(await store.evidence('alice'), sent.reverse().slice(0, EVIDENCE_CAP))
        assert.deepEqual(await store.evidence('bob'), [])
      })
    })

    describe('limits', function () {
      within(
        'accepts exactly 20 messages under messages = 20/1h and refuses the 21st, naming the rule, without counting it',
        async ({ store }) => {
          const r = rules({ messages: '20/1h' })
          for (let i = 1; i <= 20; i++) {
            const res = await record(store, 'alice', r)
            assert.equal(res.status, 'ok', `message ${i}`)
            assert.equal(messageCount(res), i)
            assert.equal(res.over, undefined, `message ${i} is within the limit`)
            assert.equal(res.flipped, false)
          }
          const refused = await record(store, 'alice', r)
          assert.equal(refused.status, 'refused')
          assert.equal(refused.flipped, true)
          assert.deepEqual(refused.over, { kind: 'messages', max: 20, windowMs: 3_600_000, text: '20/1h', count: 20 })
          assert.deepEqual(
            refused.counts.map((c) => c.count),
            [20],
          )
          assert.deepEqual(
            (await store.counts('alice', r)).map((c) => c.count),
            [20],
          )
        },
      )

      within(
        'disables the account when it refuses: flipped only on that call, later messages are "disabled" and not counted',
        async ({ store }) => {
          const r = rules({ messages: '2/1h' })
          await record(store, 'alice', r)
          await record(store, 'alice', r)
          const refused = await record(store, 'alice', r)
          assert.equal(refused.status, 'refused')
          assert.equal(refused.flipped, true)
          const evidenceBefore = await store.evidence('alice')
          for (let i = 0; i < 3; i++) {
            assert.deepEqual(outcome(await record(store, 'alice', r)), {
              status: 'disabled',
              counts: [],
              flipped: false,
            })
          }
          assert.deepEqual(
            (await store.counts('alice', r)).map((c) => c.count),
            [2],
          )
          assert.deepEqual(await store.evidence('alice'), evidenceBefore)
          assert.notEqual(await store.getDisabled('alice'), null)
        },
      )

      within('refuses the 4th message of 10 recipients under recipients = 30/1m', async ({ store }) => {
        const r = rules({ messages: '100/1m', recipients: '30/1m' })
        for (let i = 1; i <= 3; i++) {
          const res = await record(store, 'alice', r, { recipients: 10 })
          assert.equal(res.status, 'ok')
          assert.deepEqual(
            res.counts.map((c) => c.count),
            [i, 10 * i],
          )
        }
        const refused = await record(store, 'alice', r, { recipients: 10 })
        assert.equal(refused.status, 'refused')
        assert.deepEqual(refused.over, { kind: 'recipients', max: 30, windowMs: 60_000, text: '30/1m', count: 30 })
        assert.deepEqual(
          refused.counts.map((c) => c.count),
          [3, 30],
        )
      })

      within('refuses a single message whose recipients alone exceed the recipients limit', async ({ store }) => {
        const r = rules({ recipients: '30/1m' })
        const refused = await record(store, 'alice', r, { recipients: 31 })
        assert.equal(refused.status, 'refused')
        assert.equal(refused.over.text, '30/1m')
        assert.equal(refused.over.count, 0)
        assert.deepEqual(
          (await store.counts('alice', r)).map((c) => c.count),
          [0],
        )
      })

      within(
        'checks every rule and names the one the message would exceed (messages = 5/1h, 3/1m)',
        async ({ store }) => {
          const r = rules({ messages: '5/1h, 3/1m' })
          for (let i = 0; i < 3; i++) assert.equal((await record(store, 'alice', r)).status, 'ok')
          const refused = await record(store, 'alice', r)
          assert.equal(refused.status, 'refused')
          assert.deepEqual(refused.over, { kind: 'messages', max: 3, windowMs: 60_000, text: '3/1m', count: 3 })
          assert.deepEqual(
            refused.counts.map((c) => [c.text, c.count]),
            [
              ['5/1h', 3],
              ['3/1m', 3],
            ],
          )
        },
      )

      within('refuses on the recipients rule while the messages rule still has room', async ({ store }) => {
        const r = rules({ messages: '3/1m', recipients: '10/1m' })
        assert.equal((await record(store, 'alice', r, { recipients: 4 })).status, 'ok')
        assert.equal((await record(store, 'alice', r, { recipients: 4 })).status, 'ok')
        const refused = await record(store, 'alice', r, { recipients: 4 })
        assert.equal(refused.status, 'refused')
        assert.equal(refused.over.kind, 'recipients')
        assert.equal(refused.over.count, 8)
        assert.deepEqual(
          refused.counts.map((c) => c.count),
          [2, 8],
        )
      })

      within('keeps the limits of one account away from another', async ({ store }) => {
        const r = rules({ messages: '2/1h' })
        await record(store, 'alice', r)
        await record(store, 'alice', r)
        assert.equal((await record(store, 'alice', r)).status, 'refused')
        assert.equal((await record(store, 'bob', r)).status, 'ok')
        assert.equal(await store.getDisabled('bob'), null)
      })

      within(
        'records the limit, the counts, an incident and the evidence (capped) in the disable record',
        async (c) => {
          const { store } = c
          const r = rules({ messages: '12/1h', recipients: '1000/1h' })
          const sent = []
          for (let i = 0; i < 13; i++) {
            const s = summary(i)
            sent.push(s)
            const res = await record(store, 'alice', r, { recipients: 2, summary: s })
            assert.equal(res.status, i < 12 ? 'ok' : 'refused')
          }
          const refused = await record(store, 'mallory', r, { recipients: 2000 })
          assert.equal(refused.status, 'refused')
          const res = await store.getDisabled('alice')
          assert.ok(res)
          assert.equal(res.account, 'alice')
          assert.equal(res.reason, 'limit')
          assert.equal(res.by, 'limit')
          assertStoreNow(c, res.at)
          assert.match(res.incident, /^[0-9a-f]{32}$/)
          assert.notEqual(res.incident, refused.record.incident)
          assert.deepEqual(res.over, { kind: 'messages', max: 12, windowMs: 3_600_000, text: '12/1h', count: 12 })
          assert.deepEqual(
            res.counts.map((x) => [x.kind, x.text, x.count]),
            [
              ['messages', '12/1h', 12],
              ['recipients', '1000/1h', 24],
            ],
          )
          // The refused message is part of the evidence: it is what the attacker tried to send.
          assert.deepEqual(res.evidence, sent.reverse().slice(0, EVIDENCE_CAP))
        },
      )

      within('returns the same disable record from record(), getDisabled() and listDisabled()', async ({ store }) => {
        const r = rules({ messages: '1/1h' })
        await record(store, 'alice', r)
        const refused = await record(store, 'alice', r)
        assert.equal(refused.status, 'refused')
        assert.deepEqual(await store.getDisabled('alice'), refused.record)
        assert.deepEqual(await store.listDisabled(), [refused.record])
      })

      within('starts a new incident with a new id after the account is enabled and trips again', async ({ store }) => {
        const r = rules({ messages: '1/1h' })
        await record(store, 'alice', r)
        const first = await record(store, 'alice', r)
        assert.equal(first.status, 'refused')
        assert.equal(await store.enable('alice'), true)
        assert.equal((await record(store, 'alice', r)).status, 'ok')
        const second = await record(store, 'alice', r)
        assert.equal(second.status, 'refused')
        assert.equal(second.flipped, true)
        assert.notEqual(second.record.incident, first.record.incident)
      })
    })

    describe('concurrency', function () {
      within(
        'lets exactly 20 of 50 parallel messages through under messages = 20/1h and flips once',
        async ({ store }) => {
          const r = rules({ messages: '20/1h' })
          const results = await Promise.all(Array.from({ length: 50 }, () => record(store, 'alice', r)))
          const ok = results.filter((x) => x.status === 'ok')
          const refused = results.filter((x) => x.status === 'refused')
          const disabled = results.filter((x) => x.status === 'disabled')
          assert.equal(ok.length, 20)
          assert.equal(refused.length, 1)
          assert.equal(disabled.length, 29)
          assert.equal(results.filter((x) => x.flipped).length, 1)
          assert.equal(refused[0]?.flipped, true)
          // Each accepted message saw its own total: the check and the count were one step.
          assert.deepEqual(
            ok.map(messageCount).sort((a, b) => a - b),
            Array.from({ length: 20 }, (_, i) => i + 1),
          )
          assert.deepEqual(
            (await store.counts('alice', r)).map((x) => x.count),
            [20],
          )
          assert.equal((await store.listDisabled()).length, 1)
        },
      )

      within('reports the overrun of 50 parallel messages in monitor mode exactly once', async ({ store }) => {
        const r = rules({ messages: '20/1h' })
        const results = await Promise.all(
          Array.from({ length: 50 }, () => record(store, 'alice', r, { mode: 'monitor' })),
        )
        assert.ok(results.every((x) => x.status === 'ok'))
        assert.equal(results.filter((x) => x.over).length, 30)
        assert.equal(results.filter((x) => x.flipped).length, 1)
        assert.deepEqual(
          results.map(messageCount).sort((a, b) => a - b),
          Array.from({ length: 50 }, (_, i) => i + 1),
        )
      })
    })

    describe('monitor mode', function () {
      within(
        'never refuses or disables, reports over from the 21st message on and flips only on the 21st',
        async ({ store }) => {
          const r = rules({ messages: '20/1h' })
          for (let i = 1; i <= 25; i++) {
            const res = await record(store, 'alice', r, { mode: 'monitor' })
            assert.equal(res.status, 'ok', `message ${i}`)
            assert.equal(messageCount(res), i)
            if (i <= 20) {
              assert.equal(res.over, undefined, `message ${i}`)
              assert.equal(res.flipped, false, `message ${i}`)
            } else {
              assert.deepEqual(res.over, { kind: 'messages', max: 20, windowMs: 3_600_000, text: '20/1h', count: i })
              assert.equal(res.flipped, i === 21, `message ${i}`)
            }
          }
          assert.equal(await store.getDisabled('alice'), null)
          assert.deepEqual(await store.listDisabled(), [])
        },
      )

      within(
        'counts a monitored account even when its recipients would be refused in enforce mode',
        async ({ store }) => {
          const r = rules({ recipients: '5/1h' })
          const res = await record(store, 'alice', r, { mode: 'monitor', recipients: 9 })
          assert.equal(res.status, 'ok')
          assert.equal(overOf(res).count, 9)
          assert.equal(res.flipped, true)
          assert.equal(await store.getDisabled('alice'), null)
        },
      )

      passing(
        'reports the overrun again (flipped) once its window has passed (messages = 3/2s, 2 buckets)',
        async (c) => {
          const { store } = c
          const r = rules({ messages: '3/2s', buckets: 2 })
          const burst = async () => {
            let flips = 0
            for (let i = 0; i < 4; i++) if ((await record(store, 'alice', r, { mode: 'monitor' })).flipped) flips += 1
            return flips
          }
          assert.equal(await burst(), 1)
          assert.equal(await burst(), 0, 'no second report inside the window')
          await afterTime(c, 2000, async () => (await burst()) === 1, 'a burst after the window reports again')
          assert.equal(await store.getDisabled('alice'), null)
        },
      )
    })

    describe('disable, enable, reset', function () {
      within(
        'disable() disables by hand and returns true; a second disable() returns false and keeps the first record',
        async (c) => {
          const { store } = c
          assert.equal(
            await store.disable({ account: 'alice', reason: 'phished', by: 'cli:root', incident: 'inc-1' }),
            true,
          )
          const rec = await store.getDisabled('alice')
          assert.ok(rec)
          assert.equal(rec.account, 'alice')
          assert.equal(rec.reason, 'phished')
          assert.equal(rec.by, 'cli:root')
          assert.equal(rec.incident, 'inc-1')
          assertStoreNow(c, rec.at)
          assert.deepEqual(rec.counts, [])
          assert.deepEqual(rec.evidence, [])
          assert.equal(rec.over, undefined)
          assert.equal(
            await store.disable({ account: 'alice', reason: 'again', by: 'cli:other', incident: 'inc-2' }),
            false,
          )
          assert.deepEqual(await store.getDisabled('alice'), rec)
        },
      )

      within(
        'refuses as "disabled" and does not count the messages of an account disabled by hand',
        async ({ store }) => {
          const r = rules({ messages: '100/1h' })
          await record(store, 'alice', r)
          await store.disable({ account: 'alice', reason: 'phished', by: 'cli:root', incident: 'inc-1' })
          assert.deepEqual(outcome(await record(store, 'alice', r)), { status: 'disabled', counts: [], flipped: false })
          assert.deepEqual(
            (await store.counts('alice', r)).map((x) => x.count),
            [1],
          )
        },
      )

      within('keeps a refusal from overwriting a manual disable record', async ({ store }) => {
        const r = rules({ messages: '1/1h' })
        await record(store, 'alice', r)
        await store.disable({ account: 'alice', reason: 'phished', by: 'cli:root', incident: 'inc-1' })
        assert.equal((await record(store, 'alice', r)).status, 'disabled')
        assert.equal((await store.getDisabled('alice'))?.reason, 'phished')
      })

      within(
        'enable() clears the flag, the counters and the evidence and returns true; then false',
        async ({ store }) => {
          const r = rules({ messages: '2/1h', recipients: '100/1h' })
          await record(store, 'alice', r, { recipients: 3 })
          await record(store, 'alice', r, { recipients: 3 })
          assert.equal((await record(store, 'alice', r)).status, 'refused')
          assert.equal(await store.enable('alice'), true)
          assert.equal(await store.getDisabled('alice'), null)
          assert.deepEqual(await store.listDisabled(), [])
          assert.deepEqual(
            (await store.counts('alice', r)).map((x) => x.count),
            [0, 0],
          )
          assert.deepEqual(await store.evidence('alice'), [])
          assert.equal(await store.enable('alice'), false)
          const res = await record(store, 'alice', r, { recipients: 3 })
          assert.equal(res.status, 'ok')
          assert.deepEqual(
            res.counts.map((x) => x.count),
            [1, 3],
          )
        },
      )

      within('enable() of an account that is not disabled returns false and clears its counters', async ({ store }) => {
        const r = rules({ messages: '100/1h' })
        await record(store, 'alice', r)
        assert.equal(await store.enable('alice'), false)
        assert.equal(await store.enable('never-seen'), false)
        assert.deepEqual(
          (await store.counts('alice', r)).map((x) => x.count),
          [0],
        )
      })

      within('reset() clears counters and evidence but keeps the disabled flag', async ({ store }) => {
        const r = rules({ messages: '2/1h' })
        await record(store, 'alice', r)
        await record(store, 'alice', r)
        const refused = await record(store, 'alice', r)
        assert.equal(refused.status, 'refused')
        await store.reset('alice')
        assert.deepEqual(
          (await store.counts('alice', r)).map((x) => x.count),
          [0],
        )
        assert.deepEqual(await store.evidence('alice'), [])
        assert.deepEqual(await store.getDisabled('alice'), refused.record)
        assert.equal((await record(store, 'alice', r)).status, 'disabled')
      })

      within('reset() of an enabled account lets it send a full limit again', async ({ store }) => {
        const r = rules({ messages: '2/1h' })
        await record(store, 'alice', r)
        await record(store, 'alice', r)
        await store.reset('alice')
        assert.equal(messageCount(await record(store, 'alice', r)), 1)
        assert.equal(messageCount(await record(store, 'alice', r)), 2)
        assert.equal((await record(store, 'alice', r)).status, 'refused')
      })

      within('reset() lets monitor mode report an overrun again within the window', async ({ store }) => {
        const r = rules({ messages: '1/1h' })
        await record(store, 'alice', r, { mode: 'monitor' })
        assert.equal((await record(store, 'alice', r, { mode: 'monitor' })).flipped, true)
        assert.equal((await record(store, 'alice', r, { mode: 'monitor' })).flipped, false)
        await store.reset('alice')
        await record(store, 'alice', r, { mode: 'monitor' })
        assert.equal((await record(store, 'alice', r, { mode: 'monitor' })).flipped, true)
      })

      within('listDisabled() lists every disabled account once, newest first, and forgets enabled ones', async (c) => {
        const { store } = c
        const r = rules({ messages: '1/1h' })
        const next = async () => {
          if (c.clock === 'injected') c.advance(1000)
        }
        await store.disable({ account: 'a', reason: 'manual', by: 'cli:root', incident: 'i-a' })
        await next()
        await store.disable({ account: 'b', reason: 'manual', by: 'cli:root', incident: 'i-b' })
        await store.disable({ account: 'b', reason: 'manual again', by: 'cli:root', incident: 'i-b2' })
        await next()
        await record(store, 'c', r)
        await record(store, 'c', r)
        await record(store, 'c', r)
        const list = await store.listDisabled()
        assert.equal(list.length, 3)
        for (let i = 1; i < list.length; i++) assert.ok(list[i - 1]!.at >= list[i]!.at, 'newest first')
        if (c.clock === 'injected')
          assert.deepEqual(
            list.map((x) => x.account),
            ['c', 'b', 'a'],
          )
        else assert.deepEqual(list.map((x) => x.account).sort(), ['a', 'b', 'c'])
        for (const rec of list) assert.deepEqual(await store.getDisabled(rec.account), rec)
        await store.enable('b')
        assert.deepEqual((await store.listDisabled()).map((x) => x.account).sort(), ['a', 'c'])
      })
    })

    describe('odd account names', function () {
      within('counts each odd account on its own', async ({ store }) => {
        const r = rules({ messages: '1000/1h', recipients: '1000/1h' })
        for (const [i, account] of ODD_ACCOUNTS.entries()) {
          for (let n = 0; n <= i; n++)
            await record(store, account, r, { recipients: 2, summary: summary(n, { subject: `for ${i}` }) })
        }
        for (const [i, account] of ODD_ACCOUNTS.entries()) {
          assert.deepEqual(
            (await store.counts(account, r)).map((x) => x.count),
            [i + 1, 2 * (i + 1)],
            `account ${JSON.stringify(account.slice(0, 20))}`,
          )
          const evidence = await store.evidence(account)
          assert.equal(evidence.length, Math.min(i + 1, EVIDENCE_CAP))
          assert.ok(evidence.every((s) => s.subject === `for ${i}`))
        }
      })

      within('disables, lists and enables odd accounts by their exact names, one at a time', async ({ store }) => {
        const r = rules({ messages: '1/1h' })
        const disabled = ODD_ACCOUNTS.filter((_, i) => i % 2 === 0)
        const enabled = ODD_ACCOUNTS.filter((_, i) => i % 2 === 1)
        for (const account of disabled) {
          await record(store, account, r)
          const res = await record(store, account, r)
          assert.equal(res.status, 'refused')
          assert.equal(res.record.account, account)
        }
        for (const account of enabled) {
          assert.equal(await store.getDisabled(account), null, `account ${JSON.stringify(account.slice(0, 20))}`)
          assert.equal((await record(store, account, r)).status, 'ok')
        }
        for (const account of disabled) assert.equal((await store.getDisabled(account))?.account, account)
        assert.deepEqual((await store.listDisabled()).map((x) => x.account).sort(), [...disabled].sort())
        for (const account of disabled) assert.equal(await store.enable(account), true)
        assert.deepEqual(await store.listDisabled(), [])
        for (const account of enabled) {
          assert.deepEqual(
            (await store.counts(account, r)).map((x) => x.count),
            [1],
          )
        }
      })

      within('keeps accounts that differ only by escaped characters apart', async ({ store }) => {
        const r = rules({ messages: '3/1h' })
        for (const [a, b] of ESCAPE_PAIRS) {
          for (let i = 0; i < 3; i++) await record(store, a, r)
          assert.equal((await record(store, a, r)).status, 'refused')
          assert.equal(
            messageCount(await record(store, b, r)),
            1,
            `${JSON.stringify(b)} must not see ${JSON.stringify(a)}`,
          )
          assert.equal(await store.getDisabled(b), null)
          await store.disable({ account: b, reason: 'manual', by: 'test', incident: 'x' })
          await store.enable(a)
          assert.equal((await store.getDisabled(b))?.account, b)
          assert.equal(await store.getDisabled(a), null)
          assert.deepEqual(
            (await store.counts(b, r)).map((x) => x.count),
            [1],
          )
          await store.reset(b)
          assert.deepEqual(
            (await store.counts(a, r)).map((x) => x.count),
            [0],
          )
        }
      })
    })

    describe('reactivation tokens and audit', function () {
      async function tripWith(store: Store, account: string, token: string, tokenTtlMs = TOKEN_TTL_MS) {
        const r = rules({ messages: '1/1h' })
        await store.record(recordInput(account, r))
        const res = await store.record({ ...recordInput(account, r), token, tokenTtlMs })
        assert.equal(res.status, 'refused')
        return res
      }
      const token = (c: string): string => c.repeat(32)

      within(
        'keeps the token of the disabling message and its expiry with the record, and finds the account by it',
        async ({ store }) => {
          const res = await tripWith(store, 'a b', token('a'))
          assert.equal(res.record.tokenExpiresAt, res.record.at + TOKEN_TTL_MS)
          assert.equal(undeclared(res.record, 'token'), undefined, 'readers never see the token')
          const read = await store.getDisabled('a b')
          assert.ok(read)
          assert.equal(undeclared(read, 'token'), undefined)
          assert.equal(await store.tokenAccount(token('a')), 'a b')
          assert.equal(await store.tokenAccount(token('b')), null)
        },
      )

      within(
        'redeem() re-enables with the current token only, clears the counters, and only once',
        async ({ store }) => {
          await tripWith(store, 'alice', token('a'))
          assert.equal(await store.redeem('alice', token('b')), 'mismatch')
          assert.equal(await store.redeem('bob', token('a')), 'not-disabled')
          assert.notEqual(await store.getDisabled('alice'), null)
          assert.equal(await store.redeem('alice', token('a')), 'ok')
          assert.equal(await store.getDisabled('alice'), null)
          assert.deepEqual(await store.listDisabled(), [])
          assert.deepEqual(
            (await store.counts('alice', rules({ messages: '1/1h' }))).map((x) => x.count),
            [0],
          )
          assert.deepEqual(await store.evidence('alice'), [])
          assert.equal(await store.redeem('alice', token('a')), 'not-disabled')
        },
      )

      within('redeem() lets exactly one of 10 parallel redemptions of one token succeed', async ({ store }) => {
        await tripWith(store, 'alice', token('c'))
        const results = await Promise.all(Array.from({ length: 10 }, () => store.redeem('alice', token('c'))))
        assert.equal(results.filter((x) => x === 'ok').length, 1)
        assert.equal(results.filter((x) => x === 'not-disabled').length, 9)
      })

      within(
        'redeem() refuses the token of an earlier incident and any token for a manual disable',
        async ({ store }) => {
          await tripWith(store, 'alice', token('1'))
          await store.enable('alice')
          await tripWith(store, 'alice', token('2'))
          assert.equal(await store.redeem('alice', token('1')), 'mismatch')
          await store.disable({ account: 'bob', reason: 'manual', by: 'cli:root', incident: 'i' })
          assert.equal(await store.redeem('bob', ''), 'mismatch')
          assert.equal(await store.redeem('bob', token('1')), 'mismatch')
          assert.equal(await store.redeem('alice', token('2')), 'ok')
        },
      )

      passing(
        'redeem() answers "expired" once the token lifetime (500 ms) has passed, and keeps the account disabled',
        async (c) => {
          const { store } = c
          const { record: rec } = await tripWith(store, 'alice', token('d'), 500)
          const expiresAt = rec.tokenExpiresAt
          assert.ok(expiresAt !== undefined, 'the record says when its token expires')
          // Read the store clock without touching alice: the time of a message of another account.
          const storeNow = async (): Promise<number> => {
            const probe = await record(store, 'clock-probe', [])
            assert.equal(probe.status, 'ok')
            return probe.at
          }
          await afterTime(c, 501, async () => (await storeNow()) > expiresAt, 'the token lifetime has passed')
          assert.equal(await store.redeem('alice', token('d')), 'expired')
          assert.notEqual(await store.getDisabled('alice'), null)
        },
      )

      within(
        'auditLog() returns the audit entries newest first, for one account and up to a limit',
        async ({ store }) => {
          const entries: AuditEntry[] = [
            { at: 1, account: 'alice', action: 'disable', actor: 'limit', how: 'limit', reason: '500/30m' },
            { at: 2, account: 'b:{b}', action: 'disable', actor: 'cli:root', how: 'cli' },
            { at: 3, account: 'alice', action: 'enable', actor: 'pm@example.com', how: 'reply' },
          ]
          for (const e of entries) await store.audit(e)
          assert.deepEqual(await store.auditLog(), [...entries].reverse())
          assert.deepEqual(await store.auditLog({ account: 'alice' }), [entries[2], entries[0]])
          assert.deepEqual(await store.auditLog({ account: 'b:{b}' }), [entries[1]])
          assert.deepEqual(await store.auditLog({ limit: 1 }), [entries[2]])
        },
      )
    })

    describe('sliding windows', function () {
      passing(
        'stops counting messages older than the window (messages = 3/2s, 2 buckets) and accepts a full limit again',
        async (c) => {
          const { store } = c
          const r = rules({ messages: '3/2s', buckets: 2 })
          for (let i = 1; i <= 3; i++) assert.equal(messageCount(await record(store, 'alice', r)), i)
          assert.deepEqual(
            (await store.counts('alice', r)).map((x) => x.count),
            [3],
          )
          await afterTime(c, 2000, async () => (await firstCount(store, 'alice', r)) === 0, 'the window is empty')
          for (let i = 1; i <= 3; i++) assert.equal(messageCount(await record(store, 'alice', r)), i)
          assert.equal((await record(store, 'alice', r)).status, 'refused')
        },
      )

      exact('slides bucket by bucket: messages = 10/10m with 10 buckets of one minute', async (c) => {
        const { store } = c
        const r = rules({ messages: '10/10m', buckets: 10 })
        const total = (): Promise<number> => firstCount(store, 'alice', r)
        for (let i = 0; i < 4; i++) await record(store, 'alice', r)
        c.advance(5 * 60_000)
        for (let i = 0; i < 3; i++) await record(store, 'alice', r)
        c.advance(5 * 60_000 - 1)
        assert.equal(await total(), 7, 'one ms before the first bucket leaves the window')
        c.advance(1)
        assert.equal(await total(), 3, 'the first bucket has left the window')
        for (let i = 4; i <= 10; i++) assert.equal(messageCount(await record(store, 'alice', r)), i)
        const refused = await record(store, 'alice', r)
        assert.equal(refused.status, 'refused')
        assert.equal(refused.over.count, 10)
      })

      passing('applies two windows at once: messages = 3/2s, 5/1h with 2 buckets', async (c) => {
        const { store } = c
        const r = rules({ messages: '3/2s, 5/1h', buckets: 2 })
        for (let i = 0; i < 3; i++) assert.equal((await record(store, 'alice', r)).status, 'ok')
        await afterTime(c, 2000, async () => (await firstCount(store, 'alice', r)) === 0, 'the short window is empty')
        const res = [await record(store, 'alice', r), await record(store, 'alice', r)]
        assert.deepEqual(
          res.map((x) => x.counts.map((y) => y.count)),
          [
            [1, 4],
            [2, 5],
          ],
        )
        const refused = await record(store, 'alice', r)
        assert.equal(refused.status, 'refused')
        assert.deepEqual(refused.over, { kind: 'messages', max: 5, windowMs: 3_600_000, text: '5/1h', count: 5 })
        assert.deepEqual(
          refused.counts.map((y) => y.count),
          [2, 5],
        )
      })

      passing(
        'forgets the evidence and the monitor report once the counters expire (messages = 1/2s, 2 buckets)',
        async (c) => {
          const { store } = c
          const r = rules({ messages: '1/2s', buckets: 2 })
          await record(store, 'alice', r, { mode: 'monitor' })
          assert.equal((await record(store, 'alice', r, { mode: 'monitor' })).flipped, true)
          assert.equal((await store.evidence('alice')).length, 2)
          await afterTime(
            c,
            countersTtlMs(r),
            async () => (await store.evidence('alice')).length === 0,
            'the evidence is gone',
          )
          assert.equal(await firstCount(store, 'alice', r), 0)
          await record(store, 'alice', r, { mode: 'monitor' })
          assert.equal((await record(store, 'alice', r, { mode: 'monitor' })).flipped, true)
        },
      )
    })

    describe('a change of window or buckets (a reload, an [account:] override)', function () {
      type RuleOptions = Parameters<typeof rules>[0]
      const changes: [string, RuleOptions, RuleOptions][] = [
        ['buckets 30 -> 10', { messages: '5/1h', buckets: 30 }, { messages: '5/1h', buckets: 10 }],
        ['buckets 30 -> 60', { messages: '5/1h', buckets: 30 }, { messages: '5/1h', buckets: 60 }],
        ['window 30m -> 1h', { messages: '5/30m' }, { messages: '5/1h' }],
        ['window 1h -> 30m', { messages: '5/1h' }, { messages: '5/30m' }],
        ['window and buckets 1m/30 -> 2m/10', { messages: '5/1m' }, { messages: '5/2m', buckets: 10 }],
      ]
      for (const [what, before, after] of changes) {
        within(`keeps the count across ${what}: the message over the same limit is refused`, async ({ store }) => {
          for (let i = 0; i < 5; i++) assert.equal((await record(store, 'alice', rules(before))).status, 'ok')
          assert.deepEqual(
            (await store.counts('alice', rules(after))).map((x) => x.count),
            [5],
          )
          const refused = await record(store, 'alice', rules(after))
          assert.equal(refused.status, 'refused')
          assert.equal(refused.over.count, 5)
          assert.equal((await store.getDisabled('alice'))?.reason, 'limit')
        })
      }

      within('keeps the count when an [account:] override with another window applies, and back', async ({ store }) => {
        const base = rules({ messages: '6/30m', buckets: 30 })
        const override = rules({ messages: '6/2h', buckets: 12 })
        for (let i = 0; i < 2; i++) await record(store, 'alice', base)
        for (let i = 0; i < 2; i++) await record(store, 'alice', override)
        assert.equal(
          messageCount(await record(store, 'alice', base)),
          5,
          'the override era counts under the base rules',
        )
        assert.equal(messageCount(await record(store, 'alice', override)), 6)
        assert.equal((await record(store, 'alice', base)).status, 'refused')
      })

      within('keeps messages and recipients apart across the change', async ({ store }) => {
        const before = rules({ messages: '10/30m', recipients: '10/30m' })
        const after = rules({ messages: '10/1h', recipients: '10/2h', buckets: 10 })
        for (let i = 0; i < 3; i++) await record(store, 'alice', before, { recipients: 3 })
        assert.deepEqual(
          (await store.counts('alice', after)).map((x) => x.count),
          [3, 9],
        )
        const refused = await record(store, 'alice', after, { recipients: 2 })
        assert.equal(refused.status, 'refused')
        assert.deepEqual(refused.over, { kind: 'recipients', max: 10, windowMs: 7_200_000, text: '10/2h', count: 9 })
        assert.equal(messageCount(refused), 3)
      })

      exact(
        'counts an old bucket until it ends before the new window, then forgets it (10m/10 -> 10m/5)',
        async (c) => {
          const { store } = c
          const before = rules({ messages: '10/10m', buckets: 10 }) // one-minute buckets
          const after = rules({ messages: '10/10m', buckets: 5 }) // two-minute buckets
          const total = (): Promise<number> => firstCount(store, 'alice', after)
          c.advance(60_000) // 01:00
          for (let i = 0; i < 4; i++) await record(store, 'alice', before) // bucket [01:00, 02:00)
          c.advance(60_000) // 02:00
          for (let i = 0; i < 3; i++) await record(store, 'alice', before) // bucket [02:00, 03:00)
          c.advance(8 * 60_000 - 1) // 09:59.999: the window starts at 00:00
          assert.equal(await total(), 7)
          c.advance(2 * 60_000) // 11:59.999: the window starts at 02:00
          assert.equal(await total(), 3)
          c.advance(1) // 12:00: the window starts at 04:00
          assert.equal(await total(), 0)
          for (let i = 1; i <= 10; i++) assert.equal(messageCount(await record(store, 'alice', after)), i)
          assert.equal((await record(store, 'alice', after)).status, 'refused')
        },
      )
    })

    describe('networks per login', function () {
      const net = (i: number): string => `10.${Math.floor(i / 250)}.${i % 250}.0/24`

      within(
        'counts distinct networks, not messages; the message from the network over the limit is refused and disables, naming the networks',
        async (c) => {
          const { store } = c
          const r = rules({ messages: '1000/1h', networks: '3/1h' })
          const seen: RecordResult[] = []
          for (const n of [0, 0, 1, 0, 1, 2, 2, 0]) seen.push(await record(store, 'alice', r, { network: net(n) }))
          assert.deepEqual(
            seen.map((x) => [x.status, networkCount(x)]),
            [
              ['ok', 1],
              ['ok', 1],
              ['ok', 2],
              ['ok', 2],
              ['ok', 2],
              ['ok', 3],
              ['ok', 3],
              ['ok', 3],
            ],
          )
          const fourth = await record(store, 'alice', r, { network: net(3) })
          assert.equal(fourth.status, 'refused')
          assert.deepEqual(overOf(fourth), { kind: 'networks', max: 3, windowMs: 3_600_000, text: '3/1h', count: 3 })
          assert.ok(fourth.status === 'refused' && fourth.flipped)
          // Newest first, the refused message's network first; two seen in the same millisecond may come in either order.
          const named = (list: readonly string[] | undefined): string[] => [
            list?.[0] ?? '',
            ...(list ?? []).slice(1).sort(),
          ]
          const expected = [net(3), net(0), net(1), net(2)]
          assert.deepEqual(named(fourth.status === 'refused' ? fourth.record.networks : undefined), expected)
          const rec = await store.getDisabled('alice')
          assert.equal(rec?.over?.kind, 'networks')
          assert.deepEqual(named(rec?.networks), expected)
          assert.equal((await record(store, 'alice', r, { network: net(0) })).status, 'disabled')
          assert.equal(messageCount(seen[7] as RecordResult), 8, 'every message was counted against [limits] too')
        },
      )

      within('never counts a message without a network, and keeps accounts apart', async (c) => {
        const { store } = c
        const r = rules({ networks: '1/1h' })
        for (let i = 0; i < 5; i++) assert.equal((await record(store, 'alice', r, { network: '' })).status, 'ok')
        assert.equal((await record(store, 'alice', r, { network: net(1) })).status, 'ok')
        assert.equal((await record(store, 'bob', r, { network: net(2) })).status, 'ok')
        assert.equal((await record(store, 'alice', r, { network: net(1) })).status, 'ok')
        assert.equal((await record(store, 'alice', r, { network: '' })).status, 'ok')
        assert.deepEqual(
          (await store.counts('alice', r)).map((x) => x.count),
          [1],
        )
        assert.equal((await record(store, 'alice', r, { network: net(2) })).status, 'refused')
      })

      within('lets exactly the limit of networks through when their messages arrive at once', async (c) => {
        const r = rules({ networks: '5/1h' })
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => record(c.store, 'alice', r, { network: net(i) })),
        )
        assert.equal(results.filter((x) => x.status === 'ok').length, 5)
        assert.equal(results.filter((x) => x.status === 'refused' && x.flipped).length, 1)
        assert.equal((await c.store.getDisabled('alice'))?.over?.kind, 'networks')
      })

      within('checks each networks rule on its own, and reports them in counts()', async (c) => {
        const r = rules({ messages: '100/1h', networks: '4/1h, 2/1h' })
        await record(c.store, 'alice', r, { network: net(1) })
        await record(c.store, 'alice', r, { network: net(2) })
        assert.deepEqual(
          (await c.store.counts('alice', r)).map((x) => [x.kind, x.count]),
          [
            ['messages', 2],
            ['networks', 2],
            ['networks', 2],
          ],
        )
        const third = await record(c.store, 'alice', r, { network: net(3) })
        assert.equal(third.status, 'refused')
        assert.equal(overOf(third).text, '2/1h')
      })

      within(
        'in monitor mode counts on, reports the first overrun per window with the networks, and never disables',
        async (c) => {
          const r = rules({ networks: '2/1h' })
          const results: RecordResult[] = []
          for (let i = 0; i < 5; i++)
            results.push(await record(c.store, 'alice', r, { network: net(i), mode: 'monitor' }))
          assert.deepEqual(
            results.map((x) => [x.status, x.flipped, networkCount(x)]),
            [
              ['ok', false, 1],
              ['ok', false, 2],
              ['ok', true, 3],
              ['ok', false, 4],
              ['ok', false, 5],
            ],
          )
          const flipped = results[2]
          assert.deepEqual(flipped?.status === 'ok' ? flipped.networks : null, [net(2), net(1), net(0)])
          assert.equal(await c.store.getDisabled('alice'), null)
        },
      )

      within('forgets the networks on enable and on reset', async (c) => {
        const r = rules({ networks: '2/1h' })
        await record(c.store, 'alice', r, { network: net(1) })
        await record(c.store, 'alice', r, { network: net(2) })
        assert.equal((await record(c.store, 'alice', r, { network: net(3) })).status, 'refused')
        assert.equal(await c.store.enable('alice'), true)
        assert.deepEqual(
          (await c.store.counts('alice', r)).map((x) => x.count),
          [0],
        )
        await record(c.store, 'alice', r, { network: net(4) })
        await c.store.reset('alice')
        assert.deepEqual(
          (await c.store.counts('alice', r)).map((x) => x.count),
          [0],
        )
      })

      within('keeps at most NETWORKS_CAP networks of an account, the most recently seen', async (c) => {
        const r = rules({ networks: '100000/1d' })
        const batch = 50
        for (let i = 0; i < NETWORKS_CAP + 10; i += batch)
          await Promise.all(
            Array.from({ length: batch }, (_, j) =>
              record(c.store, 'alice', r, { network: net(i + j), mode: 'monitor' }),
            ),
          )
        assert.deepEqual(
          (await c.store.counts('alice', r)).map((x) => x.count),
          [NETWORKS_CAP],
        )
      })

      passing('counts a network again once it has not been seen for a window', async (c) => {
        const w = 1500
        const r = rules({ networks: '2/1500ms' })
        await record(c.store, 'alice', r, { network: net(1) })
        await record(c.store, 'alice', r, { network: net(2) })
        const since = Date.now()
        await afterTime(
          c,
          w,
          async () => (await c.store.counts('alice', r))[0]?.count === 0,
          'both networks left the window',
        )
        assert.ok(c.clock === 'injected' || Date.now() - since >= w - 100)
        for (const n of [3, 4]) assert.equal((await record(c.store, 'alice', r, { network: net(n) })).status, 'ok')
        assert.equal((await record(c.store, 'alice', r, { network: net(1) })).status, 'refused')
      })

      exact('a network last seen exactly one window ago is new again', async (c) => {
        const r = rules({ networks: '1/1m' })
        await record(c.store, 'alice', r, { network: net(1) })
        c.advance(60_000 - 1)
        assert.equal((await record(c.store, 'alice', r, { network: net(2) })).status, 'refused')
        await c.store.enable('alice')
        await record(c.store, 'alice', r, { network: net(1) })
        c.advance(30_000)
        await record(c.store, 'alice', r, { network: net(1) })
        c.advance(60_000)
        assert.equal(
          (await record(c.store, 'alice', r, { network: net(2) })).status,
          'ok',
          'net 1 left at its last sighting + 1m',
        )
      })
    })

    describe('early warning ([warn] at)', function () {
      const warnOf = (x: RecordResult): WindowCount | undefined => (x.status === 'ok' ? x.warn : undefined)

      within('warns once, on the message that reaches the fraction, with the evidence', async (c) => {
        const r = rules({ messages: '10/1h' })
        const results: RecordResult[] = []
        for (let i = 0; i < 10; i++) results.push(await record(c.store, 'alice', r, { warnAt: 0.8 }))
        assert.deepEqual(
          results.map((x) => warnOf(x)?.count ?? 0),
          [0, 0, 0, 0, 0, 0, 0, 8, 0, 0],
        )
        const w = results[7]
        assert.equal(w?.status === 'ok' && w.evidence?.length, Math.min(8, EVIDENCE_CAP))
        assert.equal((await record(c.store, 'alice', r, { warnAt: 0.8 })).status, 'refused')
      })

      within('sends one warning per window per account, whichever limit reaches the fraction', async (c) => {
        const r = rules({ messages: '10/1h', recipients: '10/1h' })
        const first = await record(c.store, 'alice', r, { recipients: 9, warnAt: 0.5 })
        assert.equal(warnOf(first)?.kind, 'recipients')
        const more: RecordResult[] = []
        for (let i = 0; i < 6; i++) more.push(await record(c.store, 'alice', r, { recipients: 0, warnAt: 0.5 }))
        assert.equal(more.filter(warnOf).length, 0, 'messages reached 5 of 10 in the same window: no second warning')
        assert.equal(warnOf(await record(c.store, 'bob', r, { recipients: 9, warnAt: 0.5 }))?.kind, 'recipients')
      })

      within('warns on networks with the networks seen', async (c) => {
        const r = rules({ networks: '5/1h' })
        const results: RecordResult[] = []
        for (let i = 1; i <= 5; i++)
          results.push(await record(c.store, 'alice', r, { network: `10.0.${i}.0/24`, warnAt: 0.8 }))
        assert.deepEqual(
          results.map((x) => warnOf(x)?.count ?? 0),
          [0, 0, 0, 4, 0],
        )
        const w = results[3]
        assert.deepEqual(w?.status === 'ok' ? w.networks : null, [
          '10.0.4.0/24',
          '10.0.3.0/24',
          '10.0.2.0/24',
          '10.0.1.0/24',
        ])
      })

      within('never warns when off, nor on a message that goes over the limit', async (c) => {
        const r = rules({ messages: '4/1h' })
        for (let i = 0; i < 4; i++) assert.equal(warnOf(await record(c.store, 'alice', r)), undefined)
        const big = rules({ recipients: '10/1h' })
        assert.equal((await record(c.store, 'bob', big, { recipients: 11, warnAt: 0.8 })).status, 'refused')
      })

      within('warns exactly once when the messages that reach the fraction arrive at once', async (c) => {
        const r = rules({ messages: '100/1h' })
        const results = await Promise.all(
          Array.from({ length: 30 }, () => record(c.store, 'alice', r, { warnAt: 0.1 })),
        )
        assert.equal(results.filter(warnOf).length, 1)
        assert.equal(results.map(warnOf).find(Boolean)?.count, 10)
      })

      passing('warns again in a later window', async (c) => {
        const r = rules({ messages: '4/1500ms', buckets: 3 })
        const first: RecordResult[] = []
        for (let i = 0; i < 2; i++) first.push(await record(c.store, 'alice', r, { warnAt: 0.5 }))
        assert.equal(first.filter(warnOf).length, 1)
        const warnedAt = first[1]?.status === 'ok' ? first[1].at : 0
        // Store time is read on another account; one window after the warning, a new one may go out.
        await afterTime(
          c,
          1501,
          async () => {
            const probe = await record(c.store, 'clock-probe', rules({ messages: '1000/1h' }))
            return probe.status === 'ok' && probe.at > warnedAt + 1500
          },
          'a window has passed since the warning',
        )
        const again: RecordResult[] = []
        for (let i = 0; i < 2; i++) again.push(await record(c.store, 'alice', r, { warnAt: 0.5 }))
        assert.equal(again.filter(warnOf).length, 1)
      })
    })

    describe('invalid recipients ([signals] invalid_recipients)', function () {
      const invalidRules = (value: string, buckets = 30): Rule[] =>
        parseRules('signals.invalid_recipients', 'invalid_recipients', value, buckets)
      const invalid = (
        store: Store,
        account: string,
        ruleSet: readonly Rule[],
        recipients: number,
        mode: Mode = 'enforce',
      ): Promise<RecordResult> => {
        seq += 1
        return store.invalid(
          recordInput(account, ruleSet, { recipients, mode, summary: summary(seq, { subject: `550 no ${seq}` }) }),
        )
      }

      within('shares the one [warn] warning per window per account with the message counters, both ways', async (c) => {
        const { store } = c
        const warnOf = (x: RecordResult): boolean => x.status === 'ok' && x.warn !== undefined
        const bad = invalidRules('10/1h')
        const volume = rules({ messages: '10/1h' })
        const inv = async (account: string, n: number): Promise<RecordResult> =>
          store.invalid({ ...recordInput(account, bad, { recipients: n }), warnAt: 0.5 })
        assert.equal(warnOf(await inv('alice', 6)), true, 'invalid recipients warn first')
        const later: RecordResult[] = []
        for (let i = 0; i < 6; i++) later.push(await record(store, 'alice', volume, { warnAt: 0.5 }))
        assert.equal(later.filter(warnOf).length, 0, 'the messages reach 50 % in the same window: no second warning')
        const first: RecordResult[] = []
        for (let i = 0; i < 6; i++) first.push(await record(store, 'bob', volume, { warnAt: 0.5 }))
        assert.equal(first.filter(warnOf).length, 1, 'messages warn first')
        assert.equal(warnOf(await inv('bob', 6)), false, 'then invalid recipients do not')
      })

      within(
        'counts refused recipients up to the limit, then disables once with the rule, token and evidence',
        async (c) => {
          const { store } = c
          const r = invalidRules('5/1h')
          const counted = []
          for (let i = 0; i < 3; i++) counted.push(await invalid(store, 'alice', r, i === 0 ? 3 : 1))
          assert.deepEqual(
            counted.map((x) => [x.status, x.counts[0]?.count, x.flipped]),
            [
              ['ok', 3, false],
              ['ok', 4, false],
              ['ok', 5, false],
            ],
          )
          const over = await invalid(store, 'alice', r, 1)
          const last = seq
          assert.equal(over.status, 'refused')
          assert.equal(over.flipped, true)
          const expected = { kind: 'invalid_recipients', max: 5, windowMs: 3_600_000, text: '5/1h', count: 5 }
          assert.deepEqual(overOf(over), expected)
          const stored = await store.getDisabled('alice')
          assert.ok(stored, 'the account is disabled')
          assert.equal(stored.by, 'limit')
          assert.deepEqual(stored.over, expected, 'the record names the invalid_recipients rule')
          assertStoreNow(c, stored.at)
          assert.deepEqual(
            stored.evidence.map((e) => e.subject),
            [0, 1, 2, 3].map((k) => `550 no ${last - k}`),
            'the evidence is the refused recipients, newest first',
          )
          assert.equal(over.status === 'refused' && over.record.incident, stored.incident)
          const again = await invalid(store, 'alice', r, 1)
          assert.deepEqual([again.status, again.flipped], ['disabled', false], 'one flip per incident')
          const message = await store.record(recordInput('alice', rules({ messages: '100/1h' })))
          assert.equal(message.status, 'disabled', 'record() sees the disable')
        },
      )

      within('a reactivation token of the disable re-enables the account and clears the counts', async ({ store }) => {
        const r = invalidRules('2/1h')
        const input = recordInput('alice', r, { recipients: 3 })
        const res = await store.invalid(input)
        assert.equal(res.status, 'refused')
        assert.equal(await store.tokenAccount(input.token), 'alice')
        assert.equal(await store.redeem('alice', input.token), 'ok')
        const after = await invalid(store, 'alice', r, 2)
        assert.deepEqual([after.status, after.counts[0]?.count], ['ok', 2], 'counted from zero after the enable')
      })

      within('keeps its counts apart from the message counts, and enable and reset clear both', async ({ store }) => {
        const r = invalidRules('10/1h')
        const volume = rules({ messages: '10/1h', recipients: '10/1h' })
        await invalid(store, 'alice', r, 4)
        const message = await store.record(recordInput('alice', volume, { recipients: 2 }))
        assert.deepEqual(
          message.counts.map((x) => x.count),
          [1, 2],
          'refused recipients are not messages or recipients',
        )
        assert.equal((await invalid(store, 'alice', r, 1)).counts[0]?.count, 5, 'a message is not an invalid recipient')
        assert.equal((await invalid(store, 'bob', r, 1)).counts[0]?.count, 1, 'per account')
        await store.reset('alice')
        assert.equal((await invalid(store, 'alice', r, 1)).counts[0]?.count, 1, 'reset clears them')
        assert.equal(await store.disable({ account: 'alice', reason: 'x', by: 'cli:test', incident: 'i1' }), true)
        assert.equal(await store.enable('alice'), true)
        assert.equal((await invalid(store, 'alice', r, 1)).counts[0]?.count, 1, 'enable clears them')
      })

      within('monitor mode reports once per window and never disables', async ({ store }) => {
        const r = invalidRules('3/1h')
        const results = []
        for (let i = 0; i < 5; i++) results.push(await invalid(store, 'alice', r, 1, 'monitor'))
        assert.deepEqual(
          results.map((x) => [x.status, x.counts[0]?.count, x.flipped, x.status === 'ok' && x.over !== undefined]),
          [
            ['ok', 1, false, false],
            ['ok', 2, false, false],
            ['ok', 3, false, false],
            ['ok', 4, true, true],
            ['ok', 5, false, true],
          ],
        )
        const flip = results[3]
        assert.ok(flip?.status === 'ok' && flip.evidence && flip.evidence.length > 0, 'the report carries the evidence')
        assert.equal(await store.getDisabled('alice'), null)
        const volume = rules({ messages: '1/1h' })
        await store.record(recordInput('bob', volume, { mode: 'monitor' }))
        const overVolume = await store.record(recordInput('bob', volume, { mode: 'monitor' }))
        assert.equal(overVolume.flipped, true)
        for (let i = 0; i < 3; i++) await invalid(store, 'bob', r, 1, 'monitor')
        assert.equal(
          (await invalid(store, 'bob', r, 1, 'monitor')).flipped,
          true,
          'a volume report in the window does not silence the invalid_recipients report',
        )
      })

      within('disables exactly once when 50 refusals arrive at the same time', async ({ store }) => {
        const r = invalidRules('20/1h')
        const results = await Promise.all(Array.from({ length: 50 }, () => invalid(store, 'alice', r, 1)))
        assert.equal(results.filter((x) => x.status === 'ok').length, 20)
        assert.equal(results.filter((x) => x.status === 'refused' && x.flipped).length, 1)
      })

      passing('forgets refused recipients older than the window (2/2s, 2 buckets)', async (c) => {
        const { store } = c
        const r = invalidRules('2/2s', 2)
        assert.equal((await invalid(store, 'alice', r, 2)).status, 'ok')
        await afterTime(
          c,
          2000,
          async () => (await invalid(store, 'alice', r, 0)).counts[0]?.count === 0,
          'the window has passed',
        )
        const next = await invalid(store, 'alice', r, 2)
        assert.deepEqual([next.status, next.counts[0]?.count], ['ok', 2])
      })

      within('warns once per window at the [warn] fraction', async ({ store }) => {
        const r = invalidRules('10/1h')
        const seen = []
        for (let i = 0; i < 8; i++) seen.push(await store.invalid(recordInput('alice', r, { warnAt: 0.8 })))
        assert.deepEqual(
          seen.map((x) => (x.status === 'ok' && x.warn ? x.warn.count : 0)),
          [0, 0, 0, 0, 0, 0, 0, 8],
          'the refusal that reaches 8 of 10 warns, once',
        )
        const more = await store.invalid(recordInput('alice', r, { warnAt: 0.8 }))
        assert.equal(more.status === 'ok' && more.warn, undefined)
      })

      within('keeps accounts with odd names apart', async ({ store }) => {
        const r = invalidRules('2/1h')
        for (const account of ODD_ACCOUNTS) assert.equal((await invalid(store, account, r, 1)).counts[0]?.count, 1)
      })
    })

    describe('passwords of an incident ([reactivate] require_new_password)', function () {
      const hash = (incident: string, at: number): PasswordHash => ({
        params: 'scrypt:N=16384,r=8,p=1,len=32',
        salt: 'ab'.repeat(16),
        hash: incident
          .padEnd(64, '0')
          .slice(0, 64)
          .replace(/[^0-9a-f]/g, 'e'),
        at,
        incident,
      })

      within('keeps the newest PASSWORDS_CAP hashes per account, through an enable, until forgotten', async (c) => {
        const { store } = c
        assert.deepEqual(await store.oldPasswords('alice'), [])
        for (let i = 1; i <= PASSWORDS_CAP + 1; i++) await store.rememberPassword('alice', hash(`inc${i}`, T0 + i))
        const kept = await store.oldPasswords('alice')
        assert.deepEqual(
          kept.map((h) => h.incident),
          Array.from({ length: PASSWORDS_CAP }, (_, i) => `inc${PASSWORDS_CAP + 1 - i}`),
          'newest first, the oldest dropped',
        )
        assert.deepEqual(kept[0], hash(`inc${PASSWORDS_CAP + 1}`, T0 + PASSWORDS_CAP + 1))
        await store.disable({ account: 'alice', reason: 'x', by: 'cli:test', incident: 'm1' })
        await store.enable('alice')
        await store.reset('alice')
        assert.equal((await store.oldPasswords('alice')).length, PASSWORDS_CAP, 'an enable and a reset keep them')
        assert.deepEqual(await store.oldPasswords('bob'), [], 'per account')
        assert.equal(await store.forgetPasswords('alice'), true)
        assert.deepEqual(await store.oldPasswords('alice'), [])
        assert.equal(await store.forgetPasswords('alice'), false)
      })

      within('keeps accounts with odd names apart', async (c) => {
        for (const account of ODD_ACCOUNTS) await c.store.rememberPassword(account, hash(`i-${account.length}`, T0))
        for (const account of ODD_ACCOUNTS)
          assert.deepEqual(
            (await c.store.oldPasswords(account)).map((h) => h.incident),
            [`i-${account.length}`],
            JSON.stringify(account),
          )
      })
    })

    describe('probation after an enable ([reactivate] probation)', function () {
      const nowOf = (c: ContractStore): number => (c.clock === 'injected' ? c.now() : Date.now())

      within('keeps until when an account is on probation, per account, and ends it', async (c) => {
        const { store } = c
        const now = nowOf(c)
        assert.equal(await store.probationUntil('alice', now), 0)
        await store.startProbation('alice', now + 3_600_000)
        assert.equal(await store.probationUntil('alice', now), now + 3_600_000)
        assert.equal(await store.probationUntil('alice', now + 3_600_000), 0, 'over at its end')
        assert.equal(await store.probationUntil('bob', now), 0)
        await store.startProbation('alice', 0)
        assert.equal(await store.probationUntil('alice', now), 0)
      })

      within('scales every limit by the factor while on probation, and only then', async (c) => {
        const { store } = c
        const r = rules({ messages: '4/1h' })
        const send = (account: string): Promise<RecordResult> =>
          store.record({ ...recordInput(account, r), probationFactor: 0.5 })
        await store.startProbation('alice', nowOf(c) + 3_600_000)
        const alice = [await send('alice'), await send('alice'), await send('alice')]
        assert.deepEqual(
          alice.map((x) => x.status),
          ['ok', 'ok', 'refused'],
        )
        const over = alice[2]?.status === 'refused' ? alice[2].over : undefined
        assert.deepEqual([over?.max, over?.text], [2, '2/1h on probation'])
        const bob = [await send('bob'), await send('bob'), await send('bob'), await send('bob'), await send('bob')]
        assert.deepEqual(
          bob.map((x) => x.status),
          ['ok', 'ok', 'ok', 'ok', 'refused'],
          'not on probation: the limit as configured',
        )
      })
    })

    describe('failed AUTHs (password spraying)', function () {
      const fail = (store: Store, account: string, source: string, max = 5, windowMs = 3_600_000) =>
        store.authFailure({ account, source, max, windowMs })

      within('counts failures per account from every source, and alerts exactly once at the limit', async (c) => {
        const { store } = c
        const results = []
        for (let i = 0; i < 7; i++) results.push(await fail(store, 'alice', `127.${(i % 2) + 1}.0.1`))
        assert.deepEqual(
          results.map((r) => r.count),
          [1, 2, 3, 4, 5, 5, 5],
          'counted up to the limit, then kept at it',
        )
        assert.deepEqual(
          results.map((r) => r.reached),
          [false, false, false, false, true, true, true],
        )
        assert.deepEqual(
          results.map((r) => r.alert),
          [false, false, false, false, true, false, false],
          'one alert per window',
        )
        assert.deepEqual(results[6]?.sources, ['127.1.0.1', '127.2.0.1'])
        for (const r of results) assertStoreNow(c, r.at)
        const first = results[0]
        assert.ok(first && (results[6]?.until ?? 0) >= first.at + 3_600_000, 'blocked for about the window')
        const bob = await fail(store, 'bob', '127.3.0.1')
        assert.deepEqual([bob.count, bob.reached, bob.alert, bob.sources], [1, false, false, ['127.3.0.1']])
      })

      within('keeps at most AUTH_SOURCES_CAP sources', async (c) => {
        let last
        for (let i = 0; i < AUTH_SOURCES_CAP + 5; i++) last = await fail(c.store, 'alice', `10.0.${i}.1`, 100)
        assert.equal(last?.sources.length, AUTH_SOURCES_CAP)
        assert.equal(last?.count, AUTH_SOURCES_CAP + 5)
      })

      within('alerts once when many failures arrive at the same time', async (c) => {
        const results = await Promise.all(
          Array.from({ length: 30 }, (_, i) => fail(c.store, 'alice', `127.${i}.0.1`, 10)),
        )
        assert.equal(results.filter((r) => r.alert).length, 1)
        assert.equal(Math.max(...results.map((r) => r.count)), 10)
      })

      within('keeps accounts with odd names apart', async (c) => {
        for (const account of ODD_ACCOUNTS) await fail(c.store, account, '127.0.0.1', 2)
        for (const account of ODD_ACCOUNTS) {
          const r = await fail(c.store, account, '127.0.0.1', 2)
          assert.deepEqual([r.count, r.alert], [2, true], `account ${JSON.stringify(account)}`)
        }
      })

      passing('forgets failures older than the window, and alerts again in a new window', async (c) => {
        const { store } = c
        const w = 1500
        let last
        for (let i = 0; i < 3; i++) last = await fail(store, 'alice', '127.1.0.1', 3, w)
        assert.equal(last?.alert, true)
        const since = last?.at ?? 0
        // Store time is read on another account, so alice's window is left alone meanwhile.
        await afterTime(
          c,
          w,
          async () => (await fail(store, 'clock-probe', '127.0.0.1', 1000, 60_000)).at >= since + w,
          'a window of store time has passed',
        )
        const again = [] as AuthFailureResult[]
        for (let i = 0; i < 3; i++) again.push(await fail(store, 'alice', '127.2.0.1', 3, w))
        assert.deepEqual(
          again.map((r) => [r.count, r.alert]),
          [
            [1, false],
            [2, false],
            [3, true],
          ],
          'counted from zero, and a new window alerts again',
        )
        assert.deepEqual(again[2]?.sources, ['127.2.0.1'], "the old window's source is forgotten")
      })

      exact('clears exactly one window after the oldest of the newest max failures', async (c) => {
        const { store } = c
        const w = 60_000
        await fail(store, 'alice', 'a', 3, w)
        c.advance(10_000)
        await fail(store, 'alice', 'b', 3, w)
        const third = await fail(store, 'alice', 'c', 3, w)
        assert.deepEqual([third.reached, third.until], [true, T0 + w])
        c.advance(w - 10_000 - 1)
        assert.equal((await fail(store, 'alice', 'd', 3, w)).count, 3, 'the first failure is still in the window')
        c.advance(1)
        const r = await fail(store, 'alice', 'e', 3, w)
        assert.equal(r.count, 3)
        assert.equal(r.alert, false, 'the alert marker lasts the window from the alert')
        assert.deepEqual(r.sources, ['b', 'c', 'd', 'e'], 'a source is forgotten with its window')
      })
    })
  })
}
