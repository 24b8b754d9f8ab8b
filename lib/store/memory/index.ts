/**
 * The embedded memory store for one Haraka process: counters in memory, the durable state
 * (disable records, tokens, audit, held mail) in a state file written atomically and shared with
 * the CLI under a lock file.
 */
import { accessSync, closeSync, constants as fsConstants, fchownSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync } from 'node:fs'
import { open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Rule } from '../../config'
import { countersTtlMs, increments, staleFields, windowTotals } from '../buckets'
import { randomId, tokenDigest } from '../../ids'
import {
  EVIDENCE_CAP,
  StoreError,
  toAuditEntry,
  toSummary,
  windowCount,
  type AuditEntry,
  type DisabledRecord,
  type DisableInput,
  type HeldState,
  type MessageSummary,
  type RecordInput,
  type RecordResult,
  type RedeemResult,
  type Store,
  type WindowCount,
} from '..'

export interface MemoryStoreOptions {
  /** File that keeps the durable state; written atomically (temporary file, then rename). */
  readonly stateFile: string
  /** Milliseconds since the epoch; injectable for tests. */
  readonly now?: () => number
}

interface AccountCounters {
  counts: Map<string, number>
  evidence: MessageSummary[]
  expiresAt: number
  monitoredUntil: number
}

/** A disable record as kept on disk: with its token's SHA-256, which readers never see. */
type StoredRecord = DisabledRecord & { tokenSha256?: string }

interface TokenPointer {
  account: string
  /** When the pointer may be forgotten (twice the token's lifetime). */
  forgetAt: number
}

/**
 * Everything that must survive a restart, and that the CLI changes through the file. Maps,
 * never plain objects, hold account names: "__proto__" is a login like any other.
 */
interface Durable {
  disabled: Map<string, StoredRecord>
  /** SHA-256 of a token (tokenDigest) -> its account; the tokens themselves are never kept. */
  tokens: Map<string, TokenPointer>
  audit: AuditEntry[]
  /** account -> ms: counters cleared (by enable or reset) at that time. */
  cleared: Map<string, number>
  /** account -> queued mail counted until `at` is dropped; the mark is kept until `until`. */
  dropBefore: Map<string, { at: number; until: number }>
  /** account -> held message id -> when to forget it. */
  held: Map<string, Map<string, number>>
}

const SWEEP_EVERY = 1000

/** The memory store keeps a shorter audit trail than Redis: it rewrites one file. */
const MEMORY_AUDIT_CAP = 1000

function publicRecord(r: StoredRecord): DisabledRecord {
  const { tokenSha256: _secret, ...rest } = r
  return rest
}

function emptyDurable(): Durable {
  return { disabled: new Map(), tokens: new Map(), audit: [], cleared: new Map(), dropBefore: new Map(), held: new Map() }
}

function toJson(d: Durable): string {
  const held = [...d.held].map(([account, ids]): [string, Record<string, number>] => [account, Object.fromEntries(ids)])
  return `${JSON.stringify(
    {
      version: 1,
      disabled: Object.fromEntries(d.disabled),
      tokens: Object.fromEntries(d.tokens),
      audit: d.audit,
      cleared: Object.fromEntries(d.cleared),
      dropBefore: Object.fromEntries(d.dropBefore),
      held: Object.fromEntries(held),
    },
    null,
    2,
  )}\n`
}

/**
 * The embedded Store for one Haraka process. Counters live in memory; the durable state
 * (disable records, tokens, audit) is written to `stateFile` before a call resolves, so a
 * restart keeps every disabled flag; held-mail marks are written within HELD_FLUSH_MS. A change
 * to the file by another process (the CLI) is picked up on the next call. Throws StoreError
 * when the state file exists but is not readable as state: the plugin refuses to start rather
 * than forget a disabled account.
 */
export function createMemoryStore(options: MemoryStoreOptions): Store {
  const now = options.now ?? Date.now
  const file = options.stateFile
  const accounts = new Map<string, AccountCounters>()
  let durable = loadState(file)
  let seen = fileStamp(file)
  let recordsSinceSweep = 0
  /** Held-mail marks not written yet: "account\0id" -> forget-at ms, or null for a release. */
  const pendingHeld = new Map<string, { account: string; id: string; until: number | null }>()
  let heldTimer: NodeJS.Timeout | undefined
  /** Changes applied here but not yet in the file, replayed over what another process wrote. */
  const pending: ((d: Durable) => unknown)[] = []
  /** The in-process queue of writes: one at a time, each under the lock file. */
  let queue: Promise<unknown> = Promise.resolve()
  /** True while this process holds the lock and replaces the file: nobody else changes it. */
  let writing = false

  /** Takes in what another process wrote; counters of accounts it cleared are dropped here too. */
  function refresh(): Durable {
    if (writing) return durable
    const stamp = fileStamp(file)
    if (stamp === seen) return durable
    const before = durable
    durable = loadState(file)
    seen = stamp
    for (const [account, at] of durable.cleared) {
      if (at !== before.cleared.get(account)) accounts.delete(account)
    }
    for (const mutate of pending) mutate(durable)
    for (const p of pendingHeld.values()) applyHeld(durable, p.account, p.id, p.until)
    return durable
  }

  /**
   * Applies a change to the latest durable state at once (so this process's next call sees it)
   * and resolves once it is in the file. Writes queue behind each other; the lock file
   * serialises the read-change-write of every process sharing the file (Haraka and the CLI), so
   * no change overwrites another: a change is replayed over what another process wrote.
   * Waiting for the lock never blocks the event loop.
   */
  function change<T>(mutate: (d: Durable) => T): Promise<T> {
    const result = mutate(refresh())
    pending.push(mutate)
    const run = queue.then(() =>
      withLock(file, async () => {
        refresh()
        const written = [...pending]
        const heldWritten = new Map(pendingHeld)
        writing = true
        try {
          await write(durable)
        } catch (err) {
          forget(pending, mutate)
          throw err
        } finally {
          writing = false
        }
        for (const m of written) forget(pending, m)
        for (const [key, p] of heldWritten) if (pendingHeld.get(key) === p) pendingHeld.delete(key)
        seen = fileStamp(file)
      }),
    )
    queue = run.catch(() => undefined)
    return run.then(() => result)
  }

  async function write(d: Durable): Promise<void> {
    const t = now()
    for (const [token, p] of d.tokens) if (p.forgetAt <= t) d.tokens.delete(token)
    for (const [account, m] of d.dropBefore) if (m.until <= t) d.dropBefore.delete(account)
    await writeStateFile(file, toJson(d))
  }

  /** Notes a held-mail change in memory and writes it (with any others) a moment later. */
  function noteHeld(account: string, id: string, until: number | null): void {
    const p = { account, id, until }
    pendingHeld.set(`${account}\0${id}`, p)
    applyHeld(durable, account, id, until)
    if (heldTimer) return
    heldTimer = setTimeout(() => {
      heldTimer = undefined
      void flushHeld()
    }, HELD_FLUSH_MS)
    heldTimer.unref()
  }

  function flushHeld(): Promise<void> {
    if (pendingHeld.size === 0) return Promise.resolve()
    // A failed write keeps the marks pending for the next change: they only count held mail.
    return change(() => undefined).catch(() => undefined)
  }

  function clearCounters(d: Durable, account: string): void {
    accounts.delete(account)
    d.cleared.set(account, now())
  }

  function live(account: string, t: number): AccountCounters | undefined {
    const a = accounts.get(account)
    if (a && a.expiresAt <= t) {
      accounts.delete(account)
      return undefined
    }
    return a
  }

  function sweep(t: number): void {
    if (++recordsSinceSweep < SWEEP_EVERY) return
    recordsSinceSweep = 0
    for (const [name, a] of accounts) if (a.expiresAt <= t) accounts.delete(name)
  }

  const store: Store = {
    kind: 'memory',

    async record(input: RecordInput): Promise<RecordResult> {
      const disabled = input.mode === 'enforce' ? refresh().disabled.get(input.account) : undefined
      if (disabled) return { status: 'disabled', counts: [], flipped: false, by: disabled.by }
      const t = now()
      sweep(t)
      const a = live(input.account, t) ?? { counts: new Map<string, number>(), evidence: [], expiresAt: 0, monitoredUntil: 0 }
      accounts.set(input.account, a)
      for (const f of staleFields(a.counts.keys(), input.rules, t)) a.counts.delete(f)
      const totals = windowTotals(a.counts, input.rules, t)
      const adds = input.rules.map((r) => (r.kind === 'messages' ? 1 : input.recipients))
      const overIndex = input.rules.findIndex((r, i) => (totals[i] ?? 0) + (adds[i] ?? 0) > r.max)
      a.evidence = [input.summary, ...a.evidence].slice(0, EVIDENCE_CAP)
      a.expiresAt = t + countersTtlMs(input.rules)

      if (overIndex >= 0 && input.mode === 'enforce') {
        const counts = input.rules.map((r, i) => windowCount(r, totals[i] ?? 0))
        const over = counts[overIndex] as WindowCount
        const record: StoredRecord = {
          account: input.account,
          reason: 'limit',
          by: 'limit',
          at: t,
          incident: randomId(),
          over,
          counts,
          evidence: a.evidence,
          tokenSha256: tokenDigest(input.token),
          tokenExpiresAt: t + input.tokenTtlMs,
        }
        await change((d) => {
          d.disabled.set(input.account, record)
          d.tokens.set(tokenDigest(input.token), { account: input.account, forgetAt: t + 2 * input.tokenTtlMs })
        })
        return { status: 'refused', counts, over, flipped: true, record: publicRecord(record) }
      }

      for (const [f, add] of increments(input.rules, input.recipients, t)) a.counts.set(f, (a.counts.get(f) ?? 0) + add)
      input.rules.forEach((_, i) => (totals[i] = (totals[i] ?? 0) + (adds[i] ?? 0)))
      const counts = input.rules.map((r, i) => windowCount(r, totals[i] ?? 0))
      if (overIndex < 0) return { status: 'ok', counts, flipped: false, at: t }
      const over = counts[overIndex] as WindowCount
      const rule = input.rules[overIndex] as Rule
      const flipped = a.monitoredUntil <= t
      if (!flipped) return { status: 'ok', counts, over, flipped, at: t }
      a.monitoredUntil = t + rule.bucketMs * rule.buckets
      return { status: 'ok', counts, over, flipped, at: t, evidence: [...a.evidence] }
    },

    async tokenAccount(token: string): Promise<string | null> {
      const p = refresh().tokens.get(tokenDigest(token))
      return p && p.forgetAt > now() ? p.account : null
    },

    async redeem(account: string, token: string): Promise<RedeemResult> {
      const r = refresh().disabled.get(account)
      if (!r) return 'not-disabled'
      if (!r.tokenSha256 || r.tokenSha256 !== tokenDigest(token)) return 'mismatch'
      if ((r.tokenExpiresAt ?? 0) < now()) return 'expired'
      await change((d) => {
        d.disabled.delete(account)
        clearCounters(d, account)
      })
      return 'ok'
    },

    async audit(entry: AuditEntry): Promise<void> {
      await change((d) => {
        d.audit.unshift(entry)
        d.audit.splice(MEMORY_AUDIT_CAP)
      })
    },

    async auditLog(options: { account?: string; limit?: number } = {}): Promise<AuditEntry[]> {
      const all = refresh().audit
      const mine = options.account === undefined ? all : all.filter((e) => e.account === options.account)
      return mine.slice(0, options.limit ?? mine.length)
    },

    async getDisabled(account: string): Promise<DisabledRecord | null> {
      const r = refresh().disabled.get(account)
      return r ? publicRecord(r) : null
    },

    async disable(input: DisableInput): Promise<boolean> {
      if (refresh().disabled.has(input.account)) return false
      await change((d) => {
        d.disabled.set(input.account, { ...input, at: now(), counts: [], evidence: [] })
      })
      return true
    },

    async enable(account: string): Promise<boolean> {
      return change((d) => {
        const was = d.disabled.delete(account)
        clearCounters(d, account)
        return was
      })
    },

    async reset(account: string): Promise<void> {
      await change((d) => clearCounters(d, account))
    },

    async counts(account: string, rules: readonly Rule[]): Promise<WindowCount[]> {
      refresh()
      const t = now()
      const totals = windowTotals(live(account, t)?.counts ?? [], rules, t)
      return rules.map((r, i) => windowCount(r, totals[i] ?? 0))
    },

    async evidence(account: string): Promise<MessageSummary[]> {
      refresh()
      return [...(live(account, now())?.evidence ?? [])]
    },

    async listDisabled(): Promise<DisabledRecord[]> {
      return [...refresh().disabled.values()]
        .map(publicRecord)
        .sort((a, b) => b.at - a.at)
    },

    async ready(): Promise<void> {
      refresh()
    },

    async heldState(account: string): Promise<HeldState> {
      const d = refresh()
      const drop = d.dropBefore.get(account)
      return { disabled: d.disabled.has(account), dropBefore: drop && drop.until > now() ? drop.at : 0 }
    },

    async hold(account: string, id: string, ttlMs: number): Promise<void> {
      if (refresh().held.get(account)?.has(id)) return
      noteHeld(account, id, now() + ttlMs)
    },

    async release(account: string, id: string): Promise<boolean> {
      if (!refresh().held.get(account)?.has(id)) return false
      noteHeld(account, id, null)
      return true
    },

    async heldCount(account: string): Promise<number> {
      const t = now()
      return [...(refresh().held.get(account)?.values() ?? [])].filter((until) => until > t).length
    },

    async dropHeld(account: string, ttlMs: number): Promise<number> {
      const t = now()
      return change((d) => {
        d.dropBefore.set(account, { at: t, until: t + ttlMs })
        return [...(d.held.get(account)?.values() ?? [])].filter((until) => until > t).length
      })
    },

    async close(): Promise<void> {
      if (heldTimer) clearTimeout(heldTimer)
      heldTimer = undefined
      await flushHeld()
      await queue
      accounts.clear()
    },
  }
  return store
}

const LOCK_WAIT_MS = 5000
const LOCK_STALE_MS = 10_000
const LOCK_RETRY_MS = 3
/** How soon held-mail marks reach the file (they are counts for the CLI, not flags). */
const HELD_FLUSH_MS = 1000

function forget<T>(list: T[], item: T): void {
  const i = list.indexOf(item)
  if (i >= 0) list.splice(i, 1)
}

function applyHeld(d: Durable, account: string, id: string, until: number | null): void {
  const ids = d.held.get(account) ?? new Map<string, number>()
  if (until === null) ids.delete(id)
  else ids.set(id, until)
  if (ids.size === 0) d.held.delete(account)
  else d.held.set(account, ids)
}

/**
 * Runs `work` holding `<file>.lock` (created exclusively). The critical sections are a read and
 * a write of a small file, so waiters retry every few milliseconds (on a timer: the event loop
 * keeps running); a lock older than LOCK_STALE_MS was left by a process that died and is taken
 * over. Rejects with StoreError after LOCK_WAIT_MS.
 */
async function withLock<T>(file: string, work: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`
  const deadline = Date.now() + LOCK_WAIT_MS
  try {
    mkdirSync(dirname(file), { recursive: true })
  } catch (err) {
    throw new StoreError(`cannot create the directory of ${file}: ${(err as Error).message}`, { cause: err, failure: 'file' })
  }
  const owner = ownerFor(file)
  for (;;) {
    try {
      const fd = openSync(lock, 'wx', 0o600)
      try {
        // A root CLI's lock left behind must stay removable by the user Haraka runs as.
        if (owner.chown) fchownSync(fd, owner.uid, owner.gid)
      } catch {
        // only a lock: removed below
      } finally {
        closeSync(fd)
      }
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StoreError(`cannot lock ${file}: ${(err as Error).message}`, { cause: err, failure: 'file' })
    }
    try {
      if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS) unlinkSync(lock)
    } catch {
      // gone already: try again
    }
    if (Date.now() > deadline) throw new StoreError(`${lock} has been held by another process for ${LOCK_WAIT_MS} ms`, { failure: 'file' })
    await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS))
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

/** Who must own a file written at `file`: its present owner and mode, else its directory's owner. */
interface Owner {
  uid: number
  gid: number
  mode: number
  /** True when this process must fchown to keep that owner. */
  chown: boolean
}

function ownerFor(file: string): Owner {
  const euid = process.geteuid?.() ?? -1
  const egid = process.getegid?.() ?? -1
  let s
  try {
    s = statSync(file)
  } catch {
    // A new file: root gives it the directory's owner (the user Haraka runs as, once set up).
    if (euid !== 0) return { uid: euid, gid: egid, mode: 0o600, chown: false }
    try {
      const dir = statSync(dirname(file))
      return { uid: dir.uid, gid: dir.gid, mode: 0o600, chown: dir.uid !== 0 || dir.gid !== egid }
    } catch {
      return { uid: euid, gid: egid, mode: 0o600, chown: false }
    }
  }
  return { uid: s.uid, gid: s.gid, mode: s.mode & 0o777, chown: s.uid !== euid || s.gid !== egid }
}

/**
 * Replaces `file` with `text` atomically (temporary file, fsync, rename), keeping the file's
 * owner, group and mode: run as root (the CLI under sudo), the new file is chowned back to the
 * user Haraka runs as. Rejects with StoreError, leaving the file untouched, when the owner
 * cannot be kept.
 */
async function writeStateFile(file: string, text: string): Promise<void> {
  const owner = ownerFor(file)
  const tmp = `${file}.${process.pid}.tmp`
  let fh
  try {
    fh = await open(tmp, 'w', 0o600)
  } catch (err) {
    throw new StoreError(`cannot write ${file}: ${(err as Error).message}`, { cause: err, failure: 'file' })
  }
  try {
    if (owner.chown) {
      try {
        await fh.chown(owner.uid, owner.gid)
      } catch (err) {
        throw new StoreError(
          `cannot keep the owner of ${file} (uid ${owner.uid}, gid ${owner.gid}): ${(err as Error).message}; ` +
            `nothing was changed: run this as that user (e.g. sudo -u '#${owner.uid}') or as root`,
          { cause: err, failure: 'file' },
        )
      }
    }
    await fh.chmod(owner.mode)
    await fh.writeFile(text)
    await fh.sync()
    await fh.close()
    fh = undefined
    await rename(tmp, file)
  } catch (err) {
    await fh?.close().catch(() => undefined)
    await unlink(tmp).catch(() => undefined)
    throw err instanceof StoreError ? err : new StoreError(`cannot write ${file}: ${(err as Error).message}`, { cause: err, failure: 'file' })
  }
}

/**
 * The startup check of a state file: it must read as state, and this process must be able to
 * read and replace it (read and write on the file, write on its directory). Creates the file,
 * empty, when it is missing. Rejects with StoreError naming the file and what to do.
 */
export async function checkStateFile(file: string): Promise<void> {
  const who = `uid ${process.getuid?.() ?? '?'} gid ${process.getgid?.() ?? '?'}`
  const fix = `give the user Haraka runs as (${who}) read and write access to the file and write access to its directory (e.g. chown that user ${file} ${dirname(file)}), or set [main] state_file to a path it can write`
  try {
    loadState(file)
  } catch (err) {
    const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code
    throw code === 'EACCES' || code === 'EPERM' ? new StoreError(`${(err as Error).message}; ${fix}`, { cause: err, failure: 'file' }) : err
  }
  try {
    mkdirSync(dirname(file), { recursive: true })
    accessSync(dirname(file), fsConstants.W_OK | fsConstants.X_OK)
  } catch (err) {
    throw new StoreError(`the directory of ${file} is not writable: ${(err as Error).message}; ${fix}`, { cause: err, failure: 'file' })
  }
  let exists = true
  try {
    accessSync(file, fsConstants.R_OK | fsConstants.W_OK)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new StoreError(`${file} is not readable and writable: ${(err as Error).message}; ${fix}`, { cause: err, failure: 'file' })
    exists = false
  }
  if (exists) return
  try {
    await withLock(file, async () => {
      if (fileStamp(file) === 'missing') await writeStateFile(file, toJson(emptyDurable()))
    })
  } catch (err) {
    throw new StoreError(`${(err as Error).message}; ${fix}`, { cause: err, failure: 'file' })
  }
}

/** Changes whenever another process replaces the file (rename gives a new inode). */
function fileStamp(file: string): string {
  try {
    const s = statSync(file)
    return `${s.ino}:${s.mtimeMs}:${s.size}`
  } catch {
    return 'missing'
  }
}

function loadState(file: string): Durable {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyDurable()
    throw new StoreError(`cannot read ${file}: ${(err as Error).message}`, { cause: err, failure: 'file' })
  }
  let state: unknown
  try {
    state = JSON.parse(text)
  } catch (err) {
    throw new StoreError(`${file} is not valid JSON (${(err as Error).message}); fix or move it away`, { cause: err, failure: 'file' })
  }
  const parsed = (state ?? {}) as Record<string, unknown>
  const rows = parsed.disabled
  if (!rows || typeof rows !== 'object') throw new StoreError(`${file} has no "disabled" object; fix or move it away`, { failure: 'file' })
  const d = emptyDurable()
  for (const [account, r] of Object.entries(rows) as [string, unknown][]) {
    if (!isRecordLike(r)) throw new StoreError(`${file}: the record of ${JSON.stringify(account)} is damaged; fix or move it away`, { failure: 'file' })
    // A token in clear (a file written before tokens were hashed) is not kept: the hash is the authority.
    const { token: _clear, ...rest } = r as StoredRecord & { token?: unknown }
    d.disabled.set(account, { ...rest, account, evidence: (r.evidence ?? []).flatMap(toSummary), counts: r.counts ?? [] })
  }
  for (const [digest, p] of entriesOf(parsed.tokens)) {
    const ptr = p as Partial<TokenPointer> | null
    if (ptr && typeof ptr.account === 'string' && /^[0-9a-f]{64}$/.test(digest)) d.tokens.set(digest, { account: ptr.account, forgetAt: Number(ptr.forgetAt) || 0 })
  }
  d.audit = Array.isArray(parsed.audit) ? parsed.audit.flatMap(toAuditEntry) : []
  for (const [account, at] of entriesOf(parsed.cleared)) d.cleared.set(account, Number(at) || 0)
  for (const [account, m] of entriesOf(parsed.dropBefore)) {
    const mark = m as { at?: unknown; until?: unknown } | null
    if (mark) d.dropBefore.set(account, { at: Number(mark.at) || 0, until: Number(mark.until) || 0 })
  }
  for (const [account, ids] of entriesOf(parsed.held)) {
    d.held.set(account, new Map(entriesOf(ids).map(([id, until]): [string, number] => [id, Number(until) || 0])))
  }
  return d
}

function entriesOf(value: unknown): [string, unknown][] {
  return value && typeof value === 'object' && !Array.isArray(value) ? Object.entries(value) : []
}

/** A disable record as JSON.parse gave it: an object whose evidence and counts, if any, are lists. */
function isRecordLike(r: unknown): r is StoredRecord {
  if (!r || typeof r !== 'object' || Array.isArray(r)) return false
  const { evidence, counts } = r as Record<string, unknown>
  return (evidence === undefined || Array.isArray(evidence)) && (counts === undefined || Array.isArray(counts))
}
