// The RECORD script against the counter model (lib/store/series.ts) it follows: for random
// histories, rule changes, earlier-layout buckets and limits, each call to a real redis-server
// leaves exactly the hash the model leaves from the same state at the same instant (the script's
// TIME, which the reply carries), and answers the same totals and verdict. The memory store runs
// the model itself, so both stores decide alike; the fast path (a settled hash) and the general
// path are both taken.

import * as assert from 'node:assert/strict'

import type { Rule } from '../../lib/config'
import type { MessageSummary, RecordResult } from '../../lib/store'
import { accountKeys } from '../../lib/store/keys'
import { addOf, count, seriesOf, settle, type CounterHash } from '../../lib/store/series'
import { recordInput, rules, summary } from './contract'
import { openRedisStore, redisServerHooks } from './redis-store'
import { random } from '../../support/random'

const isEvidence = (field: string): boolean => field === 'ed'

function withoutEvidence(hash: Record<string, string> | CounterHash): Record<string, string> {
  const entries = hash instanceof Map ? [...hash] : Object.entries(hash)
  return Object.fromEntries(entries.filter(([f]) => !isEvidence(f)).sort(([a], [b]) => a.localeCompare(b)))
}

/** When the script ran: the store-clock ms its reply carries. */
function atOf(result: RecordResult): number {
  if (result.status === 'ok') return result.at
  if (result.status === 'refused') return result.record.at
  throw new Error(`no time in a ${result.status} reply`)
}

describe('the RECORD script follows the counter model (real redis-server)', function () {
  this.timeout(120_000)
  const redis = redisServerHooks()

  it('leaves the same hash and answers the same totals for 150 random histories', async function () {
    const store = openRedisStore(redis.server.port)
    await store.ready(5000)
    try {
      const next = random(10)
      const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)] as T
      const windows = ['2s', '1m', '7m', '30m', '1h', '24h']
      const ruleSet = (): Rule[] =>
        rules({
          messages: `${pick([3, 20, 1000])}/${pick(windows)}${next() < 0.3 ? `, ${pick([50, 5000])}/${pick(windows)}` : ''}`,
          recipients: next() < 0.7 ? `${pick([10, 100, 100000])}/${pick(windows)}` : '',
          buckets: pick([1, 3, 10, 30, 60]),
          // A networks rule sits among the series rules and takes nothing from them (no network is sent).
          networks: next() < 0.5 ? `${pick([2, 1000])}/${pick(windows)}` : '',
        })
      let fast = 0
      let general = 0
      for (let run = 0; run < 150; run++) {
        const account = `model${run}@example.com`
        const k = accountKeys(account)
        const [sec, us] = await redis.admin.time()
        const now = Number(sec) * 1000 + Math.floor(Number(us) / 1000)
        // A history under one or two earlier rule sets, counted by the model at past instants.
        const history: CounterHash = new Map()
        const sets = [ruleSet(), ruleSet()]
        let t = now - Math.floor(next() * 7_200_000)
        for (let i = Math.floor(next() * 40); i > 0; i--) {
          const set = pick(sets)
          t = Math.min(now - 1, t + Math.floor(next() * 300_000))
          settle(history, set, t, seriesOf(set).sig)
          count(history, set, 1 + Math.floor(next() * 4))
        }
        if (next() < 0.2) history.set(`60000.${Math.floor(now / 60_000) - Math.floor(next() * 40)}.m`, '7')
        await redis.admin.del([k.counts, k.disabled, k.monitored])
        if (history.size > 0) await redis.admin.hSet(k.counts, Object.fromEntries(history))
        const current = next() < 0.5 ? pick(sets) : ruleSet()
        for (let step = 0; step < 3; step++) {
          const before = new Map(Object.entries(await redis.admin.hGetAll(k.counts)))
          if (before.get('s') === seriesOf(current).list) fast++
          else general++
          const recipients = Math.floor(next() * 5)
          const mode = next() < 0.8 ? 'enforce' : 'monitor'
          const result = await store.record(recordInput(account, current, { recipients, mode, summary: summary(step) }))
          const at = atOf(result)
          const model = new Map(before)
          const totals = settle(model, current, at, seriesOf(current).sig)
          const adds = current.map((r) => addOf(r, recipients))
          const over = current.findIndex((r, i) => (totals[i] ?? 0) + (adds[i] ?? 0) > r.max)
          const counted = over < 0 || mode === 'monitor'
          if (counted) count(model, current, recipients)
          const where = `run ${run} step ${step}: ${current.map((r) => `${r.text}/${r.buckets}`).join(', ')}`
          assert.equal(result.status, counted ? 'ok' : 'refused', where)
          assert.deepEqual(
            result.counts.map((c) => c.count),
            totals.map((n, i) => n + (counted ? (adds[i] ?? 0) : 0)),
            where,
          )
          assert.deepEqual(withoutEvidence(await redis.admin.hGetAll(k.counts)), withoutEvidence(model), where)
          await redis.admin.del(k.disabled)
        }
      }
      assert.ok(fast >= 40 && general >= 40, `paths taken: settled ${fast} times, general ${general} times`)
    } finally {
      await store.close()
    }
  })

  it('keeps the evidence like its newest only once, newest first, at most 10', async function () {
    const store = openRedisStore(redis.server.port)
    await store.ready(5000)
    try {
      const r = rules({ messages: '1000/1h' })
      const sent: MessageSummary[] = [1, 1, 2, 2, 2, 3, 1, 4, 5, 6, 7, 8, 9, 10, 11, 11].map((n) => summary(n))
      for (const s of sent) await store.record(recordInput('ev@example.com', r, { summary: s }))
      const expected: MessageSummary[] = []
      for (const s of sent) if (JSON.stringify(expected[0]) !== JSON.stringify(s)) expected.unshift(s)
      assert.deepEqual(await store.evidence('ev@example.com'), expected.slice(0, 10))
      assert.deepEqual(
        (await store.evidence('ev@example.com')).map((s) => s.subject),
        [
          'subject 11',
          'subject 10',
          'subject 9',
          'subject 8',
          'subject 7',
          'subject 6',
          'subject 5',
          'subject 4',
          'subject 1',
          'subject 3',
        ],
      )
    } finally {
      await store.close()
    }
  })
})
