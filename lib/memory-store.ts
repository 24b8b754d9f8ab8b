import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Rule } from './config'
import { bucketField, countersTtlMs, staleFields, windowTotals } from './buckets'
import { randomId } from './ids'
import {
  EVIDENCE_CAP,
  StoreError,
  toSummary,
  windowCount,
  type DisabledRecord,
  type DisableInput,
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

interface StateFile {
  version: 1
  disabled: Record<string, DisabledRecord>
}

const SWEEP_EVERY = 1000

/**
 * The embedded Store for one Haraka process. Counters live in memory; disable records are
 * written to `stateFile` (write to a temporary file, then rename) before a call resolves, so
 * a restart keeps every disabled flag. Throws StoreError when the state file exists but is
 * not readable as state: the plugin refuses to start rather than forget a disabled account.
 */
export function createMemoryStore(options: MemoryStoreOptions): Store {
  const now = options.now ?? Date.now
  const accounts = new Map<string, AccountState>()
  const disabled = loadState(options.stateFile)
  let recordsSinceSweep = 0

  function persist(): void {
    const state: StateFile = { version: 1, disabled: Object.fromEntries(disabled) }
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
        const record: DisabledRecord = {
          account: input.account,
          reason: 'limit',
          by: 'limit',
          at: t,
          incident: randomId(),
          over,
          counts,
          evidence: a.evidence,
        }
        disabled.set(input.account, record)
        persist()
        return { status: 'refused', counts, over, flipped: true, record }
      }

      const seen = new Set<string>()
      input.rules.forEach((r, i) => {
        const f = bucketField(r, t)
        const add = adds[i] ?? 0
        if (!seen.has(f) && add > 0) a.counts.set(f, (a.counts.get(f) ?? 0) + add)
        seen.add(f)
        totals[i] = (totals[i] ?? 0) + add
      })
      const counts = input.rules.map((r, i) => windowCount(r, totals[i] ?? 0))
      if (overIndex < 0) return { status: 'ok', counts, flipped: false }
      const over = counts[overIndex] as WindowCount
      const flipped = a.monitoredUntil <= t
      if (flipped) a.monitoredUntil = t + over.windowMs
      return { status: 'ok', counts, over, flipped }
    },

    async getDisabled(account: string): Promise<DisabledRecord | null> {
      return disabled.get(account) ?? null
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
      return [...disabled.values()].sort((a, b) => b.at - a.at)
    },

    async close(): Promise<void> {
      accounts.clear()
    },
  }
  return store
}

function loadState(file: string): Map<string, DisabledRecord> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
    throw new StoreError(`cannot read ${file}: ${(err as Error).message}`, { cause: err })
  }
  let state: unknown
  try {
    state = JSON.parse(text)
  } catch (err) {
    throw new StoreError(`${file} is not valid JSON (${(err as Error).message}); fix or move it away`, { cause: err })
  }
  const rows = (state as Partial<StateFile> | null)?.disabled
  if (!rows || typeof rows !== 'object') throw new StoreError(`${file} has no "disabled" object; fix or move it away`)
  const map = new Map<string, DisabledRecord>()
  for (const [account, r] of Object.entries(rows) as [string, unknown][]) {
    if (!isRecordLike(r)) throw new StoreError(`${file}: the record of ${JSON.stringify(account)} is damaged; fix or move it away`)
    map.set(account, { ...r, account, evidence: (r.evidence ?? []).flatMap(toSummary), counts: r.counts ?? [] })
  }
  return map
}

function isRecordLike(r: unknown): r is DisabledRecord {
  if (!r || typeof r !== 'object' || Array.isArray(r)) return false
  const { evidence, counts } = r as Record<string, unknown>
  return (evidence === undefined || Array.isArray(evidence)) && (counts === undefined || Array.isArray(counts))
}
