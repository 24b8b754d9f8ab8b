import * as assert from 'node:assert/strict'
import type { Rule } from '../../lib/config'

import {
  count,
  countersTtlMs,
  seriesId,
  seriesList,
  seriesOf,
  settle,
  summaryDigest,
  totalsAt,
  warnTotal,
  type CounterHash,
} from '../../lib/store/series'
import { MIN, T0, rule, rules } from './store-helpers'

/** Counts one message at `at` the way both stores do: settle, then add. */
function send(hash: CounterHash, ruleSet: ReturnType<typeof rules>, at: number, recipients = 1): number[] {
  const before = settle(hash, ruleSet, at, seriesOf(ruleSet).sig)
  count(hash, ruleSet, recipients)
  return before
}

describe('counters (lib/store/series.ts)', function () {
  const m10 = rule('messages', '10/10m', 10) // one-minute buckets
  const r10 = rule('recipients', '100/10m', 10)
  const h1 = rule('messages', '50/1h', 10) // six-minute buckets

  it('names a series by kind, bucket size and bucket count, each once per rule set', function () {
    assert.equal(seriesId(m10), 'm60000x10')
    assert.equal(seriesId(r10), 'r60000x10')
    assert.equal(seriesList([m10, r10, h1, m10]), 'm60000x10 r60000x10 m360000x10')
    assert.equal(seriesOf([m10]).sig.length, 8)
    assert.notEqual(seriesOf([m10]).sig, seriesOf([h1]).sig)
  })

  it('keeps a running total that drops each bucket as it leaves the window', function () {
    const hash: CounterHash = new Map()
    for (let m = 0; m < 10; m++) send(hash, [m10, r10], T0 + m * MIN + 1000, 10)
    assert.deepEqual(totalsAt(hash, [m10, r10], T0 + 9 * MIN + 59_999), [10, 100])
    assert.deepEqual(totalsAt(hash, [m10, r10], T0 + 10 * MIN), [9, 90])
    assert.deepEqual(totalsAt(hash, [m10, r10], T0 + 15 * MIN), [4, 40])
    assert.deepEqual(totalsAt(hash, [m10, r10], T0 + 19 * MIN), [0, 0])
    // Reading changes nothing; the next message settles and drops the buckets that left.
    assert.equal(hash.get('m60000x10'), '10')
    send(hash, [m10, r10], T0 + 15 * MIN)
    assert.deepEqual(
      ['m60000x10', 'm60000x10@', 'm60000x10!'].map((f) => hash.get(f)),
      ['5', String((T0 + 15 * MIN) / MIN), seriesOf([m10, r10]).sig],
    )
    assert.deepEqual(totalsAt(hash, [m10, r10], T0 + 15 * MIN), [5, 41])
  })

  it('holds at most `buckets` fields per series however long an account sends', function () {
    const hash: CounterHash = new Map()
    for (let m = 0; m < 500; m++) send(hash, [m10, h1], T0 + m * 20_000)
    const slots = [...hash.keys()].filter((f) => /^[mr]\d+x\d+\.\d+$/.test(f))
    assert.ok(slots.length <= 20, slots.join(' '))
    // Exactly the messages whose bucket is one of the rule's last `buckets`, by brute force.
    const at = T0 + 500 * 20_000
    const expected = [m10, h1].map((r) => {
      const first = Math.floor(at / r.bucketMs) - r.buckets + 1
      return Array.from({ length: 500 }, (_, m) => T0 + m * 20_000).filter((t) => Math.floor(t / r.bucketMs) >= first)
        .length
    })
    assert.deepEqual(expected, [29, 176])
    assert.deepEqual(totalsAt(hash, [m10, h1], at), expected)
  })

  it('keeps counting a bucket ahead of now (a clock step back gives no room)', function () {
    const hash: CounterHash = new Map()
    send(hash, [m10], T0 + 60 * MIN)
    send(hash, [m10], T0 + 60 * MIN)
    assert.deepEqual(send(hash, [m10], T0), [2])
    assert.deepEqual(totalsAt(hash, [m10], T0 + 60 * MIN), [3])
  })

  it('starts over after a silence longer than the window', function () {
    const hash: CounterHash = new Map()
    for (let i = 0; i < 5; i++) send(hash, [m10], T0 + i * MIN)
    assert.deepEqual(send(hash, [m10], T0 + 30 * MIN), [0])
    assert.equal([...hash.keys()].filter((f) => f.startsWith('m60000x10.')).length, 1)
  })

  it('adds recipients to a recipients rule and nothing for a message without any', function () {
    const hash: CounterHash = new Map()
    send(hash, [m10, r10], T0, 0)
    send(hash, [m10, r10], T0, 7)
    assert.deepEqual(totalsAt(hash, [m10, r10], T0), [2, 7])
  })

  it('lets two rules of one series share its buckets', function () {
    const a = rule('messages', '10/10m', 10)
    const b = rule('messages', '3/10m', 10)
    const hash: CounterHash = new Map()
    for (let i = 0; i < 4; i++) send(hash, [a, b], T0 + i)
    assert.deepEqual(totalsAt(hash, [a, b], T0 + 5), [4, 4])
    assert.equal(hash.get('s'), 'm60000x10')
  })

  it('lives the longest window plus one bucket', function () {
    assert.equal(countersTtlMs([m10]), 11 * MIN)
    assert.equal(countersTtlMs([m10, h1]), 66 * MIN)
    assert.equal(countersTtlMs([]), MIN)
  })

  it('digests summaries', function () {
    assert.match(summaryDigest('{"ip":"192.0.2.1"}'), /^[0-9a-f]{8}$/)
    assert.notEqual(summaryDigest('a'), summaryDigest('b'))
    assert.equal(summaryDigest('same'), summaryDigest('same'))
  })

  it('warns at the fraction of a limit rounded up, never at the limit itself below 100%, never when off', function () {
    const max = (n: number): Rule => ({
      kind: 'messages',
      max: n,
      windowMs: 60_000,
      buckets: 1,
      bucketMs: 60_000,
      text: `${n}/1m`,
    })
    assert.deepEqual(
      [500, 10, 8, 5, 4, 1].map((n) => warnTotal(max(n), 0.8)),
      [400, 8, 7, 4, 0, 0],
    )
    assert.equal(warnTotal(max(1), 1), 1, 'at = 100% warns on the message that reaches the limit')
    assert.equal(warnTotal(max(3), 0.01), 1)
    assert.equal(warnTotal(max(500), 0), 0)
    assert.equal(warnTotal(max(500), undefined), 0)
  })
})
