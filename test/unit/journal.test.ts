// The journal layer (lib/store/journal.ts) over a fake Redis store at the seam (the RedisStore
// methods it calls), and its file against a real directory. The same behaviour against a real
// redis-server is in test/store/journal.test.

import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'

import { parseConfig } from '../../lib/config'
import type { DisabledRecord, RecordInput, RecordResult, Store, WindowCount } from '../../lib/store'
import {
  createJournalFile,
  parseJournal,
  serializeJournal,
  withJournal,
  type JournalEntry,
  type JournalFile,
} from '../../lib/store/journal'
import { durabilityRisks, toRecord, type Logger, type RedisStore, type StoredRecord } from '../../lib/store/redis'
import { fakeStore } from '../../support/fake-store'
import { tmpDir, waitUntil } from '../../support/process'

/** A disable record's fields as Redis keeps them. */
type Fields = Record<string, string>

interface QuietLog extends Logger {
  /** Every line, as "<level> <message>". */
  readonly lines: string[]
}

function quietLog(): QuietLog {
  const lines: string[] = []
  return {
    lines,
    info: (m) => {
      lines.push(`info ${m}`)
    },
    warn: (m) => {
      lines.push(`warn ${m}`)
    },
    error: (m) => {
      lines.push(`error ${m}`)
    },
  }
}

/** The record of non-empty fields (toRecord answers null only for none). */
function recordOf(fields: Fields | undefined): DisabledRecord {
  const record = fields ? toRecord(fields) : null
  if (!record) throw new Error('fakeRedis: no disable record')
  return record
}

/** The entries of a journal file's text, which must be one. */
function parsed(text: string): Map<string, JournalEntry> {
  const entries = parseJournal(text)
  if (entries === null) throw new Error(`not a journal: ${text}`)
  return entries
}

/** A message for record(); the fake Redis looks at the account and the recipients only. */
function message(account: string, recipients: number): RecordInput {
  return {
    account,
    recipients,
    rules: [],
    mode: 'enforce',
    summary: { ip: '192.0.2.1', helo: 'client.test', domains: [], subject: '' },
    token: '0123456789abcdef0123456789abcdef',
    tokenTtlMs: 3_600_000,
  }
}

const OVER: WindowCount = { kind: 'recipients', max: 1, windowMs: 60_000, text: '1/1m', count: 2 }

/** A Redis store as far as the journal sees it, with the test's handles on its state. */
interface FakeRedis extends RedisStore {
  /** Disable records as field maps. */
  readonly records: Map<string, Fields>
  /** What an enable leaves: the incident it cleared and when. */
  readonly tombstones: Map<string, { readonly incident: string; readonly at: number }>
  /** Every call of getStored, getDisabled, reassert, record, heldState and enable, in order. */
  readonly calls: [string, string][]
  /** Tells the onConnect listeners Redis (re)connected with `runId`. */
  connect(runId: string): void
  /** Disables `account` as the limit would (with a token); answers the incident. */
  trip(account: string, incident?: string): string
  /** FLUSHALL, a restart without persistence: every record is gone, the tombstones stay. */
  lose(): void
}

// A Redis store as far as the journal sees it: disable records as field maps, tombstones,
// REASSERT's rules, and a count of every call.
function fakeRedis(): FakeRedis {
  const records = new Map<string, Fields>()
  const tombstones = new Map<string, { incident: string; at: number }>()
  const calls: [string, string][] = []
  const listeners: ((runId: string) => void)[] = []
  let clock = 1000
  const stored = (account: string): StoredRecord | null => {
    const fields = records.get(account)
    return fields ? { record: recordOf(fields), fields: { ...fields } } : null
  }
  const trip = (account: string, incident = `inc-${account}-${clock}`): string => {
    ++clock
    records.set(account, {
      account,
      reason: 'limit',
      by: 'limit',
      at: String(clock),
      incident,
      token: `tok-${incident}`,
      token_expires: String(clock + 1e9),
    })
    return incident
  }
  const base = fakeStore({
    kind: 'redis',
    async getDisabled(account) {
      calls.push(['getDisabled', account])
      return stored(account)?.record ?? null
    },
    async record(input): Promise<RecordResult> {
      calls.push(['record', input.account])
      if (records.has(input.account)) return { status: 'disabled', counts: [], flipped: false, by: 'limit' }
      if (input.recipients > 1) {
        trip(input.account)
        return {
          status: 'refused',
          counts: [],
          over: OVER,
          flipped: true,
          record: recordOf(records.get(input.account)),
        }
      }
      return { status: 'ok', counts: [], flipped: false, at: clock }
    },
    async heldState(account) {
      calls.push(['heldState', account])
      return { disabled: records.has(account), dropBefore: 0 }
    },
    async enable(account) {
      calls.push(['enable', account])
      const was = records.get(account)
      records.delete(account)
      tombstones.set(account, { incident: was?.incident ?? '', at: ++clock })
      return !!was
    },
    async redeem(account, token) {
      const r = records.get(account)
      if (!r) return 'not-disabled'
      if (r.token !== token) return 'mismatch'
      records.delete(account)
      tombstones.set(account, { incident: r.incident ?? '', at: ++clock })
      return 'ok'
    },
    async disable(input) {
      if (records.has(input.account)) return false
      records.set(input.account, {
        account: input.account,
        reason: input.reason,
        by: input.by,
        incident: input.incident,
        at: String(++clock),
      })
      return true
    },
    async listDisabled() {
      return [...records.keys()].flatMap((a) => stored(a)?.record ?? [])
    },
    async close() {},
  })
  return {
    ...base,
    records,
    tombstones,
    calls,
    connect: (runId) => listeners.forEach((l) => l(runId)),
    trip,
    lose: () => records.clear(),
    async getStored(account) {
      calls.push(['getStored', account])
      return stored(account)
    },
    async reassert(account, fields) {
      calls.push(['reassert', account])
      const present = stored(account)
      if (present) return { state: 'present', stored: present }
      const t = tombstones.get(account)
      if (t && ((fields.incident && t.incident === fields.incident) || t.at > Number(fields.at))) {
        return { state: 'enabled' }
      }
      records.set(account, { ...fields })
      return { state: 'restored', record: recordOf(fields) }
    },
    onConnect(listener) {
      listeners.push(listener)
    },
  }
}

/** The journal file in memory, with a switch to make writes fail. */
interface MemoryFile extends JournalFile {
  /** true: update() throws "disk full" instead of writing. */
  failWrites: boolean
  /** How many times the file was written. */
  readonly writes: number
  /** What the file holds ('' before the first write). */
  readonly text: string
}

function memoryFile(): MemoryFile {
  let text = ''
  let version = 0
  let writes = 0
  const file: MemoryFile = {
    failWrites: false,
    get writes() {
      return writes
    },
    get text() {
      return text
    },
    async load() {
      return text ? parsed(text) : new Map<string, JournalEntry>()
    },
    async update(change) {
      const entries = await file.load()
      if (!change(entries)) return entries
      if (file.failWrites) throw new Error('disk full')
      text = serializeJournal(entries)
      writes++
      version++
      return entries
    },
    async stamp() {
      return String(version)
    },
  }
  return file
}

const opened: Store[] = []

interface Layer {
  readonly store: Store
  readonly log: QuietLog
  readonly file: MemoryFile
}

function layer(
  redis: FakeRedis,
  file = memoryFile(),
  opts: { readonly checkMs?: number; readonly refreshMs?: number } = {},
): Layer {
  const log = quietLog()
  const store = withJournal(redis, {
    file,
    log,
    checkMs: opts.checkMs ?? 3600_000,
    refreshMs: opts.refreshMs ?? 3600_000,
  })
  opened.push(store)
  return { store, log, file }
}

/** The accounts the file holds. */
const journaled = (file: MemoryFile): string[] => [...parsed(file.text || serializeJournal(new Map())).keys()]

/** The entry the file holds for `account`. */
function journalEntry(file: MemoryFile, account: string): JournalEntry {
  const entry = parsed(file.text).get(account)
  assert.ok(entry, `${account} is not in the journal: ${file.text}`)
  return entry
}

/** How long a timer-driven re-assert may take on a busy machine. */
const WAIT = { timeoutMs: 5000, intervalMs: 5 } as const

describe('journal', function () {
  afterEach(async function () {
    for (const s of opened.splice(0)) await s.close()
  })

  it('costs an account it does not hold one store call, as without the journal', async function () {
    const redis = fakeRedis()
    const { store, file } = layer(redis)
    assert.equal(await store.getDisabled('alice'), null)
    assert.deepEqual(redis.calls, [['getStored', 'alice']])
    assert.equal(file.writes, 0, 'no file for an account never seen disabled')
  })

  it('journals a record it sees, once per incident', async function () {
    const redis = fakeRedis()
    const { store, file } = layer(redis)
    const incident = redis.trip('bob')
    assert.equal((await store.getDisabled('bob'))?.incident, incident)
    await store.getDisabled('bob')
    await store.getDisabled('bob')
    assert.deepEqual(journaled(file), ['bob'])
    assert.equal(file.writes, 1)
    assert.equal(journalEntry(file, 'bob').fields.token, `tok-${incident}`, 'every field of the record, token included')
  })

  it('re-asserts a journaled record that Redis lost, with all its fields, and logs WARN', async function () {
    const redis = fakeRedis()
    const { store, log } = layer(redis)
    const incident = redis.trip('bob')
    const before = { ...redis.records.get('bob') }
    await store.getDisabled('bob')
    redis.lose()
    const record = await store.getDisabled('bob')
    assert.equal(record?.incident, incident)
    assert.deepEqual(redis.records.get('bob'), before)
    assert.ok(
      log.lines.some((l) => /^warn re-asserted disabled flag of "bob" lost by Redis/.test(l)),
      log.lines.join('\n'),
    )
  })

  it('forgets a record an enable cleared elsewhere (the tombstone names its incident): no re-assert', async function () {
    const redis = fakeRedis()
    const { store, file } = layer(redis)
    redis.trip('bob')
    await store.getDisabled('bob')
    await redis.enable('bob') // another process or the CLI, not through this layer
    assert.equal(await store.getDisabled('bob'), null)
    assert.equal(redis.records.has('bob'), false)
    assert.deepEqual(journaled(file), [])
    redis.tombstones.clear()
    redis.lose()
    assert.equal(await store.getDisabled('bob'), null, 'stays enabled after a later loss')
  })

  it('an enable through the layer forgets at once: a loss right after it does not re-disable', async function () {
    const redis = fakeRedis()
    const { store, file } = layer(redis)
    redis.trip('bob')
    await store.getDisabled('bob')
    assert.equal(await store.enable('bob'), true)
    assert.deepEqual(journaled(file), [])
    redis.tombstones.clear()
    redis.lose()
    assert.equal(await store.getDisabled('bob'), null)
  })

  it('a redeemed token forgets the record; a wrong one does not', async function () {
    const redis = fakeRedis()
    const { store, file } = layer(redis)
    const incident = redis.trip('bob')
    await store.getDisabled('bob')
    assert.equal(await store.redeem('bob', 'nope'), 'mismatch')
    assert.deepEqual(journaled(file), ['bob'])
    assert.equal(await store.redeem('bob', `tok-${incident}`), 'ok')
    assert.deepEqual(journaled(file), [])
  })

  it('a tombstone of an older incident does not clear a newer one', async function () {
    const redis = fakeRedis()
    const { store } = layer(redis)
    redis.trip('bob', 'first')
    await redis.enable('bob')
    redis.trip('bob', 'second')
    await store.getDisabled('bob')
    redis.lose() // the records, not the tombstone of "first"
    assert.equal((await store.getDisabled('bob'))?.incident, 'second')
  })

  it('takes a later incident in Redis over the journaled one', async function () {
    const redis = fakeRedis()
    const { store, file } = layer(redis)
    redis.trip('bob', 'first')
    await store.getDisabled('bob')
    redis.records.delete('bob')
    redis.trip('bob', 'second')
    assert.equal((await store.getDisabled('bob'))?.incident, 'second')
    assert.equal(journalEntry(file, 'bob').incident, 'second')
  })

  it('journals the disable its own record() makes, and refuses after a loss', async function () {
    const redis = fakeRedis()
    const { store, file } = layer(redis)
    assert.equal((await store.record(message('carol', 2))).status, 'refused')
    assert.deepEqual(journaled(file), ['carol'])
    redis.lose()
    assert.equal((await store.record(message('carol', 1))).status, 'disabled')
    assert.ok(redis.records.has('carol'))
  })

  it('keeps held mail held through a loss (heldState re-asserts first)', async function () {
    const redis = fakeRedis()
    const { store } = layer(redis)
    redis.trip('dave')
    assert.equal((await store.heldState('dave')).disabled, true, 'journals what heldState saw')
    redis.lose()
    assert.equal((await store.heldState('dave')).disabled, true)
  })

  it('re-asserts every journaled record when Redis comes back with another run_id', async function () {
    this.timeout(WAIT.timeoutMs * 2)
    const redis = fakeRedis()
    const { store, log } = layer(redis)
    redis.trip('a1')
    redis.trip('a2')
    await store.getDisabled('a1')
    await store.getDisabled('a2')
    redis.connect('run-1')
    redis.lose()
    redis.connect('run-2')
    await waitUntil(() => redis.records.has('a1') && redis.records.has('a2'), { ...WAIT, message: 'both re-asserted' })
    assert.ok(
      log.lines.some((l) => /run_id run-1 -> run-2/.test(l)),
      log.lines.join('\n'),
    )
  })

  it('re-asserts on its periodic check without any mail (FLUSHALL, no reconnect)', async function () {
    this.timeout(WAIT.timeoutMs * 2)
    const redis = fakeRedis()
    const { store } = layer(redis, memoryFile(), { checkMs: 20 })
    redis.trip('erin')
    await store.getDisabled('erin')
    redis.lose()
    await waitUntil(() => redis.records.has('erin'), { ...WAIT, message: 'erin re-asserted by the timer' })
  })

  it('reads entries another process wrote before it re-asserts (one file per server)', async function () {
    this.timeout(WAIT.timeoutMs * 2)
    const redis = fakeRedis()
    const file = memoryFile()
    const first = layer(redis, file)
    const second = layer(redis, file, { refreshMs: 10 })
    redis.trip('frank')
    await first.store.getDisabled('frank')
    await first.store.close()
    redis.lose()
    await waitUntil(async () => (await second.store.getDisabled('frank')) !== null, {
      ...WAIT,
      message: 'the second process re-asserts',
    })
  })

  it('while Redis cannot answer, a journaled account stays disabled (MAIL FROM, AUTH, record, held); others get the store error', async function () {
    const redis = fakeRedis()
    const { store, log } = layer(redis)
    redis.trip('hank')
    await store.getDisabled('hank')
    const down = async (): Promise<never> => {
      throw new Error('redis is not connected')
    }
    Object.assign(redis, { getStored: down, reassert: down, record: down, heldState: down })
    assert.equal((await store.getDisabled('hank'))?.account, 'hank')
    assert.equal((await store.record(message('hank', 1))).status, 'disabled')
    assert.equal((await store.heldState('hank')).disabled, true)
    await assert.rejects(store.getDisabled('ivy'), /not connected/)
    assert.equal(
      log.lines.filter((l) => /^warn journal: Redis cannot answer/.test(l)).length,
      1,
      'one WARN a minute, not one per call',
    )
  })

  it('a journal that cannot be written logs ERROR and never fails the store call', async function () {
    const redis = fakeRedis()
    const file = memoryFile()
    file.failWrites = true
    const { store, log } = layer(redis, file)
    redis.trip('gina')
    assert.equal((await store.getDisabled('gina'))?.account, 'gina')
    assert.ok(
      log.lines.some((l) => /^error journal: could not journal the disable of "gina": disk full/.test(l)),
      log.lines.join('\n'),
    )
  })

  describe('file', function () {
    let dir = ''
    beforeEach(function () {
      dir = tmpDir('journal')
    })
    afterEach(function () {
      fs.rmSync(dir, { recursive: true, force: true })
    })

    const entry = (account: string, incident: string): JournalEntry => ({
      incident,
      at: 5,
      fields: { account, incident, at: '5' },
    })

    it('is created on the first change only, mode 0600, and parses back', async function () {
      const file = path.join(dir, 'j.json')
      const j = createJournalFile(file, quietLog())
      assert.equal((await j.load()).size, 0)
      assert.equal(fs.existsSync(file), false)
      await j.update((m) => {
        m.set('a', entry('a', 'i1'))
        return true
      })
      assert.equal(fs.statSync(file).mode & 0o777, 0o600)
      assert.deepEqual([...(await j.load()).entries()], [['a', entry('a', 'i1')]])
    })

    it('loses no entry when several processes change it at once', async function () {
      const file = path.join(dir, 'j.json')
      const writers = Array.from({ length: 4 }, () => createJournalFile(file, quietLog()))
      const writer = (i: number): JournalFile => {
        const w = writers[i % writers.length]
        assert.ok(w)
        return w
      }
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          writer(i).update((m) => {
            m.set(`acct${i}`, entry(`acct${i}`, `i${i}`))
            return true
          }),
        ),
      )
      assert.equal((await writer(0).load()).size, 40)
      assert.equal(fs.existsSync(`${file}.lock`), false)
    })

    it('keeps a damaged file aside, logs ERROR, and starts afresh', async function () {
      const file = path.join(dir, 'j.json')
      fs.writeFileSync(file, '{not json')
      const log = quietLog()
      const j = createJournalFile(file, log)
      assert.equal((await j.load()).size, 0)
      assert.ok(log.lines.some((l) => /^error journal .* is damaged/.test(l)))
      await j.update((m) => {
        m.set('a', entry('a', 'i1'))
        return true
      })
      assert.equal(fs.readFileSync(`${file}.damaged`, 'utf8'), '{not json')
      assert.equal((await j.load()).size, 1)
    })
  })

  describe('config', function () {
    it('reads [redis] journal and journal_check, defaulting to hijack-guard.journal.json and 60 s', function () {
      assert.deepEqual(
        [parseConfig({}).redis.journal, parseConfig({}).redis.journalCheckMs],
        ['hijack-guard.journal.json', 60000],
      )
      const cfg = parseConfig({ redis: { journal: 'var/hg-journal.json', journal_check: '5s' } })
      assert.deepEqual([cfg.redis.journal, cfg.redis.journalCheckMs], ['var/hg-journal.json', 5000])
      assert.ok(!cfg.warnings.some((w) => /journal/.test(w)), cfg.warnings.join('; '))
    })

    it('refuses a journal_check that is not a duration, naming the key', function () {
      assert.throws(() => parseConfig({ redis: { journal_check: 'often' } }), /redis\.journal_check/)
      assert.throws(() => parseConfig({ redis: { journal_check: '0s' } }), /redis\.journal_check/)
    })
  })

  describe('durabilityRisks', function () {
    it('names a Redis that keeps nothing, one with snapshots only, and one that evicts any key', function () {
      assert.match(
        durabilityRisks({ appendonly: 'no', save: '', 'maxmemory-policy': 'noeviction' }).join(),
        /a restart loses every disabled flag/,
      )
      assert.match(
        durabilityRisks({ appendonly: 'no', save: '3600 1', 'maxmemory-policy': 'noeviction' }).join(),
        /snapshots/,
      )
      assert.match(
        durabilityRisks({ appendonly: 'yes', save: '', 'maxmemory-policy': 'allkeys-lru' }).join(),
        /evict disabled flags/,
      )
      assert.deepEqual(durabilityRisks({ appendonly: 'yes', save: '', 'maxmemory-policy': 'volatile-lru' }), [])
    })
  })
})
