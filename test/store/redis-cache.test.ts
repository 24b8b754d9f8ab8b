// The Redis store's disable-record cache (lib/store/redis/tracking.ts) against a real
// redis-server, as an attacker would probe it: every way another client can change a record
// reaches this store's next lookup; a dropped connection, a restarted Redis or a failed call
// leaves nothing cached; and a lookup that Redis keeps true costs no round trip.

import * as assert from 'node:assert/strict'

import { StoreError, type Store } from '../../lib/store'
import { accountKeys } from '../../lib/store/keys'
import type { RedisStore } from '../../lib/store/redis'
import { waitUntil } from '../../support/process'
import { monitorRedis, startRedis, type Monitor, type RedisClient, type RedisServer } from '../../support/redis'
import { startTcpProxy, type TcpProxy } from '../../support/tcp-proxy'
import { recordInput, rules, summary } from './contract'
import {
  openRedisStore,
  redisServerHooks,
  untilAnswers,
  untilDisabled,
  untilEnabled,
  type OpenRedisOptions,
} from './redis-store'

const VICTIM = 'victim@example.com'
const disabledKey = accountKeys(VICTIM).disabled

/** The HGETALLs of `key` Redis ran so far (the lookups that reached it), as MONITOR shows them. */
async function lookups(monitor: Monitor, key: string): Promise<number> {
  await monitor.caughtUp()
  return monitor.commands.filter((c) => c.name === 'hgetall' && c.args[0] === key).length
}

/** Counts VICTIM over a limit of 1 message an hour on `store`: the second message disables it. */
async function trip(store: Store): Promise<void> {
  const r = rules({ messages: '1/1h' })
  await store.record(recordInput(VICTIM, r, { summary: summary(1) }))
  assert.equal((await store.record(recordInput(VICTIM, r, { summary: summary(2) }))).status, 'refused')
}

/** Writes a disable record by hand, as an operator's redis-cli would. */
async function rawDisable(admin: RedisClient): Promise<void> {
  await admin.hSet(disabledKey, { account: VICTIM, reason: 'by hand', by: 'redis-cli', at: '1', incident: 'x' })
}

describe('redis store: the disable-record cache', function () {
  this.timeout(20_000)
  const db = redisServerHooks()
  const opened = new Set<Store>()
  let monitor: Monitor | undefined

  async function open(port = db.server.port, options: OpenRedisOptions = {}): Promise<RedisStore> {
    const store = openRedisStore(port, options)
    opened.add(store)
    await untilAnswers(store)
    return store
  }

  /** A store and a MONITOR of the suite's Redis, with VICTIM looked up once (cached enabled). */
  async function cachedEnabled(): Promise<{ store: RedisStore; monitor: Monitor }> {
    const store = await open()
    monitor = await monitorRedis(db.server.port)
    assert.equal(await store.getDisabled(VICTIM), null)
    for (let i = 0; i < 5; i++) assert.equal(await store.getDisabled(VICTIM), null)
    assert.equal(
      await lookups(monitor, disabledKey),
      1,
      'one lookup reached Redis, the others were answered from the cache',
    )
    return { store, monitor }
  }

  beforeEach(async function () {
    await db.admin.flushAll()
  })

  afterEach(async function () {
    monitor?.stop()
    monitor = undefined
    await Promise.all([...opened].map((s) => s.close()))
    opened.clear()
  })

  it("Haraka's store opens two RESP3 connections, one with CLIENT TRACKING; the CLI's opens one", async function () {
    const before = (await db.admin.clientList()).length
    await open()
    await waitUntil(async () => (await db.admin.clientList()).length === before + 2, { message: 'two connections' })
    const conns = (await db.admin.clientList()).slice(before)
    assert.deepEqual(conns.map((c) => [c.resp, c.flags.includes('t')]).sort(), [
      [3, false],
      [3, true],
    ])
    await open(db.server.port, { cacheDisabled: false })
    await waitUntil(async () => (await db.admin.clientList()).length === before + 3, { message: 'one more' })
  })

  it('answers 100 lookups of an account with one HGETALL, through getDisabled and getStored alike', async function () {
    const { store, monitor } = await cachedEnabled()
    await rawDisable(db.admin)
    await untilDisabled(store, VICTIM)
    monitor.reset()
    for (let i = 0; i < 50; i++) {
      assert.equal((await store.getDisabled(VICTIM))?.by, 'redis-cli')
      assert.equal((await store.getStored(VICTIM))?.fields.by, 'redis-cli')
    }
    assert.equal(await lookups(monitor, disabledKey), 0)
  })

  describe('a disable written by another client reaches the next lookup', function () {
    const writers: [string, (admin: RedisClient, other: () => Promise<RedisStore>) => Promise<void>][] = [
      [
        "another store's disable (the CLI's hijack-guard disable)",
        async (_admin, other) => {
          const cli = await other()
          assert.equal(await cli.disable({ account: VICTIM, reason: 'phished', by: 'cli:root', incident: 'i1' }), true)
        },
      ],
      [
        "another store's counting script (another Haraka server over the limit)",
        async (_a, other) => trip(await other()),
      ],
      ['a hand-written HSET', async (admin) => rawDisable(admin)],
    ]
    for (const [who, write] of writers) {
      it(who, async function () {
        const { store } = await cachedEnabled()
        await write(db.admin, () => open(db.server.port, { cacheDisabled: false }))
        const record = await untilDisabled(store, VICTIM)
        assert.equal(record.account, VICTIM)
      })
    }
  })

  describe('a record removed by another client reaches the next lookup', function () {
    const removers: [string, (admin: RedisClient, other: () => Promise<RedisStore>) => Promise<void>][] = [
      ["another store's enable", async (_admin, other) => assert.equal(await (await other()).enable(VICTIM), true)],
      ['DEL of the key', async (admin) => assert.equal(await admin.del(disabledKey), 1)],
      ['FLUSHALL', async (admin) => assert.equal(await admin.flushAll(), 'OK')],
      ['FLUSHDB', async (admin) => assert.equal(await admin.flushDb(), 'OK')],
    ]
    for (const [who, remove] of removers) {
      it(who, async function () {
        const store = await open()
        await rawDisable(db.admin)
        assert.equal((await store.getDisabled(VICTIM))?.by, 'redis-cli')
        assert.equal((await store.getDisabled(VICTIM))?.by, 'redis-cli', 'cached')
        await remove(db.admin, () => open(db.server.port, { cacheDisabled: false }))
        await untilEnabled(store, VICTIM)
      })
    }
  })

  describe('cut off from Redis', function () {
    let proxy: TcpProxy | undefined
    let own: RedisServer | undefined

    afterEach(async function () {
      await proxy?.stop()
      await own?.stop()
      proxy = undefined
      own = undefined
    })

    /**
     * A redis-server of the test's own, a store that reaches it through a proxy with its two
     * connections (calls and tracking) up, and VICTIM looked up (cached enabled).
     */
    async function behindProxy(): Promise<{ store: RedisStore; proxy: TcpProxy; own: RedisServer }> {
      const server = (own = await startRedis())
      const p = (proxy = await startTcpProxy(server.port))
      const store = await open(p.port)
      await waitUntil(() => p.connections() === 2, { message: 'both connections of the store up' })
      assert.equal(await store.getDisabled(VICTIM), null)
      return { store, proxy: p, own: server }
    }

    /** Lets the store reconnect, and waits until both its connections are back and it answers. */
    async function reconnect(store: RedisStore, p: TcpProxy): Promise<void> {
      p.heal()
      await waitUntil(() => p.connections() === 2, { message: 'both connections of the store back' })
      await untilAnswers(store)
    }

    it('a disable written while the connection was down is seen by the first lookup after it is back', async function () {
      const { store, proxy: p, own: server } = await behindProxy()
      monitor = await monitorRedis(server.port)
      p.cut()
      await rawDisable(await server.client())
      await assert.rejects(store.getDisabled(VICTIM), StoreError, 'no answer from a cache while cut off')
      await reconnect(store, p)
      assert.equal((await store.getDisabled(VICTIM))?.by, 'redis-cli')
      assert.equal(await lookups(monitor, disabledKey), 1, 'looked up again after the reconnect')
    })

    it("this store's own counting script, enable and disable are seen at once, not from a stale cache", async function () {
      const { store, proxy: p } = await behindProxy()
      /** Runs `write` while what Redis sends the tracking connection (pushes and replies) is held back, then looks up. */
      const lookupAfter = async (write: () => Promise<unknown>): Promise<string | null> => {
        assert.equal(p.hold('TRACKING'), 1)
        try {
          await write()
          // A lookup answered from the cache resolves now; one sent to Redis waits for release().
          const seen = store.getDisabled(VICTIM)
          p.release()
          return (await seen)?.by ?? null
        } finally {
          p.release()
        }
      }
      assert.equal(await lookupAfter(() => trip(store)), 'limit', 'the counting script')
      assert.equal(await lookupAfter(() => store.enable(VICTIM)), null, 'enable')
      const disable = (): Promise<boolean> =>
        store.disable({ account: VICTIM, reason: 'r', by: 'cli:root', incident: 'i' })
      assert.equal(await lookupAfter(disable), 'cli:root', 'disable')
    })

    it('Redis restarted (empty) while cut off, a disable written to the new one: the first lookup sees it', async function () {
      const { store, proxy: p, own: server } = await behindProxy()
      p.cut()
      await server.restart()
      await rawDisable(await server.client())
      await reconnect(store, p)
      assert.equal((await store.getDisabled(VICTIM))?.by, 'redis-cli')
    })
  })

  it('the tracking connection alone killed, a disable written before it is back: the first lookup after sees it', async function () {
    const { store } = await cachedEnabled()
    // CLIENT LIST flag t: the connection has CLIENT TRACKING on
    const tracking = async (): Promise<string[]> =>
      (await db.admin.clientList()).filter((c) => c.flags.includes('t')).map((c) => String(c.id))
    const [id] = await tracking()
    assert.ok(id, 'the store has a tracking connection')
    // killed on its own: the store's other connection never notices
    assert.equal(await db.admin.sendCommand(['CLIENT', 'KILL', 'ID', id]), 1)
    await rawDisable(db.admin)
    // back, and ready on the store's side: it has run a lookup (only a ready one is sent any)
    await waitUntil(
      async () => {
        await store.getDisabled('probe')
        return (await db.admin.clientList()).some((c) => c.flags.includes('t') && c.cmd === 'hgetall')
      },
      { message: 'the tracking connection back and used' },
    )
    assert.equal((await store.getDisabled(VICTIM))?.by, 'redis-cli')
  })

  it('after a call fails (Redis frozen past store_timeout), the next lookup goes to Redis again', async function () {
    const { store, monitor } = await cachedEnabled()
    db.server.pause()
    try {
      await assert.rejects(store.record(recordInput(VICTIM, rules({ messages: '5/1h' }))), StoreError)
    } finally {
      db.server.resume()
    }
    await untilAnswers(store)
    monitor.reset()
    assert.equal(await store.getDisabled(VICTIM), null)
    assert.equal(await lookups(monitor, disabledKey), 1)
  })
  // Held mail leaves at once (lib/hooks/held.ts): the invalidation Redis already pushes for a
  // record this process read is how it learns of an enable elsewhere; no channel, no extra call.
  it('an enable by another process (the CLI) reaches watchEnables of a store that read the record for held mail, without a lookup; other keys and accounts do not', async function () {
    const store = await open()
    const heard: (string | null)[] = []
    await trip(store)
    await untilDisabled(store, VICTIM)
    store.watchEnables((account) => heard.push(account))
    assert.equal((await store.heldState(VICTIM)).disabled, true)
    monitor = await monitorRedis(db.server.port)
    const cli = await open(db.server.port, { cacheDisabled: false })
    await cli.reset(VICTIM) // the counters: not the record
    await cli.enable('someone-else@example.com')
    assert.equal(await cli.enable(VICTIM), true)
    await waitUntil(() => heard.includes(VICTIM), { timeoutMs: 2000, message: () => `heard ${JSON.stringify(heard)}` })
    assert.deepEqual(
      heard.filter((a) => a !== null),
      [VICTIM],
      'told of the enabled account alone',
    )
    assert.equal(await lookups(monitor, disabledKey), 0, 'the notice cost no lookup')
  })

  it("this process's own enable (a reply) tells watchEnables at once, before Redis's push", async function () {
    const store = await open()
    const heard: (string | null)[] = []
    await trip(store)
    store.watchEnables((account) => heard.push(account))
    assert.equal(await store.enable(VICTIM), true)
    assert.ok(heard.includes(VICTIM), JSON.stringify(heard))
  })

  it('a new tracking connection (changes may have gone unseen) tells watchEnables null', async function () {
    const { store } = await cachedEnabled() // the tracking connection is up
    const heard: (string | null)[] = []
    store.watchEnables((account) => heard.push(account))
    assert.equal(heard.length, 0)
    await db.admin.sendCommand(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'])
    await waitUntil(() => heard.includes(null), { timeoutMs: 5000, message: () => `heard ${JSON.stringify(heard)}` })
  })
})
