import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Rule } from './config'
import { countersTtlMs, increments, staleFields, windowTotals } from './buckets'
import { randomId } from './ids'
import {
  EVIDENCE_CAP,
  StoreError,
  toAuditEntry,
  toSummary,
  windowCount,
  type AuditEntry,
  type CountedMessage,
  type DisabledRecord,
  type DisableInput,
  type RedeemResult,
  type MessageSummary,
  type RecordInput,
  type RecordResult,
  type Store,
  type WindowCount,
} from './store'

export interface MemoryStoreOptions {
  /** File that keeps the durable state (disable records); written atomically. */
  readonly stateFile: string
  /** Milliseconds since the epoch; injectable for tests. */
  readonly now?: () => number
}

interface AccountState {
  counts: Map<string, number>
  evidence: MessageSummary[]
  expiresAt: number
  monitoredUntil: number
}

/** A disable record as kept on disk: with its token, which readers never see. */
type StoredRecord = DisabledRecord & { token?: string }

interface TokenPointer {
  account: string
  /** When the pointer may be forgotten (twice the token's lifetime). */
  forgetAt: number
}

interface State {
  disabled: Map<string, StoredRecord>
  tokens: Map<string, TokenPointer>
  audit: AuditEntry[]
}

interface StateFile {
  version: 1
  disabled: Record<string, StoredRecord>
  tokens?: Record<string, TokenPointer>
  audit?: AuditEntry[]
}

const SWEEP_EVERY = 1000

/** The memory store keeps a shorter audit trail than Redis: it rewrites one file. */
export const MEMORY_AUDIT_CAP = 1000

function publicRecord(r: StoredRecord): DisabledRecord {
  const { token: _secret, ...rest } = r
  return rest
}

/**
 * The embedded Store for one Haraka process. Counters live in memory; disable records are
 * written to `stateFile` (write to a temporary file, then rename) before a call resolves, so
 * a restart keeps every disabled flag. Throws StoreError when the state file exists but is
 * not readable as state: the plugin refuses to start rather than forget a disabled account.
 */
export function createMemoryStore(options: MemoryStoreOptions): Store {
  const now = options.now ?? Date.now
  const accounts = new Map<string, AccountState>()
  const { disabled, tokens, audit } = loadState(options.stateFile)
  let recordsSinceSweep = 0

  function persist(): void {
    const t = now()
    for (const [token, p] of tokens) if (p.forgetAt <= t) tokens.delete(token)
    const state: StateFile = { version: 1, disabled: Object.fromEntries(disabled), tokens: Object.fromEntries(tokens), audit }
    const tmp = `${options.stateFile}.${process.pid}.tmp`
    try {
      mkdirSync(dirname(options.stateFile), { recursive: true })
      writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`)
      renameSync(tmp, options.stateFile)
    } catch (err) {
      throw new StoreError(`cannot write ${options.stateFile}: ${(err as Error).message}`, { cause: err })
    }
  }

  function live(account: string, t: number): AccountState | undefined {
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
      if (input.mode === 'enforce' && disabled.has(input.account)) return { status: 'disabled', counts: [], flipped: false }
      const t = now()
      sweep(t)
      const ttl = countersTtlMs(input.rules)
      const a = live(input.account, t) ?? { counts: new Map(), evidence: [], expiresAt: 0, monitoredUntil: 0 }
      accounts.set(input.account, a)
      for (const f of staleFields(a.counts.keys(), input.rules, t)) a.counts.delete(f)
      const totals = windowTotals(a.counts, input.rules, t)
      const adds = input.rules.map((r) => (r.kind === 'messages' ? 1 : input.recipients))
      const overIndex = input.rules.findIndex((r, i) => (totals[i] ?? 0) + (adds[i] ?? 0) > r.max)
      a.evidence = [input.summary, ...a.evidence].slice(0, EVIDENCE_CAP)
      a.expiresAt = t + ttl

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
          token: input.token,
          tokenExpiresAt: t + input.tokenTtlMs,
        }
        disabled.set(input.account, record)
        tokens.set(input.token, { account: input.account, forgetAt: t + 2 * input.tokenTtlMs })
        persist()
        return { status: 'refused', counts, over, flipped: true, record: publicRecord(record) }
      }

      for (const [f, add] of increments(input.rules, input.recipients, t)) a.counts.set(f, (a.counts.get(f) ?? 0) + add)
      input.rules.forEach((_, i) => (totals[i] = (totals[i] ?? 0) + (adds[i] ?? 0)))
      const counts = input.rules.map((r, i) => windowCount(r, totals[i] ?? 0))
      if (overIndex < 0) return { status: 'ok', counts, flipped: false, at: t }
      const over = counts[overIndex] as WindowCount
      const rule = input.rules[overIndex] as Rule
      const flipped = a.monitoredUntil <= t
      if (flipped) a.monitoredUntil = t + rule.bucketMs * rule.buckets
      return { status: 'ok', counts, over, flipped, at: t }
    },

    async uncount(message: CountedMessage): Promise<void> {
      const a = live(message.account, now())
      if (!a) return
      for (const [f, n] of increments(message.rules, message.recipients, message.at)) {
        const left = (a.counts.get(f) ?? 0) - n
        if (left > 0) a.counts.set(f, left)
        else a.counts.delete(f)
      }
    },

    async tokenAccount(token: string): Promise<string | null> {
      const p = tokens.get(token)
      return p && p.forgetAt > now() ? p.account : null
    },

    async redeem(account: string, token: string): Promise<RedeemResult> {
      const r = disabled.get(account)
      if (!r) return 'not-disabled'
      if (!r.token || r.token !== token) return 'mismatch'
      if ((r.tokenExpiresAt ?? 0) < now()) return 'expired'
      disabled.delete(account)
      accounts.delete(account)
      persist()
      return 'ok'
    },

    async audit(entry: AuditEntry): Promise<void> {
      audit.unshift(entry)
      audit.splice(MEMORY_AUDIT_CAP)
      persist()
    },

    async auditLog(options: { account?: string; limit?: number } = {}): Promise<AuditEntry[]> {
      const mine = options.account === undefined ? audit : audit.filter((e) => e.account === options.account)
      return mine.slice(0, options.limit ?? mine.length)
    },

    async getDisabled(account: string): Promise<DisabledRecord | null> {
      const r = disabled.get(account)
      return r ? publicRecord(r) : null
    },

    async disable(input: DisableInput): Promise<boolean> {
      if (disabled.has(input.account)) return false
      disabled.set(input.account, { ...input, at: now(), counts: [], evidence: [] })
      persist()
      return true
    },

    async enable(account: string): Promise<boolean> {
      accounts.delete(account)
      if (!disabled.delete(account)) return false
      persist()
      return true
    },

    async reset(account: string): Promise<void> {
      accounts.delete(account)
    },

    async counts(account: string, rules: readonly Rule[]): Promise<WindowCount[]> {
      const t = now()
      const totals = windowTotals(live(account, t)?.counts ?? [], rules, t)
      return rules.map((r, i) => windowCount(r, totals[i] ?? 0))
    },

    async evidence(account: string): Promise<MessageSummary[]> {
      return [...(live(account, now())?.evidence ?? [])]
    },

    async listDisabled(): Promise<DisabledRecord[]> {
      return [...disabled.values()].map(publicRecord).sort((a, b) => b.at - a.at)
    },

    async close(): Promise<void> {
      accounts.clear()
    },
  }
  return store
}

function loadState(file: string): State {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { disabled: new Map(), tokens: new Map(), audit: [] }
    throw new StoreError(`cannot read ${file}: ${(err as Error).message}`, { cause: err })
  }
  let state: unknown
  try {
    state = JSON.parse(text)
  } catch (err) {
    throw new StoreError(`${file} is not valid JSON (${(err as Error).message}); fix or move it away`, { cause: err })
  }
  const parsed = state as Partial<StateFile> | null
  const rows = parsed?.disabled
  if (!rows || typeof rows !== 'object') throw new StoreError(`${file} has no "disabled" object; fix or move it away`)
  const disabled = new Map<string, StoredRecord>()
  for (const [account, r] of Object.entries(rows) as [string, unknown][]) {
    if (!isRecordLike(r)) throw new StoreError(`${file}: the record of ${JSON.stringify(account)} is damaged; fix or move it away`)
    disabled.set(account, { ...r, account, evidence: (r.evidence ?? []).flatMap(toSummary), counts: r.counts ?? [] })
  }
  const tokens = new Map<string, TokenPointer>()
  for (const [token, p] of Object.entries(parsed.tokens ?? {})) {
    if (p && typeof p.account === 'string') tokens.set(token, { account: p.account, forgetAt: Number(p.forgetAt) || 0 })
  }
  const audit = Array.isArray(parsed.audit) ? parsed.audit.flatMap(toAuditEntry) : []
  return { disabled, tokens, audit }
}

/** A disable record as JSON.parse gave it: an object whose evidence and counts, if any, are lists. */
function isRecordLike(r: unknown): r is StoredRecord {
  if (!r || typeof r !== 'object' || Array.isArray(r)) return false
  const { evidence, counts } = r as Record<string, unknown>
  return (evidence === undefined || Array.isArray(evidence)) && (counts === undefined || Array.isArray(counts))
}
