/**
 * The journal: this server's durable memory of the disable records it wrote or saw in Redis, so
 * that a Redis that loses data (a restart without persistence, a failover to a replica that
 * missed the write, eviction, FLUSHALL) cannot silently re-enable an account. See docs/store.md.
 *
 * withJournal() wraps the Redis store: when Redis says an account is not disabled and the journal
 * holds a record of it, the REASSERT script either finds the tombstone of an enable (the journal
 * forgets the record) or writes the record back (WARN). An account the journal does not hold costs
 * nothing extra.
 */
import { closeSync, openSync, statSync, unlinkSync } from 'node:fs'
import { chown, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { toRecord, type Logger, type RedisStore, type StoredRecord } from './redis'
import { StoreError, type DisabledRecord, type DisableInput, type HeldState, type RecordInput, type RecordResult, type RedeemResult, type Store } from '.'

/** One journaled disable record. */
export interface JournalEntry {
  readonly incident: string
  /** The disable time (store-clock ms). */
  readonly at: number
  /** The record's fields as Redis keeps them, written back as they are. */
  readonly fields: Readonly<Record<string, string>>
}

/** The journal's durable part (a seam: unit tests pass one in memory). */
export interface JournalFile {
  /** What the file holds now; an absent file is an empty journal. */
  load(): Promise<Map<string, JournalEntry>>
  /** Applies `change` to what the file holds now and writes it when `change` answers true; answers the result. */
  update(change: (entries: Map<string, JournalEntry>) => boolean): Promise<Map<string, JournalEntry>>
  /** Changes whenever the file was replaced (by any process). */
  stamp(): Promise<string>
}

const LOCK_WAIT_MS = 2000
const LOCK_STALE_MS = 10_000
const FORMAT = 1

/**
 * The journal as one JSON file shared by every Haraka process of this server. Each change is a
 * read-merge-write under `<file>.lock` (created exclusively), written to a temporary file and
 * renamed, so readers never see half a file and no process overwrites another's entries. The
 * file is created on the first change (after Haraka dropped privileges), mode 0600.
 */
export function createJournalFile(file: string, log: Logger): JournalFile {
  let damagedReported = ''

  async function read(): Promise<Map<string, JournalEntry>> {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
      throw new StoreError(`cannot read the journal ${file}: ${(err as Error).message}`, { cause: err, failure: 'file' })
    }
    const entries = parseJournal(text)
    if (entries === null) {
      if (damagedReported !== text) log.error(`journal ${file} is damaged (not a hijack-guard journal); it is kept aside as ${file}.damaged at the next change`)
      damagedReported = text
      throw new DamagedJournal()
    }
    return entries
  }

  async function load(): Promise<Map<string, JournalEntry>> {
    try {
      return await read()
    } catch (err) {
      if (err instanceof DamagedJournal) return new Map()
      throw err
    }
  }

  async function update(change: (entries: Map<string, JournalEntry>) => boolean): Promise<Map<string, JournalEntry>> {
    await mkdir(dirname(file), { recursive: true }).catch(() => undefined)
    return withLock(file, async () => {
      let entries: Map<string, JournalEntry>
      try {
        entries = await read()
      } catch (err) {
        if (!(err instanceof DamagedJournal)) throw err
        await rename(file, `${file}.damaged`)
        entries = new Map()
      }
      if (!change(entries)) return entries
      const tmp = `${file}.${process.pid}.tmp`
      try {
        await writeFile(tmp, serializeJournal(entries), { mode: 0o600 })
        await keepOwner(tmp, file)
        await rename(tmp, file)
      } catch (err) {
        await unlink(tmp).catch(() => undefined)
        throw new StoreError(`cannot write the journal ${file}: ${(err as Error).message}`, { cause: err, failure: 'file' })
      }
      return entries
    })
  }

  async function stampOf(): Promise<string> {
    try {
      const s = await stat(file)
      return `${s.ino}:${s.mtimeMs}:${s.size}`
    } catch {
      return 'missing'
    }
  }

  return { load, update, stamp: stampOf }
}

class DamagedJournal extends Error {}

/**
 * Run as root (before Haraka drops privileges, or the CLI under sudo), gives the new file the
 * owner of the file it replaces, or of its directory: the user Haraka runs as must read it.
 */
async function keepOwner(tmp: string, file: string): Promise<void> {
  if (process.getuid?.() !== 0) return
  const owner = await stat(file).catch(() => stat(dirname(file)))
  await chown(tmp, owner.uid, owner.gid)
}

/** The journal file's text for these entries. */
export function serializeJournal(entries: ReadonlyMap<string, JournalEntry>): string {
  return `${JSON.stringify({ format: FORMAT, accounts: Object.fromEntries(entries) }, null, 1)}\n`
}

/** The entries of a journal file's text, or null when it is not one; bad entries are skipped. */
export function parseJournal(text: string): Map<string, JournalEntry> | null {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    return null
  }
  if (!data || typeof data !== 'object') return null
  const accounts = (data as { accounts?: unknown }).accounts
  if ((data as { format?: unknown }).format !== FORMAT || !accounts || typeof accounts !== 'object') return null
  const entries = new Map<string, JournalEntry>()
  for (const [account, value] of Object.entries(accounts as Record<string, unknown>)) {
    const fields = (value as { fields?: unknown } | null)?.fields
    if (!fields || typeof fields !== 'object') continue
    const clean: Record<string, string> = {}
    for (const [k, v] of Object.entries(fields as Record<string, unknown>)) if (typeof v === 'string') clean[k] = v
    if (Object.keys(clean).length === 0) continue
    entries.set(account, toEntry(clean))
  }
  return entries
}

function toEntry(fields: Readonly<Record<string, string>>): JournalEntry {
  return { incident: fields.incident ?? '', at: Number(fields.at) || 0, fields: { ...fields } }
}

/** Runs `work` holding `<file>.lock`; a lock older than LOCK_STALE_MS was left by a dead process. */
async function withLock<T>(file: string, work: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`
  const deadline = Date.now() + LOCK_WAIT_MS
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx', 0o600))
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StoreError(`cannot lock the journal ${file}: ${(err as Error).message}`, { cause: err, failure: 'file' })
    }
    try {
      if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS) unlinkSync(lock)
    } catch {
      // gone already: try again
    }
    if (Date.now() > deadline) throw new StoreError(`${lock} has been held by another process for ${LOCK_WAIT_MS} ms`, { failure: 'file' })
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  try {
    return await work()
  } finally {
    try {
      unlinkSync(lock)
    } catch {
      // removed by someone who thought it stale: nothing to release
    }
  }
}

export interface JournalOptions {
  readonly file: JournalFile
  readonly log: Logger
  /** How often every journaled record is checked against Redis (ms). */
  readonly checkMs: number
  /** How often the file is looked at for entries other processes wrote (ms). */
  readonly refreshMs?: number
}

/**
 * The Redis store with the journal layered over it (see the module comment). Every journal
 * failure is logged and never fails a store call: the flag in Redis still holds.
 */
export function withJournal(store: RedisStore, options: JournalOptions): Store {
  const { file, log, checkMs } = options
  /** What the file held when this process last read or wrote it. */
  let cache = new Map<string, JournalEntry>()
  let cacheStamp = ''
  let closed = false
  let lastRunId = ''
  let checking: Promise<void> | null = null
  let rerun: string | null = null

  const name = (account: string): string => JSON.stringify(account)

  async function change(what: string, fn: (entries: Map<string, JournalEntry>) => boolean): Promise<void> {
    try {
      cache = await file.update(fn)
      cacheStamp = await file.stamp()
    } catch (err) {
      log.error(`journal: could not ${what}: ${(err as Error).message}`)
    }
  }

  /** Journals a record this process wrote or saw, unless it holds that incident already. */
  async function remember(account: string, stored: StoredRecord): Promise<void> {
    const entry = toEntry(stored.fields)
    if (cache.get(account)?.incident === entry.incident) return
    cache.set(account, entry)
    await change(`journal the disable of ${name(account)}`, (entries) => {
      if (entries.get(account)?.incident === entry.incident) return false
      entries.set(account, entry)
      return true
    })
  }

  /** Forgets an account's record: of `incident` only, or whatever it is (after an enable here). */
  async function forget(account: string, incident?: string): Promise<void> {
    if (incident !== undefined && cache.get(account)?.incident !== incident) return
    cache.delete(account)
    await change(`drop ${name(account)} from the journal`, (entries) => {
      const entry = entries.get(account)
      if (!entry || (incident !== undefined && entry.incident !== incident)) return false
      entries.delete(account)
      return true
    })
  }

  /** Journals the account's current record, when it has one (after Redis said it is disabled). */
  async function rememberCurrent(account: string): Promise<void> {
    try {
      const stored = await store.getStored(account)
      if (stored) await remember(account, stored)
    } catch (err) {
      log.error(`journal: could not read the disable record of ${name(account)}: ${(err as Error).message}`)
    }
  }

  /** Redis does not show the journaled record of the account: find out why, and act. */
  async function reconcile(account: string, entry: JournalEntry): Promise<DisabledRecord | null> {
    const found = await store.reassert(account, entry.fields)
    switch (found.state) {
      case 'present':
        if (found.stored.record.incident !== entry.incident) await remember(account, found.stored)
        return found.stored.record
      case 'enabled':
        await forget(account, entry.incident)
        log.info(`journal: ${name(account)} was enabled since incident ${entry.incident}; forgotten`)
        return null
      case 'restored':
        log.warn(`re-asserted disabled flag of ${name(account)} lost by Redis (incident ${entry.incident}, disabled at ${new Date(entry.at).toISOString()})`)
        return found.record
    }
  }

  /**
   * Redis cannot answer: an account the journal holds counts as disabled meanwhile, whatever
   * on_store_error says (the journal is this server's own knowledge that it was).
   */
  let unansweredReported = 0
  function journaledRecord(account: string, entry: JournalEntry, err: unknown): DisabledRecord {
    if (Date.now() - unansweredReported > 60_000) {
      unansweredReported = Date.now()
      log.warn(`journal: Redis cannot answer (${(err as Error).message}); accounts in the journal stay disabled meanwhile`)
    }
    return toRecord({ ...entry.fields }) ?? { account, reason: 'limit', by: 'journal', at: entry.at, incident: entry.incident, counts: [], evidence: [] }
  }

  /** Checks every journaled record against Redis (the file is read afresh: other processes write it too). */
  function checkAll(why: string): Promise<void> {
    if (checking) {
      // A check under way may have read Redis before it came back: run once more after it.
      rerun = why
      return checking
    }
    checking = (async () => {
      try {
        cache = await file.load()
        cacheStamp = await file.stamp()
      } catch (err) {
        log.error(`journal: ${(err as Error).message}`)
        return
      }
      for (const [account, entry] of [...cache]) {
        if (closed) return
        try {
          await reconcile(account, entry)
        } catch (err) {
          log.error(`journal: could not check ${name(account)} (${why}): ${(err as Error).message}`)
          return
        }
      }
      if (cache.size > 0 && why !== 'periodic check') log.info(`journal: ${cache.size} disabled account(s) checked against Redis (${why})`)
    })().finally(() => {
      checking = null
      const again = rerun
      rerun = null
      if (again !== null && !closed) void checkAll(again)
    })
    return checking
  }

  store.onConnect((runId) => {
    if (closed) return
    const why = lastRunId && runId && runId !== lastRunId ? `Redis restarted or replaced: run_id ${lastRunId} -> ${runId}` : 'connected'
    if (why !== 'connected') log.warn(`journal: ${why}; checking every journaled disable`)
    if (runId) lastRunId = runId
    void checkAll(why)
  })

  const checkTimer = setInterval(() => void checkAll('periodic check'), checkMs)
  checkTimer.unref()
  // Other processes of this server journal too: reload the file when it changed.
  const refreshTimer = setInterval(() => {
    void file
      .stamp()
      .then(async (stamp) => {
        if (stamp === cacheStamp || checking) return
        cache = await file.load()
        cacheStamp = stamp
      })
      .catch(() => undefined)
  }, options.refreshMs ?? 1000)
  refreshTimer.unref()
  // The journal as it was when this process started.
  void file
    .load()
    .then(async (entries) => {
      cache = entries
      cacheStamp = await file.stamp()
    })
    .catch((err: unknown) => log.error(`journal: ${(err as Error).message}`))

  return {
    ...store,

    async getDisabled(account: string): Promise<DisabledRecord | null> {
      const entry = cache.get(account)
      try {
        const stored = await store.getStored(account)
        if (stored) {
          if (entry?.incident !== stored.record.incident) await remember(account, stored)
          return stored.record
        }
        return entry ? await reconcile(account, entry) : null
      } catch (err) {
        if (!entry) throw err
        return journaledRecord(account, entry, err)
      }
    },

    async record(input: RecordInput): Promise<RecordResult> {
      const entry = cache.get(input.account)
      let result: RecordResult
      try {
        if (entry) await reconcile(input.account, entry)
        result = await store.record(input)
      } catch (err) {
        if (!entry) throw err
        const record = journaledRecord(input.account, entry, err)
        return { status: 'disabled', counts: [], flipped: false, by: record.by }
      }
      if ((result.status === 'refused' && result.flipped) || (result.status === 'disabled' && !cache.has(input.account))) await rememberCurrent(input.account)
      return result
    },

    async heldState(account: string): Promise<HeldState> {
      const entry = cache.get(account)
      let state: HeldState
      try {
        if (entry) await reconcile(account, entry)
        state = await store.heldState(account)
      } catch (err) {
        if (!entry) throw err
        journaledRecord(account, entry, err)
        return { disabled: true, dropBefore: 0 }
      }
      if (state.disabled && !cache.has(account)) await rememberCurrent(account)
      return state
    },

    async disable(input: DisableInput): Promise<boolean> {
      const done = await store.disable(input)
      if (done) await rememberCurrent(input.account)
      return done
    },

    async enable(account: string): Promise<boolean> {
      const was = await store.enable(account)
      await forget(account)
      return was
    },

    async redeem(account: string, token: string): Promise<RedeemResult> {
      const result = await store.redeem(account, token)
      if (result === 'ok') await forget(account)
      return result
    },

    async close(): Promise<void> {
      closed = true
      clearInterval(checkTimer)
      clearInterval(refreshTimer)
      await checking?.catch(() => undefined)
      await store.close()
    },
  }
}
