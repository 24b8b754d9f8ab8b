import * as assert from 'node:assert/strict'

import { StoreError, type RecordInput, type RecordResult, type Store } from '../../lib/store'
import { countersTtlMs } from '../../lib/store/series'
import { accountKeys, encodeAccount, PREFIX } from '../../lib/store/keys'
import type { RedisStore } from '../../lib/store/redis'
import { SCRIPTS } from '../../lib/store/redis/scripts'
import { freePort, HOST, waitUntil } from '../../support/process'
import { startRedis, type RedisClient, type RedisServer } from '../../support/redis'
import { contract, ODD_ACCOUNTS, recordInput, rules, summary, type RealClockStore } from './contract'
import {
  openRedisStore,
  quietLog,
  redisServerHooks,
  untilAnswers,
  untilEnabled,
  type OpenRedisOptions,
} from './redis-store'

// Stores a test opened, closed after it even when it fails (an open client keeps mocha alive).
const opened = new Set<Store>()

function newStore(port: number, { track = true, ...options }: OpenRedisOptions & { track?: boolean } = {}): RedisStore {
  const store = openRedisStore(port, options)
  if (track) opened.add(store)
  return store
}

/** Sends the same message twice under 1 message per hour: the second is refused. */
async function trip(store: Store, account: string, extra: Partial<RecordInput> = {}): Promise<RecordResult> {
  const r = rules({ messages: '1/1h' })
  const input = { ...recordInput(account, r, { summary: summary(1) }), ...extra }
  await store.record(input)
  return store.record(input)
}

/** Collects unhandled rejections while `fn` runs. */
async function noUnhandledRejections(fn: () => Promise<void>): Promise<void> {
  const seen: unknown[] = []
  const onRejection = (reason: unknown): void => {
    seen.push(reason)
  }
  process.on('unhandledRejection', onRejection)
  try {
    await fn()
    // Let any stray promise settle and be reported before looking.
    await new Promise((resolve) => setImmediate(resolve))
  } finally {
    process.off('unhandledRejection', onRejection)
  }
  assert.deepEqual(seen, [], 'no unhandled rejections')
}

/** A redis reply that must be text (CLUSTER INFO, CLUSTER KEYSLOT as the tests read it). */
function text(reply: unknown): string {
  assert.ok(typeof reply === 'string' || typeof reply === 'number', `a text reply, got ${JSON.stringify(reply)}`)
  return String(reply)
}

/** Resolves what `retry` resolves once it no longer rejects with StoreError (within 5 s). */
function onceRedisAnswers<T>(retry: () => Promise<T>, what: string): Promise<Exclude<T, null>> {
  const attempt = async (): Promise<T | null> => {
    try {
      return await retry()
    } catch (err) {
      if (err instanceof StoreError) return null
      throw err
    }
  }
  return waitUntil(attempt, { timeoutMs: 5000, message: what }) as Promise<Exclude<T, null>>
}

describe('redis store', function () {
  this.timeout(20_000)

  const db = redisServerHooks()

  afterEach(async function () {
    await Promise.all([...opened].map((store) => store.close()))
    opened.clear()
  })

  contract('redis', async (): Promise<RealClockStore> => {
    await db.admin.flushAll()
    const store = newStore(db.server.port)
    await untilAnswers(store)
    return { store, clock: 'real', cleanup: () => store.close() }
  })

  describe('redis store: scripts', function () {
    let store: RedisStore

    beforeEach(async function () {
      await db.admin.flushAll()
      store = newStore(db.server.port)
      await untilAnswers(store)
    })

    afterEach(async function () {
      await store.close()
    })

    it('has, for every Lua script, the sha that SCRIPT LOAD returns for its source', async function () {
      const names = SCRIPTS.map((s) => s.name)
      for (const name of ['record', 'disable', 'enable']) assert.ok(names.includes(name), `${name} is in SCRIPTS`)
      for (const script of SCRIPTS) assert.equal(await db.admin.scriptLoad(script.source), script.sha, script.name)
    })

    it('keeps working after SCRIPT FLUSH (EVALSHA falls back to EVAL on NOSCRIPT)', async function () {
      const r = rules({ messages: '100/1h' })
      const input = recordInput('alice', r, { recipients: 2, summary: summary(1) })
      assert.equal((await store.record(input)).counts[0]?.count, 1)
      await db.admin.scriptFlush()
      assert.deepEqual(
        await db.admin.scriptExists(SCRIPTS.map((s) => s.sha)),
        SCRIPTS.map(() => 0),
      )
      assert.equal((await store.record(input)).counts[0]?.count, 2)
      await db.admin.scriptFlush()
      assert.equal(await store.disable({ account: 'alice', reason: 'manual', by: 'test', incident: 'i' }), true)
      await db.admin.scriptFlush()
      assert.equal(await store.enable('alice'), true)
      assert.equal(await store.getDisabled('alice'), null)
      const token = '0'.repeat(32)
      assert.equal((await trip(store, 'bob', { token })).status, 'refused')
      await db.admin.scriptFlush()
      assert.equal(await store.redeem('bob', token), 'ok')
    })

    it('keeps the disable record forever and lets the counters, evidence and monitor marker expire', async function () {
      const r = rules({ messages: '1/1h', recipients: '10/1d' })
      const k = accountKeys('alice')
      await store.record(recordInput('alice', r, { mode: 'monitor', summary: summary(1) }))
      await store.record(recordInput('alice', r, { mode: 'monitor', summary: summary(2) }))
      const ttl = countersTtlMs(r)
      for (const key of [k.counts, k.evidence]) {
        const pttl = await db.admin.pTTL(key)
        assert.ok(pttl > ttl - 10_000 && pttl <= ttl, `${key} expires after the longest window and a bucket (${pttl})`)
      }
      const monitored = await db.admin.pTTL(k.monitored)
      assert.ok(monitored > 0 && monitored <= 3_600_000, `the monitor marker lives one window (${monitored})`)
      await store.record(recordInput('alice', r, { summary: summary(3) }))
      assert.equal(await db.admin.pTTL(k.disabled), -1)
    })

    it('renews the counters TTL once per bucket, so the key outlives every message by the longest window', async function () {
      // One-second buckets: the TTL (4 s) is renewed by the first message of each bucket only,
      // and a message is never more than one bucket after a renewal.
      const r = rules({ messages: '1000/3s', buckets: 3 })
      const k = accountKeys('ttl@example.com')
      const seen: number[] = []
      const end = Date.now() + 3500
      while (Date.now() < end) {
        await store.record(recordInput('ttl@example.com', r, { summary: summary(1) }))
        const pttl = await db.admin.pTTL(k.counts)
        seen.push(pttl)
        assert.ok(pttl >= 3000 - 100 && pttl <= 4000, `the key outlives the message by the window (${pttl} ms)`)
        await new Promise((resolve) => setTimeout(resolve, 150))
      }
      // Within a bucket the TTL runs down (not renewed per message).
      assert.ok(
        seen.some((p, i) => i > 0 && p < (seen[i - 1] ?? 0) - 100),
        `the TTL ran down between two messages: ${seen.join(' ')}`,
      )
    })

    it('counts exactly the buckets inside the window, by Redis TIME, and drops the ones that left it', async function () {
      // 10 buckets of 6 minutes: a boundary falls between TIME and the script once in hours;
      // should it happen, the bucket index moves and the test is run again.
      const r = rules({ messages: '100/1h', buckets: 10 })
      const bucketMs = r[0]?.bucketMs
      assert.ok(bucketMs !== undefined)
      const k = accountKeys('alice')
      const index = async (): Promise<number> => {
        const [s, us] = await db.admin.time()
        return Math.floor((Number(s) * 1000 + Math.floor(Number(us) / 1000)) / bucketMs)
      }
      for (let attempt = 0; ; attempt++) {
        await db.admin.del(k.counts)
        const cur = await index()
        const start = (cur - 9) * bucketMs
        // Buckets of the layout before series (an upgrade), of this rule's size and of 999 ms
        // from another configuration: inside the window, and ending right at its start.
        const leftoverIn = `999.${Math.floor((cur * bucketMs) / 999)}.m`
        const leftoverOut = `999.${Math.floor(start / 999) - 1}.m`
        await db.admin.hSet(k.counts, {
          [`${bucketMs}.${cur - 9}.m`]: '2',
          [`${bucketMs}.${cur - 10}.m`]: '30',
          [`${bucketMs}.${cur}.r`]: '5000',
          [leftoverIn]: '40',
          [leftoverOut]: '500',
          garbage: '700000',
        })
        const res = await store.record(recordInput('alice', r, { summary: summary(1) }))
        const counted = await store.counts('alice', r)
        if ((await index()) !== cur && attempt < 3) continue
        assert.equal(
          res.counts[0]?.count,
          43,
          'the oldest bucket inside the window, the leftover inside it and this message',
        )
        assert.deepEqual(counted, res.counts)
        // While old buckets live, the hash is not taken for a settled one.
        assert.equal(await db.admin.hGet(k.counts, 's'), `m${bucketMs}x10 0`)
        assert.deepEqual(
          (await db.admin.hKeys(k.counts)).sort(),
          // The old buckets inside the window stay until they leave it; the rest are gone. A
          // field the plugin never writes is left alone (it goes with the key).
          [
            `${bucketMs}.${cur - 9}.m`,
            leftoverIn,
            'garbage',
            's',
            `m${bucketMs}x10`,
            `m${bucketMs}x10@`,
            `m${bucketMs}x10!`,
            `m${bucketMs}x10.${cur % 10}`,
            'ed',
          ].sort(),
        )
        break
      }
    })

    it('lists disabled accounts by their disable records, odd names decoded, and not once enabled', async function () {
      await trip(store, 'a b')
      await store.disable({ account: 'ü:{x}', reason: 'manual', by: 'test', incident: 'i' })
      await db.admin.set(`${PREFIX}:{decoy}:disabledx`, '1')
      assert.deepEqual((await store.listDisabled()).map((x) => x.account).sort(), ['a b', 'ü:{x}'].sort())
      await store.enable('a b')
      await store.enable('ü:{x}')
      assert.deepEqual(await store.listDisabled(), [])
    })

    it('leaves out of listDisabled() an index entry whose disable record is gone', async function () {
      await trip(store, 'alice')
      await trip(store, 'bob')
      await db.admin.del(accountKeys('bob').disabled)
      assert.deepEqual(
        (await store.listDisabled()).map((x) => x.account),
        ['alice'],
      )
    })

    it('shares counts, limits and the disabled flag between several stores on one Redis (several servers)', async function () {
      const others = [
        newStore(db.server.port),
        newStore(db.server.port),
        newStore(db.server.port),
        newStore(db.server.port),
      ]
      const stores = [store, ...others]
      try {
        await Promise.all(others.map(untilAnswers))
        const r = rules({ messages: '20/1h' })
        const results = await Promise.all(
          stores.flatMap((s, i) =>
            Array.from({ length: 10 }, (_, j) => s.record(recordInput('alice', r, { summary: summary(i * 10 + j) }))),
          ),
        )
        assert.equal(results.filter((x) => x.status === 'ok').length, 20)
        assert.equal(results.filter((x) => x.status === 'refused').length, 1)
        assert.equal(results.filter((x) => x.flipped).length, 1)
        for (const s of stores) assert.equal((await s.getDisabled('alice'))?.by, 'limit')
        assert.equal(await others[1]?.enable('alice'), true)
        // the others hear of it by the invalidation Redis pushes to their disable-record caches
        await Promise.all(stores.map((s) => untilEnabled(s, 'alice')))
      } finally {
        await Promise.all(others.map((s) => s.close()))
      }
    })
  })

  describe('redis store: one Cluster slot per account', function () {
    let node: RedisServer
    let nodeAdmin: RedisClient
    let store: RedisStore | undefined

    before(async function () {
      node = await startRedis({ args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'] })
      nodeAdmin = await node.client()
      await nodeAdmin.sendCommand(['CLUSTER', 'ADDSLOTSRANGE', '0', '16383'])
      await waitUntil(async () => /cluster_state:ok/.test(text(await nodeAdmin.sendCommand(['CLUSTER', 'INFO']))), {
        timeoutMs: 5000,
        ignoreErrors: true,
        message: 'the one-node cluster is up',
      })
      store = newStore(node.port, { track: false })
      await untilAnswers(store)
    })

    after(async function () {
      await store?.close()
      // also closes nodeAdmin, its client
      await node?.stop()
    })

    function hashTag(key: string): string | null {
      const open = key.indexOf('{')
      const close = key.indexOf('}', open + 1)
      return open >= 0 && close > open + 1 ? key.slice(open + 1, close) : null
    }

    it('is a node that refuses scripts whose keys span two slots (so the next test means something)', async function () {
      await assert.rejects(nodeAdmin.eval('return 1', { keys: ['a', 'b'], arguments: [] }), /CROSSSLOT/)
    })

    it('puts every key of an account in one slot, under the account hash tag, and shares no key between accounts', async function () {
      assert.ok(store)
      const owner = new Map<string, string>()
      const r = rules({ messages: '1/1h', recipients: '10/1h' })
      for (const account of ODD_ACCOUNTS) {
        await nodeAdmin.flushAll()
        const input = recordInput(account, r, { recipients: 2, mode: 'monitor', summary: summary(1) })
        await store.record(input)
        assert.equal((await store.record(input)).flipped, true)
        assert.equal(await store.disable({ account, reason: 'manual', by: 'test', incident: 'i' }), true)
        const keys = (await nodeAdmin.keys('*')).sort()
        const own = Object.values({ ...accountKeys(account) })
        for (const key of keys) assert.ok(own.includes(key), `${key} is not one of the account's keys`)
        assert.ok(keys.includes(accountKeys(account).disabled) && keys.includes(accountKeys(account).counts))
        const slots = new Set<string>()
        for (const key of keys) {
          slots.add(text(await nodeAdmin.sendCommand(['CLUSTER', 'KEYSLOT', key])))
          assert.equal(hashTag(key), encodeAccount(account))
          assert.ok(!owner.has(key), `${key} belongs to ${JSON.stringify(owner.get(key))} as well`)
          owner.set(key, account)
        }
        assert.equal(slots.size, 1, `${JSON.stringify(account.slice(0, 20))} spans slots ${[...slots].join(', ')}`)
        // Every operation runs on the cluster node without a CROSSSLOT error.
        assert.equal(await store.enable(account), true)
        const token = 'f'.repeat(32)
        const refused = await trip(store, account, { rules: r, token })
        assert.equal(refused.status, 'refused')
        assert.equal(await store.tokenAccount(token), account)
        await store.reset(account)
        assert.deepEqual(
          (await store.counts(account, r)).map((x) => x.count),
          [0, 0],
        )
        assert.deepEqual(await store.evidence(account), [])
        assert.equal((await store.getDisabled(account))?.account, account)
        assert.deepEqual(
          (await store.listDisabled()).map((x) => x.account),
          [account],
        )
        assert.equal(await store.redeem(account, token), 'ok')
      }
    })
  })

  describe('redis store: when Redis fails', function () {
    const timeoutMs = 300
    const marginMs = 400
    let down: RedisServer | null = null

    afterEach(async function () {
      await down?.stop()
      down = null
    })

    interface Settled {
      readonly value?: unknown
      readonly error?: unknown
      readonly elapsed: number
    }

    async function settlesWithin(work: Promise<unknown>): Promise<Settled> {
      const started = Date.now()
      const outcome = await work.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      )
      return { ...outcome, elapsed: Date.now() - started }
    }

    /** What a call settled with, for a failure message. */
    function settledWith(o: Settled): string {
      if (o.error === undefined) return `the value ${JSON.stringify(o.value)}`
      return o.error instanceof Error ? `${o.error.name}: ${o.error.message}` : JSON.stringify(o.error)
    }

    function everyCall(store: Store): Record<string, () => Promise<unknown>> {
      const r = rules({ messages: '100/1h' })
      return {
        record: () => store.record(recordInput('alice', r, { summary: summary(1) })),
        getDisabled: () => store.getDisabled('alice'),
        disable: () => store.disable({ account: 'alice', reason: 'manual', by: 'test', incident: 'i' }),
        enable: () => store.enable('alice'),
        reset: () => store.reset('alice'),
        counts: () => store.counts('alice', r),
        evidence: () => store.evidence('alice'),
        listDisabled: () => store.listDisabled(),
      }
    }

    async function expectAllFail(store: Store, limitMs: number): Promise<void> {
      const calls = Object.entries(everyCall(store))
      const outcomes = await Promise.all(calls.map(([, call]) => settlesWithin(call())))
      calls.forEach(([name], i) => {
        const o = outcomes[i]
        assert.ok(o)
        assert.ok(o.error instanceof StoreError, `${name} rejects with StoreError, got ${settledWith(o)}`)
        assert.ok(o.elapsed <= limitMs, `${name} answered in ${o.elapsed} ms, more than ${limitMs} ms`)
      })
    }

    it(`rejects every call with StoreError within the timeout (${timeoutMs} ms) while Redis hangs`, async function () {
      const hung = await startRedis()
      down = hung
      const log = quietLog()
      const store = newStore(hung.port, { timeoutMs, log })
      await noUnhandledRejections(async () => {
        await untilAnswers(store)
        hung.pause()
        try {
          const started = Date.now()
          await expectAllFail(store, timeoutMs + marginMs)
          const elapsed = Date.now() - started
          assert.ok(elapsed >= timeoutMs - 20, `the calls waited for the timeout (${elapsed} ms)`)
          // Still hung: a later call waits no longer than the timeout either.
          await expectAllFail(store, timeoutMs + marginMs)
        } finally {
          hung.resume()
        }
        const res = await onceRedisAnswers(
          () => store.record(recordInput('carol', rules({ messages: '100/1h' }))),
          'record works again once Redis answers',
        )
        assert.equal(res.status, 'ok')
        await store.close()
      })
    })

    it('rejects with StoreError within the timeout when Redis stops, and works again on the same store when it restarts', async function () {
      const redis = await startRedis()
      down = redis
      const log = quietLog()
      const store = newStore(redis.port, { timeoutMs, log })
      const r = rules({ messages: '100/1h' })
      const input = recordInput('alice', r, { summary: summary(1) })
      await noUnhandledRejections(async () => {
        await untilAnswers(store)
        assert.equal((await store.record(input)).status, 'ok')
        const port = redis.port
        await redis.stop()
        const o = await settlesWithin(store.record(input))
        assert.ok(o.error instanceof StoreError, `record rejects with StoreError, got ${settledWith(o)}`)
        assert.ok(o.elapsed <= timeoutMs + marginMs, `record answered in ${o.elapsed} ms`)
        await expectAllFail(store, timeoutMs + marginMs)
        assert.ok(
          log.lines.some((l) => l.startsWith('error ') && l.includes(`${HOST}:${port}`)),
          `the failure is logged: ${log.lines.join(' | ')}`,
        )

        // the same port: a new redis-server without persistence
        await redis.start()
        const res = await onceRedisAnswers(() => store.record(input), 'record works again after Redis restarts')
        assert.equal(res.status, 'ok')
        assert.equal(res.counts[0]?.count, 1, 'a restarted Redis without persistence starts from zero')
        await store.close()
      })
    })

    it('creates a store at once while Redis is down, fails calls with StoreError, and succeeds once Redis starts', async function () {
      const port = await freePort()
      await noUnhandledRejections(async () => {
        const started = Date.now()
        const store = newStore(port, { timeoutMs })
        const closed = newStore(port, { timeoutMs })
        assert.ok(Date.now() - started < 100, `the factory returned in ${Date.now() - started} ms`)
        await expectAllFail(store, timeoutMs + marginMs)
        const o = await settlesWithin(closed.close())
        assert.equal(o.error, undefined)
        assert.ok(o.elapsed < 1000, `close() while Redis is down took ${o.elapsed} ms`)

        down = await startRedis({ port })
        const r = rules({ messages: '100/1h' })
        const res = await onceRedisAnswers(
          () => store.record(recordInput('alice', r, { summary: summary(1) })),
          'record works once Redis is up',
        )
        assert.equal(res.status, 'ok')
        assert.equal(await store.disable({ account: 'bob', reason: 'manual', by: 'test', incident: 'i' }), true)
        assert.equal((await store.listDisabled())[0]?.account, 'bob')
        await store.close()
      })
    })
  })
})
