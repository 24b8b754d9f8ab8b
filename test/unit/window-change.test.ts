// A change of window or buckets (a reload, an [account:] override) must not give an account a
// fresh quota: what was counted under the old rules keeps counting, to bucket precision.

import * as assert from 'node:assert/strict'

import type { Rule } from '../../lib/config'
import { count, seriesOf, settle, totalsAt } from '../../lib/store/series'
import { MIN, T0, rules } from './store-helpers'
import { random } from '../../support/random'

interface Account {
  /** The counter hash (lib/store/series.ts). */
  readonly fields: Map<string, string>
  /** Counts one message of `recipients` recipients at `at` under `ruleSet`. */
  send(ruleSet: readonly Rule[], at: number, recipients?: number): void
  /** Each rule's total at `at`, after a settle (what the next message would see). */
  totals(ruleSet: readonly Rule[], at: number): number[]
}

/** An account's counter hash, kept the way both stores keep it: settle, then the message adds. */
function account(): Account {
  const fields = new Map<string, string>()
  return {
    fields,
    send(ruleSet, at, recipients = 1) {
      settle(fields, ruleSet, at, seriesOf(ruleSet).sig)
      count(fields, ruleSet, recipients)
    },
    totals(ruleSet, at) {
      return settle(fields, ruleSet, at, seriesOf(ruleSet).sig)
    },
  }
}

/** A hash of buckets written before the series layout (field -> amount). */
function legacy(entries: [string, number][]): Map<string, string> {
  return new Map(entries.map(([f, n]) => [f, String(n)]))
}

/** The rule of `kind` in `ruleSet` (there is exactly one in these tests). */
function ruleOf(ruleSet: readonly Rule[], kind: Rule['kind']): Rule {
  const found = ruleSet.find((r) => r.kind === kind)
  assert.ok(found, `no ${kind} rule in ${ruleSet.map((r) => r.text).join(', ')}`)
  return found
}

describe('a change of window or buckets', function () {
  it('30m/30 -> 30m/10: the messages of the last 30 minutes keep counting', function () {
    const a = account()
    const before = rules('30/30m', '', 30)
    for (let m = 0; m < 20; m++) a.send(before, T0 + m * MIN + 30_000)
    const after = rules('30/30m', '', 10)
    assert.deepEqual(a.totals(after, T0 + 20 * MIN), [20])
    a.send(after, T0 + 20 * MIN)
    assert.deepEqual(a.totals(after, T0 + 20 * MIN + 1), [21])
  })

  it('30m/10 -> 30m/30: the coarse buckets count until they end before the new window', function () {
    const a = account()
    const before = rules('30/30m', '', 10) // three-minute buckets
    for (let m = 0; m < 20; m++) a.send(before, T0 + m * MIN)
    const after = rules('30/30m', '', 30)
    assert.deepEqual(a.totals(after, T0 + 20 * MIN), [20])
    // At 31:00 the window starts at 02:00: the bucket [00:00, 03:00) still overlaps it, whole.
    assert.deepEqual(a.totals(after, T0 + 31 * MIN), [20])
    // At 33:00 the window starts at 04:00: [00:00, 03:00) is out, [03:00, 06:00) still in.
    assert.deepEqual(a.totals(after, T0 + 33 * MIN), [17])
  })

  it('30m -> 1h: nothing of the last 30 minutes is lost, and it counts for the whole hour', function () {
    const a = account()
    const before = rules('30/30m', '', 30)
    for (let m = 0; m < 25; m++) a.send(before, T0 + m * MIN)
    const after = rules('30/1h', '', 30) // two-minute buckets
    assert.deepEqual(a.totals(after, T0 + 25 * MIN), [25])
    assert.deepEqual(a.totals(after, T0 + 58 * MIN), [25])
    // At 62:00 the window starts at 04:00: the messages of minutes 0-3 are out.
    assert.deepEqual(a.totals(after, T0 + 62 * MIN), [21])
  })

  it('1h -> 30m: only what lies in (or overlaps) the new 30-minute window counts', function () {
    const a = account()
    const before = rules('30/1h', '', 30) // two-minute buckets
    for (let m = 0; m < 50; m += 2) a.send(before, T0 + m * MIN) // 25 messages, minutes 0, 2, ..., 48
    const after = rules('30/30m', '', 30)
    // At 50:30 the window starts at 21:00; the bucket [20:00, 22:00) overlaps it and counts whole.
    assert.deepEqual(a.totals(after, T0 + 50 * MIN + 30_000), [15])
    // The old series counts until its last bucket leaves the window, then it is gone.
    // It is kept (counting nothing here) until its own window has passed: its newest bucket,
    // [48:00, 50:00), leaves a 30-bucket window of two minutes at 108:00.
    assert.deepEqual(a.totals(after, T0 + 79 * MIN), [0])
    assert.ok(a.fields.has('m120000x30'))
    assert.deepEqual(a.totals(after, T0 + 108 * MIN), [0])
    assert.ok(!a.fields.has('m120000x30') && !a.fields.has('m120000x30.24'), [...a.fields.keys()].join(' '))
  })

  it('buckets 30 -> 60: the count carries over', function () {
    const a = account()
    const before = rules('100/30m', '500/30m', 30)
    for (let m = 0; m < 30; m++) a.send(before, T0 + m * MIN, 3)
    const after = rules('100/30m', '500/30m', 60) // 30-second buckets
    assert.deepEqual(a.totals(after, T0 + 29 * MIN + 59_999), [30, 90])
  })

  it('an [account:] style change of the window with the same limit refuses the message over it', function () {
    const a = account()
    const before = rules('20/1m', '', 30)
    for (let i = 0; i < 19; i++) a.send(before, T0 + i * 1000)
    const after = rules('20/2m', '', 10)
    const at = T0 + 25_000
    const [total] = a.totals(after, at)
    assert.equal(total, 19)
    a.send(after, at)
    const [counted = NaN] = a.totals(after, at)
    assert.ok(counted + 1 > 20, 'the 21st message is over the limit')
  })

  it('keeps messages and recipients apart across the change', function () {
    const a = account()
    const before = rules('100/30m', '1000/30m', 30)
    for (let m = 0; m < 10; m++) a.send(before, T0 + m * MIN, 7)
    const after = rules('100/1h', '1000/2h', 10)
    assert.deepEqual(a.totals(after, T0 + 10 * MIN), [10, 70])
  })

  describe('the boundary, and buckets of the layout before series (an upgrade)', function () {
    const after = rules('10/10m', '', 5) // two-minute buckets
    const now = T0 + 10 * MIN + 30_000
    const start = T0 + 2 * MIN // the window at 10:30 starts at 02:00

    it('counts an old bucket that ends 1 ms after the window start, and keeps it', function () {
      // Old buckets of 1 ms and of 7 ms: their spans end 1 ms (or a few) after the start.
      const seven = Math.floor(start / 7) // [7i, 7i + 7) contains start - 1 ... start + 6 at most
      const fields = legacy([
        [`1.${start}.m`, 1],
        [`7.${seven}.m`, 10],
      ])
      assert.ok((seven + 1) * 7 > start && seven * 7 < start)
      assert.deepEqual(settle(fields, after, now, seriesOf(after).sig), [11])
      assert.ok(fields.has(`1.${start}.m`) && fields.has(`7.${seven}.m`))
      // While they live, the hash is never taken for a settled one (the scripts' fast path).
      assert.equal(fields.get('s'), 'm120000x5 0')
    })

    it('drops an old bucket that ends exactly at the window start, and deletes it', function () {
      const fields = legacy([
        [`1.${start - 1}.m`, 1],
        [`60000.${start / MIN - 1}.m`, 10],
        [`60000.${start / MIN}.m`, 100],
      ])
      assert.deepEqual(settle(fields, after, now, seriesOf(after).sig), [100])
      assert.deepEqual(
        [...fields.keys()].filter((f) => /^\d/.test(f)),
        [`60000.${start / MIN}.m`],
      )
    })

    it('counts a coarse old bucket whole while any part of it is in the window', function () {
      const coarse = rules('10/10m', '', 2) // five-minute buckets
      const fine = rules('10/10m', '', 10)
      const a = account()
      a.send(coarse, T0) // [00:00, 05:00)
      // At 13:59.999 the fine window starts at 04:00: in, whole; at 14:00 it starts at 05:00: out,
      // and the old series, past its own window too, is deleted.
      assert.deepEqual(a.totals(fine, T0 + 13 * MIN + 59_999), [1])
      assert.deepEqual(a.totals(fine, T0 + 14 * MIN), [0])
      assert.deepEqual([...a.fields.keys()].sort(), ['m60000x10', 'm60000x10!', 'm60000x10@', 's'])
    })

    it('still counts an old bucket ahead of now (after a clock step back)', function () {
      const fields = legacy([[`1000.${(now + 3_600_000) / 1000}.m`, 5]])
      assert.deepEqual(totalsAt(fields, after, now), [5])
    })
  })

  it('loses nothing inside the window and counts at most one old bucket more, for random histories', function () {
    const windows = ['1m', '2m', '5m', '7m', '30m', '1h'] as const
    const bucketCounts = [1, 3, 10, 30, 60] as const
    const next = random(8)
    const pick = <T>(list: readonly T[]): T => {
      const chosen = list[Math.floor(next() * list.length)]
      if (chosen === undefined) throw new Error('pick: empty list')
      return chosen
    }
    for (let run = 0; run < 300; run++) {
      const a = account()
      const before = rules(`1000000/${pick(windows)}`, `1000000/${pick(windows)}`, pick(bucketCounts))
      const after = rules(`1000000/${pick(windows)}`, `1000000/${pick(windows)}`, pick(bucketCounts))
      const start = T0 + Math.floor(next() * 3_600_000)
      const sent: { readonly t: number; readonly rcpts: number }[] = []
      let t = start
      for (let i = 0; i < 60; i++) {
        t += Math.floor(next() * 60_000)
        const rcpts = 1 + Math.floor(next() * 5)
        a.send(before, t, rcpts)
        sent.push({ t, rcpts })
      }
      const changeAt = t + Math.floor(next() * 120_000)
      const seen = a.totals(after, changeAt)
      assert.equal(seen.length, after.length)
      after.forEach((r, i) => {
        const counted = seen[i]
        assert.ok(counted !== undefined)
        const windowStart = (Math.floor(changeAt / r.bucketMs) - r.buckets + 1) * r.bucketMs
        const oldRule = ruleOf(before, r.kind)
        const oldBucket = oldRule.bucketMs
        const amount = (m: { readonly rcpts: number }): number => (r.kind === 'messages' ? 1 : m.rcpts)
        // What the old rule still held at the change: its own window then.
        const oldStart = (Math.floor(changeAt / oldRule.bucketMs) - oldRule.buckets + 1) * oldRule.bucketMs
        const exact = sent.filter((m) => m.t >= Math.max(windowStart, oldStart)).reduce((n, m) => n + amount(m), 0)
        const loose = sent.filter((m) => m.t >= windowStart - oldBucket).reduce((n, m) => n + amount(m), 0)
        const where = `run ${run}: ${before.map((b) => `${b.text}/${b.buckets}`).join(',')} -> ${r.text}/${r.buckets} at +${changeAt - start}ms`
        assert.ok(counted >= exact, `${where}: counted ${counted}, but ${exact} lie in the window`)
        assert.ok(
          counted <= loose,
          `${where}: counted ${counted}, more than the ${loose} of the window and one old bucket`,
        )
      })
    }
  })

  it('counts a message once in steady state with two windows of one kind', function () {
    const a = account()
    const set = rules('500/30m, 2000/24h', '', 30)
    for (let m = 0; m < 100; m++) a.send(set, T0 + m * MIN)
    assert.deepEqual(a.totals(set, T0 + 100 * MIN), [29, 100])
  })

  it('counts each message once when several windows of one kind change their bucket size', function () {
    const before = rules('500/30m, 2000/24h', '', 30) // one-minute and 48-minute buckets
    const sent = 90
    const at = T0 + 100 * MIN
    const changes: [string, Rule[], number[]][] = [
      // 30-second buckets: the window at 100:00 starts at 70:30; the old one-minute bucket [70:00,
      // 71:00) reaches into it and counts whole: 30. The 24h rule's new 24-minute buckets hold
      // nothing old: it counts what the old 24h series holds, 90, once (not once per old series).
      ['buckets 30 -> 60', rules('500/30m, 2000/24h', '', 60), [30, 90]],
      // The 30m rule keeps its series (it holds the messages already): the retired 24h series,
      // written together with it, adds nothing.
      ['the 24h window removed', rules('500/30m', '', 30), [29]],
      ['the 30m window removed', rules('2000/24h', '', 30), [90]],
      // A new 1h rule beside a 24h rule that stays: it counts what the retired 30m series holds
      // (30), not what the 24h series holds (documented: a rule beside one that stays counts from
      // the change on, plus what the retired series hold).
      ['30m -> 1h', rules('500/1h, 2000/24h', '', 30), [30, 90]],
    ]
    for (const [what, after, expected] of changes) {
      const a = account()
      for (let m = 0; m < sent; m++) a.send(before, T0 + 10 * MIN + m * MIN)
      assert.deepEqual(a.totals(after, at), expected, what)
    }
  })

  it('counts every server of a rolling change once: two rule sets write the same account in turn', function () {
    const a = account()
    const oldSet = rules('100/30m', '', 30)
    const newSet = rules('100/1h', '', 30)
    for (let m = 0; m < 40; m++) a.send(m % 2 === 0 ? oldSet : newSet, T0 + m * 15_000)
    // 40 messages in 10 minutes, half through each rule set: each sees all 40.
    assert.deepEqual(a.totals(oldSet, T0 + 10 * MIN), [40])
    assert.deepEqual(a.totals(newSet, T0 + 10 * MIN), [40])
  })

  it('keeps the fields bounded: the old bucket size is gone once it is out of every window', function () {
    const a = account()
    const before = rules('30/30m', '100/30m', 30)
    for (let m = 0; m < 30; m++) a.send(before, T0 + m * MIN)
    const after = rules('30/30m', '100/30m', 10)
    for (let m = 30; m < 70; m++) a.send(after, T0 + m * MIN)
    assert.deepEqual(
      [...a.fields.keys()].filter((f) => !f.startsWith('m180000x10') && !f.startsWith('r180000x10')),
      ['s'],
    )
    assert.ok(a.fields.size <= 2 * (10 + 3) + 1)
  })
})
