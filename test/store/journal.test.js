'use strict'

// The journal layer (lib/store/journal.ts) over the real Redis store and a real redis-server without
// persistence: a disable record survives FLUSHALL and a restart, an enable survives them too.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { createClient } = require('redis')

const { createRedisStore } = require('../../dist/lib/store/redis')
const { withJournal, createJournalFile } = require('../../dist/lib/store/journal')
const { accountKeys, tokenKey } = require('../../dist/lib/store/keys')
const { tokenDigest } = require('../../dist/lib/ids')
const { rules, summary, recordInput } = require('./contract')
const { startRedis, waitFor, HOST } = require('./redis-server')

function quietLog () {
  const lines = []
  return { lines, info: (m) => lines.push(`info ${m}`), warn: (m) => lines.push(`warn ${m}`), error: (m) => lines.push(`error ${m}`) }
}

describe('redis store with the journal', function () {
  this.timeout(20_000)

  let server
  let admin
  let dir
  const opened = []

  async function connectAdmin () {
    const client = createClient({ socket: { host: HOST, port: server.port, reconnectStrategy: false } })
    client.on('error', () => {})
    await client.connect()
    return client
  }

  // A Haraka process's store: the Redis store, the journal over it, a journal file in `dir`.
  async function open (name = 'journal.json', { checkMs = 3600_000, checkDurability = false } = {}) {
    const log = quietLog()
    const redis = createRedisStore({ redis: { host: HOST, port: server.port, db: 0 }, timeoutMs: 1000, log, checkDurability })
    const store = withJournal(redis, { file: createJournalFile(path.join(dir, name), log), log, checkMs })
    opened.push(store)
    await waitFor(async () => (await store.getDisabled('ready-probe')) === null, 5000, 'the store answers')
    return { store, log, redis }
  }

  async function trip (store, account) {
    const r = rules({ messages: '1/1h' })
    await store.record(recordInput(account, r, { summary: summary(1) }))
    const input = recordInput(account, r, { summary: summary(2) })
    const res = await store.record(input)
    assert.equal(res.status, 'refused')
    return { ...res, token: input.token }
  }

  before(async function () {
    server = await startRedis()
    admin = await connectAdmin()
  })

  beforeEach(async function () {
    await admin.flushAll()
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hijack-guard-journal-'))
  })

  afterEach(async function () {
    for (const s of opened.splice(0)) await s.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  after(async function () {
    if (admin) await admin.close()
    if (server) await server.stop()
  })

  it('disable, FLUSHALL: getDisabled returns the record and Redis has it again, token pointer included', async function () {
    const { store, log } = await open()
    const res = await trip(store, 'bob')
    const fields = await admin.hGetAll(accountKeys('bob').disabled)
    await admin.flushAll()
    const record = await store.getDisabled('bob')
    assert.equal(record?.incident, res.record.incident)
    assert.deepEqual(await admin.hGetAll(accountKeys('bob').disabled), fields, 'every field as it was')
    assert.equal(fields.token, undefined, 'the token is stored only as its digest')
    assert.equal(await admin.get(tokenKey(tokenDigest(res.token))), 'bob', 'a reply to the alert still finds the account')
    assert.ok(log.lines.some((l) => l.startsWith('warn re-asserted disabled flag of "bob" lost by Redis')), log.lines.join('\n'))
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
    const cli = createRedisStore({ redis: { host: HOST, port: server.port, db: 0 }, timeoutMs: 1000, log: quietLog() })
    opened.push(cli)
    await waitFor(async () => (await cli.getDisabled('bob')) !== null, 5000, 'cli connected')
    assert.equal(await cli.enable('bob'), true)
    assert.equal(await admin.hGet(accountKeys('bob').enabled, 'incident'), res.record.incident)
    assert.equal(await store.getDisabled('bob'), null, 'the tombstone names the incident: no re-assert')
    assert.ok(log.lines.some((l) => /journal: "bob" was enabled since incident/.test(l)), log.lines.join('\n'))
    await admin.flushAll()
    assert.equal(await store.getDisabled('bob'), null, 'the journal forgot it: a later loss does not re-disable')
  })

  it('a tombstone of an older incident does not clear a newer one', async function () {
    const { store } = await open()
    await trip(store, 'bob')
    assert.equal(await store.enable('bob'), true)
    const second = await trip(store, 'bob')
    await admin.del(accountKeys('bob').disabled) // eviction of the record alone: the old tombstone stays
    assert.equal((await store.getDisabled('bob'))?.incident, second.record.incident)
    assert.equal(await admin.hGet(accountKeys('bob').disabled, 'incident'), second.record.incident)
  })

  it('a restart without persistence: the reconnect re-asserts every journaled record, with no mail', async function () {
    const { store, log } = await open()
    await trip(store, 'a1')
    await trip(store, 'a2')
    const port = server.port
    await admin.close()
    await server.stop()
    server = await startRedis({ port })
    admin = await connectAdmin()
    await waitFor(async () => (await admin.exists([accountKeys('a1').disabled, accountKeys('a2').disabled])) === 2, 10_000, 'both records back')
    assert.ok(log.lines.some((l) => /run_id \w+ -> \w+/.test(l)), log.lines.join('\n'))
  })

  it('the periodic check re-asserts after FLUSHALL without any mail', async function () {
    const { store } = await open('j.json', { checkMs: 100 })
    await trip(store, 'erin')
    await admin.flushAll()
    await waitFor(async () => (await admin.exists(accountKeys('erin').disabled)) === 1, 5000, 'record back')
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
    await waitFor(() => log.lines.some((l) => /^warn .*a restart loses every disabled flag/.test(l)), 5000, `WARN in ${log.lines.join('\n')}`)
  })
})
