import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Rule } from './config'
import { countersTtlMs, increments, staleFields, windowTotals } from './buckets'
import { randomId, tokenDigest } from './ids'
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
} from './store'

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
 * (disable records, tokens, audit, held mail) is written to `stateFile` before a call
 * resolves, so a restart keeps every disabled flag. A change to the file by another process
 * (the CLI) is picked up on the next call. Throws StoreError when the state file exists but is
 * not readable as state: the plugin refuses to start rather than forget a disabled account.
 */
export function createMemoryStore(options: MemoryStoreOptions): Store {
  const now = options.now ?? Date.now
  const file = options.stateFile
  const accounts = new Map<string, AccountCounters>()
  let durable = loadState(file)
  let seen = fileStamp(file)
  let recordsSinceSweep = 0

  /** Takes in what another process wrote; counters of accounts it cleared are dropped here too. */
  function refresh(): Durable {
    const stamp = fileStamp(file)
    if (stamp === seen) return durable
    const before = durable
    durable = loadState(file)
    seen = stamp
    for (const [account, at] of durable.cleared) {
      if (at !== before.cleared.get(account)) accounts.delete(account)
    }
    return durable
  }

  /**
   * Applies a change to the latest durable state and writes it before returning. The lock file
   * serialises the read-change-write of every process sharing the file (Haraka and the CLI), so
   * no change overwrites another.
   */
  function change<T>(mutate: (d: Durable) => T): T {
    return withLock(file, () => {
      const d = refresh()
      const result = mutate(d)
      write(d)
      return result
    })
  }

  function write(d: Durable): void {
    const t = now()
    for (const [token, p] of d.tokens) if (p.forgetAt <= t) d.tokens.delete(token)
    for (const [account, m] of d.dropBefore) if (m.until <= t) d.dropBefore.delete(account)
    const tmp = `${file}.${process.pid}.tmp`
    try {
      const fd = openSync(tmp, 'w', 0o600)
      try {
        writeSync(fd, toJson(d))
        fsyncSync(fd)
      } finally {
        closeSync(fd)
      }
      renameSync(tmp, file)
    } catch (err) {
      throw new StoreError(`cannot write ${file}: ${(err as Error).message}`, { cause: err })
    }
    seen = fileStamp(file)
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
        change((d) => {
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
      change((d) => {
        d.disabled.delete(account)
        clearCounters(d, account)
      })
      return 'ok'
    },

    async audit(entry: AuditEntry): Promise<void> {
      change((d) => {
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
      change((d) => {
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
      change((d) => clearCounters(d, account))
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
      change((d) => {
        const ids = d.held.get(account) ?? new Map<string, number>()
        ids.set(id, now() + ttlMs)
        d.held.set(account, ids)
      })
    },

    async release(account: string, id: string): Promise<boolean> {
      if (!refresh().held.get(account)?.has(id)) return false
      return change((d) => {
        const ids = d.held.get(account)
        const was = ids?.delete(id) ?? false
        if (ids?.size === 0) d.held.delete(account)
        return was
      })
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
      accounts.clear()
    },
  }
  return store
}

const LOCK_WAIT_MS = 5000
const LOCK_STALE_MS = 10_000
const napCell = new Int32Array(new SharedArrayBuffer(4))

/**
 * Runs `work` holding `<file>.lock` (created exclusively). The critical sections are a read and
 * a write of a small file, so waiters sleep a few milliseconds at a time; a lock older than
 * LOCK_STALE_MS was left by a process that died and is taken over.
 */
function withLock<T>(file: string, work: () => T): T {
  const lock = `${file}.lock`
  const deadline = Date.now() + LOCK_WAIT_MS
  try {
    mkdirSync(dirname(file), { recursive: true })
  } catch (err) {
    throw new StoreError(`cannot create the directory of ${file}: ${(err as Error).message}`, { cause: err })
  }
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx', 0o600))
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StoreError(`cannot lock ${file}: ${(err as Error).message}`, { cause: err })
    }
    try {
      if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS) unlinkSync(lock)
    } catch {
      // gone already: try again
    }
    if (Date.now() > deadline) throw new StoreError(`${lock} has been held by another process for ${LOCK_WAIT_MS} ms`)
    Atomics.wait(napCell, 0, 0, 3)
  }
  try {
    return work()
  } finally {
    try {
      unlinkSync(lock)
    } catch {
      // removed by someone who thought it stale: nothing to release
    }
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
    throw new StoreError(`cannot read ${file}: ${(err as Error).message}`, { cause: err })
  }
  let state: unknown
  try {
    state = JSON.parse(text)
  } catch (err) {
    throw new StoreError(`${file} is not valid JSON (${(err as Error).message}); fix or move it away`, { cause: err })
  }
  const parsed = (state ?? {}) as Record<string, unknown>
  const rows = parsed.disabled
  if (!rows || typeof rows !== 'object') throw new StoreError(`${file} has no "disabled" object; fix or move it away`)
  const d = emptyDurable()
  for (const [account, r] of Object.entries(rows) as [string, unknown][]) {
    if (!isRecordLike(r)) throw new StoreError(`${file}: the record of ${JSON.stringify(account)} is damaged; fix or move it away`)
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
