// The journal layer (lib/store/journal.ts) over the real Redis store and a real redis-server without
// persistence: a disable record survives FLUSHALL and a restart, an enable survives them too.

import * as assert from 'node:assert/strict'
import * as path from 'node:path'

import { tokenDigest } from '../../lib/ids'
import type { Store } from '../../lib/store'
import { createJournalFile, withJournal } from '../../lib/store/journal'
import { accountKeys, tokenKey } from '../../lib/store/keys'
import type { RedisStore } from '../../lib/store/redis'
import { tmpDir, waitUntil } from '../../support/process'
import { startRedis, type RedisClient, type RedisServer } from '../../support/redis'
import { recordInput, rules, summary } from './contract'
import { INVALIDATION_MS, openRedisStore, quietLog, type KeptLog } from './redis-store'

describe('redis store with the journal', function () {
  this.timeout(20_000)

  let server: RedisServer
  let admin: RedisClient
  let dir: string
  const opened: Store[] = []

  /** A Haraka process's store: the Redis store, the journal over it, a journal file in `dir`. */
  async function open(
    name = 'journal.json',
    { checkMs = 3600_000, checkDurability = false }: { checkMs?: number; checkDurability?: boolean } = {},
  ): Promise<{ store: Store; log: KeptLog; redis: RedisStore }> {
    const log = quietLog()
    const redis = openRedisStore(server.port, { timeoutMs: 1000, log, checkDurability })
    const store = withJournal(redis, { file: createJournalFile(path.join(dir, name), log), log, checkMs })
    opened.push(store)
    await waitUntil(async () => (await store.getDisabled('ready-probe')) === null, {
      timeoutMs: 5000,
      ignoreErrors: true,
      message: 'the store answers',
    })
    return { store, log, redis }
  }

  async function trip(store: Store, account: string) {
    const r = rules({ messages: '1/1h' })
    await store.record(recordInput(account, r, { summary: summary(1) }))
    const input = recordInput(account, r, { summary: summary(2) })
    const res = await store.record(input)
    assert.equal(res.status, 'refused')
    return { ...res, token: input.token }
  }

  before(async function () {
    server = await startRedis()
    admin = await server.client()
  })

  beforeEach(async function () {
    await admin.flushAll()
    dir = tmpDir('journal')
  })

  afterEach(async function () {
    for (const s of opened.splice(0)) await s.close()
  })

  after(async function () {
    // also closes admin, its client
    await server?.stop()
  })

  it('disable, FLUSHALL: getDisabled returns the record and Redis has it again, token pointer included', async function () {
    const { store, log } = await open()
    const res = await trip(store, 'bob')
    const fields = await admin.hGetAll(accountKeys('bob').disabled)
    await admin.flushAll()
    // the first lookup after the flush's invalidation reaches the cache re-asserts the record
    await waitUntil(async () => (await store.getDisabled('bob')) && (await admin.exists(accountKeys('bob').disabled)), {
      timeoutMs: INVALIDATION_MS,
      message: 'bob re-asserted',
    })
    const record = await store.getDisabled('bob')
    assert.equal(record?.incident, res.record.incident)
    assert.deepEqual(await admin.hGetAll(accountKeys('bob').disabled), fields, 'every field as it was')
    assert.equal(fields.token, undefined, 'the token is stored only as its digest')
    assert.equal(
      await admin.get(tokenKey(tokenDigest(res.token))),
      'bob',
      'a reply to the alert still finds the account',
    )
    assert.ok(
      log.lines.some((l) => l.startsWith('warn re-asserted disabled flag of "bob" lost by Redis')),
      log.lines.join('\n'),
    )
    assert.equal(await store.redeem('bob', res.token), 'ok', "the alert's token still re-enables it")
  })

  it('enable, FLUSHALL: stays enabled', async function () {
    const { store } = await open()
    await trip(store, 'bob')
    assert.equal(await store.enable('bob'), true)
    await admin.flushAll()
    assert.equal(await store.getDisabled('bob'), null)
    assert.equal(await admin.exists(accountKeys('bob').disabled), 0)
  })

  it('an enable by another process (the CLI) leaves a tombstone that clears this journal', async function () {
    const { store, log } = await open('a.json')
    const res = await trip(store, 'bob')
    const cli = openRedisStore(server.port, { timeoutMs: 1000 })
    opened.push(cli)
    await waitUntil(async () => (await cli.getDisabled('bob')) !== null, {
      timeoutMs: 5000,
      ignoreErrors: true,
      message: 'cli connected',
    })
    assert.equal(await cli.enable('bob'), true)
    assert.equal(await admin.hGet(accountKeys('bob').enabled, 'incident'), res.record.incident)
    assert.equal(await store.getDisabled('bob'), null, 'the tombstone names the incident: no re-assert')
    assert.ok(
      log.lines.some((l) => /journal: "bob" was enabled since incident/.test(l)),
      log.lines.join('\n'),
    )
    await admin.flushAll()
    assert.equal(await store.getDisabled('bob'), null, 'the journal forgot it: a later loss does not re-disable')
  })

  it('a tombstone of an older incident does not clear a newer one', async function () {
    const { store } = await open()
    await trip(store, 'bob')
    assert.equal(await store.enable('bob'), true)
    const second = await trip(store, 'bob')
    await admin.del(accountKeys('bob').disabled) // eviction of the record alone: the old tombstone stays
    await waitUntil(async () => (await store.getDisabled('bob')) && (await admin.exists(accountKeys('bob').disabled)), {
      timeoutMs: INVALIDATION_MS,
      message: 'bob re-asserted',
    })
    assert.equal((await store.getDisabled('bob'))?.incident, second.record.incident)
    assert.equal(await admin.hGet(accountKeys('bob').disabled, 'incident'), second.record.incident)
  })

  it('a restart without persistence: the reconnect re-asserts every journaled record, with no mail', async function () {
    const { store, log } = await open()
    await trip(store, 'a1')
    await trip(store, 'a2')
    // the same port, a new redis-server: nothing kept
    await server.restart()
    admin = await server.client()
    await waitUntil(async () => (await admin.exists([accountKeys('a1').disabled, accountKeys('a2').disabled])) === 2, {
      timeoutMs: 10_000,
      ignoreErrors: true,
      message: 'both records back',
    })
    assert.ok(
      log.lines.some((l) => /run_id \w+ -> \w+/.test(l)),
      log.lines.join('\n'),
    )
  })

  it('the periodic check re-asserts after FLUSHALL without any mail', async function () {
    const { store } = await open('j.json', { checkMs: 100 })
    await trip(store, 'erin')
    await admin.flushAll()
    await waitUntil(async () => (await admin.exists(accountKeys('erin').disabled)) === 1, {
      timeoutMs: 5000,
      ignoreErrors: true,
      message: 'record back',
    })
  })

  it('held mail stays held through FLUSHALL (heldState)', async function () {
    const { store } = await open()
    await trip(store, 'dave')
    assert.equal((await store.heldState('dave')).disabled, true)
    await admin.flushAll()
    assert.equal((await store.heldState('dave')).disabled, true)
  })

  it('logs WARN naming the risk of a Redis that keeps nothing on disk', async function () {
    const { log } = await open('j.json', { checkDurability: true })
    await waitUntil(() => log.lines.some((l) => /^warn .*a restart loses every disabled flag/.test(l)), {
      timeoutMs: 5000,
      message: () => `WARN in ${log.lines.join('\n')}`,
    })
  })
})
