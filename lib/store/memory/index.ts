/**
 * The embedded memory store for one Haraka process: counters in memory (counters.ts), the durable
 * state (disable records, tokens, audit, held mail; durable.ts) in a state file written atomically
 * and shared with the CLI under a lock file (state-file.ts). This file composes them into a Store.
 */
import type { Rule } from '../../config'
import { totalsAt } from '../series'
import { randomId, tokenDigest } from '../../ids'
import type { PasswordHash } from '../../password'
import {
  PASSWORDS_CAP,
  windowCount,
  withProbation,
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
import {
  add,
  createCounters,
  measure,
  networksShown,
  type AccountCounters,
  type Counters,
  type Measure,
} from './counters'
import { createAuthFailures } from './auth-failures'
import { publicRecord, type Durable, type StoredRecord } from './durable'
import { openStateFile, type StateFile } from './state-file'

export { checkStateFile } from './state-file'

/** Where the memory store keeps its durable state, and its clock. */
export interface MemoryStoreOptions {
  /** File that keeps the durable state; written atomically (temporary file, then rename). */
  readonly stateFile: string
  /** Milliseconds since the epoch; injectable for tests. */
  readonly now?: () => number
}

/** The memory store keeps a shorter audit trail than Redis: it rewrites one file. */
const MEMORY_AUDIT_CAP = 1000

/** What the store methods work on. */
interface Parts {
  readonly state: StateFile
  readonly counters: Counters
  /** [signals] invalid_recipients: counters of their own, with the evidence of the refused recipients. */
  readonly invalid: Counters
  readonly now: () => number
  /** Tells the watchEnables listeners of an account that may just have been enabled. */
  readonly enabled: (account: string) => void
}

/** How often a watched store looks at its state file for enables by another process (the CLI). */
export const WATCH_MS = 1000

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
  const counters = createCounters()
  const invalid = createCounters()
  const enables: ((account: string) => void)[] = []
  const enabled = (account: string): void => {
    for (const listener of enables) listener(account)
  }
  // An enable or a reset by another process: its counters go, and it may have been enabled.
  const state = openStateFile(options.stateFile, now, (account) => {
    counters.delete(account)
    invalid.delete(account)
    enabled(account)
  })
  const parts: Parts = { state, counters, invalid, now, enabled }
  let watch: NodeJS.Timeout | undefined
  const authFailures = createAuthFailures()
  return {
    kind: 'memory',
    ...countingMethods(parts),
    ...disableMethods(parts),
    ...auditMethods(parts),
    ...heldMethods(parts),
    ...passwordMethods(parts),

    async authFailure(input) {
      return authFailures.record(input, now())
    },

    async ready(): Promise<void> {
      state.refresh()
    },

    watchEnables(listener) {
      enables.push(listener)
      // The file's stamp, looked at every WATCH_MS: a change by another process is taken in
      // (refresh), which tells of each account it cleared. A stat, not fs.watch: the file is
      // replaced by a rename, and watch events are not promised on every file system.
      watch ??= setInterval(() => {
        try {
          state.refresh()
        } catch {
          // An unreadable file is reported by the next store call; the next tick tries again.
        }
      }, WATCH_MS)
      watch.unref()
    },

    async close(): Promise<void> {
      clearInterval(watch)
      await state.close()
      counters.clear()
      invalid.clear()
      authFailures.clear()
    },
  }
}

/** The hashes of passwords in use at a disable, kept in the state file until the password changes. */
function passwordMethods(
  p: Parts,
): Pick<Store, 'rememberPassword' | 'oldPasswords' | 'forgetPasswords' | 'startProbation' | 'probationUntil'> {
  return {
    async startProbation(account: string, until: number): Promise<void> {
      await p.state.change((d) => {
        for (const [a, u] of d.probation) if (u <= p.now()) d.probation.delete(a)
        if (until > 0) d.probation.set(account, until)
        else d.probation.delete(account)
      })
    },

    async probationUntil(account: string, now: number): Promise<number> {
      const until = p.state.refresh().probation.get(account) ?? 0
      return until > now ? until : 0
    },

    async rememberPassword(account: string, hash: PasswordHash): Promise<void> {
      await p.state.change((d) => {
        const kept = (d.passwords.get(account) ?? []).filter((h) => h.incident !== hash.incident)
        d.passwords.set(account, [hash, ...kept].slice(0, PASSWORDS_CAP))
      })
    },

    async oldPasswords(account: string): Promise<PasswordHash[]> {
      return [...(p.state.refresh().passwords.get(account) ?? [])]
    },

    async forgetPasswords(account: string): Promise<boolean> {
      let had = false
      await p.state.change((d) => {
        had = d.passwords.delete(account)
      })
      return had
    },
  }
}

/** Forgets the account's counters here, and notes in the file that they were cleared (for other processes). */
function clearCounters(p: Parts, d: Durable, account: string): void {
  p.counters.delete(account)
  p.invalid.delete(account)
  d.cleared.set(account, p.now())
}

/** Counting messages against the limits, and the counters and evidence that come of it. */
function countingMethods(p: Parts): Pick<Store, 'record' | 'invalid' | 'reset' | 'counts' | 'evidence'> {
  return {
    record: (input) => recordMessage(p, input, p.counters),

    invalid: (input) => recordMessage(p, input, p.invalid),

    async reset(account: string): Promise<void> {
      await p.state.change((d) => clearCounters(p, d, account))
    },

    async counts(account: string, rules: readonly Rule[]): Promise<WindowCount[]> {
      p.state.refresh()
      const t = p.now()
      const a = p.counters.live(account, t)
      const totals = totalsAt(a?.counts ?? new Map<string, string>(), rules, t, a?.networks ?? new Map())
      return rules.map((r, i) => windowCount(r, totals[i] ?? 0))
    },

    async evidence(account: string): Promise<MessageSummary[]> {
      p.state.refresh()
      return [...(p.counters.live(account, p.now())?.evidence ?? [])]
    },
  }
}

/**
 * Counts one message (or invalid recipients, in `counters` of their own) and checks the limits
 * (see RecordResult); only a disable waits for the file.
 */
async function recordMessage(p: Parts, given: RecordInput, counters: Counters): Promise<RecordResult> {
  const d = p.state.refresh()
  const disabled = given.mode === 'enforce' ? d.disabled.get(given.account) : undefined
  if (disabled) return { status: 'disabled', counts: [], flipped: false, by: disabled.by }
  const t = p.now()
  const input = withProbation(given, d.probation.get(given.account) ?? 0, t)
  const a = counters.open(input.account, t)
  const m = measure(a, input, t)
  if (m.overIndex >= 0 && input.mode === 'enforce') return disableForLimit(p, input, a, m, t)
  // One [warn] warning per window per account, whichever counters reach it (the Redis store's one `warned` key).
  const other = (counters === p.counters ? p.invalid : p.counters).live(input.account, t)
  a.warnedUntil = Math.max(a.warnedUntil, other?.warnedUntil ?? 0)
  const result = add(a, input, m, t)
  if (other) other.warnedUntil = a.warnedUntil
  return result
}

/** Disables the account for crossing a limit with this message (not counted); answers 'refused'. */
async function disableForLimit(
  p: Parts,
  input: RecordInput,
  a: AccountCounters,
  m: Measure,
  t: number,
): Promise<RecordResult> {
  const counts = input.rules.map((r, i) => windowCount(r, m.totals[i] ?? 0))
  const over = counts[m.overIndex] as WindowCount
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
    ...networksOf(a, input, m, t),
  }
  await p.state.change((d) => {
    d.disabled.set(input.account, record)
    d.tokens.set(tokenDigest(input.token), { account: input.account, forgetAt: t + 2 * input.tokenTtlMs })
  })
  return { status: 'refused', counts, over, flipped: true, record: publicRecord(record) }
}

/** The networks a disable for a networks rule names: those in its window and this message's. */
function networksOf(a: AccountCounters, input: RecordInput, m: Measure, t: number): { networks?: string[] } {
  const networks = networksShown(a, input.rules[m.overIndex] as Rule, t, input.network ?? '')
  return networks ? { networks } : {}
}

/** The disable records: reading, disabling and enabling by hand or by token. */
function disableMethods(
  p: Parts,
): Pick<Store, 'getDisabled' | 'disable' | 'enable' | 'tokenAccount' | 'redeem' | 'listDisabled'> {
  return {
    async getDisabled(account: string): Promise<DisabledRecord | null> {
      const r = p.state.refresh().disabled.get(account)
      return r ? publicRecord(r) : null
    },

    async disable(input: DisableInput): Promise<boolean> {
      if (p.state.refresh().disabled.has(input.account)) return false
      await p.state.change((d) => {
        d.disabled.set(input.account, { ...input, at: p.now(), counts: [], evidence: [] })
      })
      return true
    },

    async enable(account: string): Promise<boolean> {
      const was = await p.state.change((d) => {
        const was = d.disabled.delete(account)
        clearCounters(p, d, account)
        return was
      })
      if (was) p.enabled(account)
      return was
    },

    async tokenAccount(token: string): Promise<string | null> {
      const ptr = p.state.refresh().tokens.get(tokenDigest(token))
      return ptr && ptr.forgetAt > p.now() ? ptr.account : null
    },

    async redeem(account: string, token: string): Promise<RedeemResult> {
      const r = p.state.refresh().disabled.get(account)
      if (!r) return 'not-disabled'
      if (!r.tokenSha256 || r.tokenSha256 !== tokenDigest(token)) return 'mismatch'
      if ((r.tokenExpiresAt ?? 0) < p.now()) return 'expired'
      await p.state.change((d) => {
        d.disabled.delete(account)
        clearCounters(p, d, account)
      })
      p.enabled(account)
      return 'ok'
    },

    async listDisabled(): Promise<DisabledRecord[]> {
      return [...p.state.refresh().disabled.values()].map(publicRecord).sort((a, b) => b.at - a.at)
    },
  }
}

/** The audit trail, capped at MEMORY_AUDIT_CAP entries. */
function auditMethods(p: Parts): Pick<Store, 'audit' | 'auditLog'> {
  return {
    async audit(entry: AuditEntry): Promise<void> {
      await p.state.change((d) => {
        d.audit.unshift(entry)
        d.audit.splice(MEMORY_AUDIT_CAP)
      })
    },

    async auditLog(options: { account?: string; limit?: number } = {}): Promise<AuditEntry[]> {
      const all = p.state.refresh().audit
      const mine = options.account === undefined ? all : all.filter((e) => e.account === options.account)
      return mine.slice(0, options.limit ?? mine.length)
    },
  }
}

/** Queued mail of disabled accounts: held, released, or marked for dropping. */
function heldMethods(p: Parts): Pick<Store, 'heldState' | 'hold' | 'release' | 'heldCount' | 'dropHeld'> {
  return {
    async heldState(account: string): Promise<HeldState> {
      const d = p.state.refresh()
      const drop = d.dropBefore.get(account)
      return { disabled: d.disabled.has(account), dropBefore: drop && drop.until > p.now() ? drop.at : 0 }
    },

    async hold(account: string, id: string, ttlMs: number): Promise<void> {
      if (p.state.refresh().held.get(account)?.has(id)) return
      p.state.noteHeld(account, id, p.now() + ttlMs)
    },

    async release(account: string, id: string): Promise<boolean> {
      if (!p.state.refresh().held.get(account)?.has(id)) return false
      p.state.noteHeld(account, id, null)
      return true
    },

    async heldCount(account: string): Promise<number> {
      const t = p.now()
      return [...(p.state.refresh().held.get(account)?.values() ?? [])].filter((until) => until > t).length
    },

    async dropHeld(account: string, ttlMs: number): Promise<number> {
      const t = p.now()
      return p.state.change((d) => {
        d.dropBefore.set(account, { at: t, until: t + ttlMs })
        return [...(d.held.get(account)?.values() ?? [])].filter((until) => until > t).length
      })
    },
  }
}
