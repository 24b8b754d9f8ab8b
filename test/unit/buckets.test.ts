import * as assert from 'node:assert/strict'

import { bucketField, countersTtlMs, staleFields, windowTotals } from '../../lib/store/buckets'
import { MIN, T0, rule } from './store-helpers'

describe('buckets', function () {
  const m10 = rule('messages', '10/10m', 10) // bucketMs one minute
  const r10 = rule('recipients', '100/10m', 10)
  const h1 = rule('messages', '50/1h', 10) // bucketMs six minutes

  describe('bucketField', function () {
    it('names the rule bucket that holds an instant: "<bucketMs>.<index>.<m|r>"', function () {
      const index = T0 / MIN
      assert.equal(bucketField(m10, T0), `60000.${index}.m`)
      assert.equal(bucketField(m10, T0 + MIN - 1), `60000.${index}.m`)
      assert.equal(bucketField(m10, T0 + MIN), `60000.${index + 1}.m`)
      assert.equal(bucketField(r10, T0), `60000.${index}.r`)
      assert.equal(bucketField(h1, T0 + 7 * MIN), `360000.${T0 / (6 * MIN) + 1}.m`)
    })
  })

  describe('windowTotals', function () {
    it('sums the buckets inside each window: the current one and the buckets - 1 before it', function () {
      const at = (minutes: number, kind: 'm' | 'r' = 'm'): string =>
        bucketField(kind === 'm' ? m10 : r10, T0 + minutes * MIN)
      const fields: [string, number][] = [
        [at(0), 1],
        [at(5), 2],
        [at(9), 4],
        [at(0, 'r'), 10],
        [at(9, 'r'), 20],
      ]
      assert.deepEqual(windowTotals(fields, [m10, r10], T0 + 9 * MIN + 59_999), [7, 30])
      assert.deepEqual(windowTotals(fields, [m10, r10], T0 + 10 * MIN), [6, 20])
      assert.deepEqual(windowTotals(fields, [m10, r10], T0 + 15 * MIN), [4, 20])
      assert.deepEqual(windowTotals(fields, [m10, r10], T0 + 19 * MIN), [0, 0])
    })

    it('leaves out buckets another rule of the kind writes, buckets of another kind and malformed fields', function () {
      const now = T0 + 5 * MIN
      const fields = new Map([
        [bucketField(m10, now), 1],
        [bucketField(h1, now), 1000],
        [bucketField(r10, now), 10_000],
        ['garbage', 100_000],
        [`60000.${T0 / MIN}.x`, 1_000_000],
        ['60000..m', 10_000_000],
      ])
      assert.deepEqual(windowTotals(fields, [m10, h1], now), [1, 1000])
    })

    it('still counts a bucket ahead of the instant (after the clock stepped back), like the record script', function () {
      const now = T0 + 5 * MIN
      const fields = new Map([
        [bucketField(m10, now), 1],
        [bucketField(m10, now + MIN), 100],
        [bucketField(m10, now - 10 * MIN), 10_000],
      ])
      assert.deepEqual(windowTotals(fields, [m10], now), [101])
    })

    it('counts one bucket for every rule of that size and kind', function () {
      const tight = rule('messages', '3/10m', 10)
      const fields: [string, number][] = [[bucketField(m10, T0), 2]]
      assert.deepEqual(windowTotals(fields, [m10, tight, h1], T0), [2, 2, 0])
    })

    it('gives zeros for no fields and nothing for no rules', function () {
      assert.deepEqual(windowTotals([], [m10, r10], T0), [0, 0])
      assert.deepEqual(windowTotals([[bucketField(m10, T0), 1]], [], T0), [])
    })
  })

  describe('staleFields', function () {
    it('returns the fields no window covers any more and malformed ones', function () {
      const now = T0 + 10 * MIN
      const live = bucketField(m10, T0 + MIN)
      const edge = bucketField(m10, T0)
      const otherKindLive = bucketField(r10, T0 + 5 * MIN)
      const day = rule('messages', '1/1d', 10) // 2.4-hour buckets
      const leftoverLive = bucketField(day, now)
      const leftoverOld = bucketField(day, now - 3 * 144 * MIN)
      assert.deepEqual(
        staleFields([live, edge, otherKindLive, leftoverLive, leftoverOld, 'junk'], [m10, r10], now).sort(),
        [edge, 'junk', leftoverOld].sort(),
      )
    })

    it('keeps a field that the longer of two windows of the same size still covers', function () {
      const short = rule('messages', '10/10m', 10)
      const long = rule('messages', '10/20m', 20) // also one-minute buckets
      const f = bucketField(short, T0)
      assert.deepEqual(staleFields([f], [short, long], T0 + 15 * MIN), [])
      assert.deepEqual(staleFields([f], [short, long], T0 + 20 * MIN), [f])
    })
  })

  describe('countersTtlMs', function () {
    it('is the longest window plus one bucket, or one minute without rules', function () {
      assert.equal(countersTtlMs([m10]), 11 * MIN)
      assert.equal(countersTtlMs([m10, h1]), 66 * MIN)
      assert.equal(countersTtlMs([]), MIN)
    })
  })
})
