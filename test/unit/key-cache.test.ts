import * as assert from 'node:assert/strict'

import { createKeyCache } from '../../lib/store/redis/key-cache'

describe('the key cache of the disable records (lib/store/redis/key-cache.ts)', function () {
  it('keeps what a read settled and answers it until the key is invalidated', function () {
    const cache = createKeyCache<string>(10)
    assert.equal(cache.get('k'), undefined)
    assert.equal(cache.settle(cache.begin('k'), 'v'), true)
    assert.equal(cache.get('k'), 'v')
    cache.invalidate('k')
    assert.equal(cache.get('k'), undefined)
  })

  it('does not keep a read that an invalidation of its key overtook, but keeps one of another key', function () {
    const cache = createKeyCache<string>(10)
    const a = cache.begin('a')
    const b = cache.begin('b')
    cache.invalidate('a')
    assert.equal(cache.settle(a, 'stale'), false)
    assert.equal(cache.settle(b, 'fresh'), true)
    assert.deepEqual([cache.get('a'), cache.get('b')], [undefined, 'fresh'])
  })

  it('does not keep any read that a clear overtook, and forgets everything kept', function () {
    const cache = createKeyCache<string>(10)
    cache.settle(cache.begin('kept'), 'v')
    const reads = ['a', 'b', 'a'].map((k) => cache.begin(k))
    cache.clear()
    assert.deepEqual(
      reads.map((t) => cache.settle(t, 'stale')),
      [false, false, false],
    )
    assert.equal(cache.get('kept'), undefined)
    assert.equal(cache.size(), 0)
  })

  it('an abandoned read stores nothing, and a read begun after an invalidation is kept', function () {
    const cache = createKeyCache<string>(10)
    const failed = cache.begin('k')
    cache.abandon(failed)
    assert.equal(cache.settle(failed, 'late'), false)
    cache.invalidate('k')
    assert.equal(cache.settle(cache.begin('k'), 'new'), true)
    assert.equal(cache.get('k'), 'new')
  })

  it('holds at most maxEntries keys, dropping the least recently used', function () {
    const cache = createKeyCache<number>(3)
    for (const k of ['a', 'b', 'c']) cache.settle(cache.begin(k), 1)
    assert.equal(cache.get('a'), 1) // a is now the most recently used
    cache.settle(cache.begin('d'), 1)
    assert.equal(cache.size(), 3)
    assert.deepEqual(
      ['a', 'b', 'c', 'd'].map((k) => cache.get(k)),
      [1, undefined, 1, 1],
    )
  })

  it('refuses a size that is not a positive integer', function () {
    for (const bad of [0, -1, 1.5, NaN]) assert.throws(() => createKeyCache(bad), RangeError)
  })
})
