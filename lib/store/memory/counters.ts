/**
 * The memory store's live counters: per account, the message and recipient counts (the hash of
 * lib/store/series.ts, the same model the Redis store keeps) and the recent evidence, in this
 * process's memory only, dropped when they expire.
 */
import type { Rule } from '../../config'
import { addOf, count, countersTtlMs, seriesOf, settle, type CounterHash } from '../series'
import {
  EVIDENCE_CAP,
  windowCount,
  type MessageSummary,
  type RecordInput,
  type RecordResult,
  type WindowCount,
} from '..'

/** One account's counters. */
export interface AccountCounters {
  counts: CounterHash
  evidence: MessageSummary[]
  expiresAt: number
  monitoredUntil: number
}

/** Every account's counters. */
export interface Counters {
  /** The account's counters for a new message: its live ones, or new ones. */
  open(account: string, t: number): AccountCounters
  /** The account's counters, or undefined when it has none or they expired. */
  live(account: string, t: number): AccountCounters | undefined
  /** Forgets the account's counters. */
  delete(account: string): void
  /** Forgets every account's counters. */
  clear(): void
}

/** What a message would do to an account's totals (see measure). */
export interface Measure {
  /** The totals before the message, one per rule. */
  readonly totals: number[]
  /** What the message adds to each total. */
  readonly adds: number[]
  /** The index of the first rule the message would exceed; -1 when none. */
  readonly overIndex: number
}

const SWEEP_EVERY = 1000

/** Counters kept in a Map; expired accounts are swept every SWEEP_EVERY messages. */
export function createCounters(): Counters {
  const accounts = new Map<string, AccountCounters>()
  let recordsSinceSweep = 0

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

  return {
    open(account: string, t: number): AccountCounters {
      sweep(t)
      const a = live(account, t) ?? { counts: new Map<string, string>(), evidence: [], expiresAt: 0, monitoredUntil: 0 }
      accounts.set(account, a)
      return a
    },
    live,
    delete(account: string): void {
      accounts.delete(account)
    },
    clear(): void {
      accounts.clear()
    },
  }
}

/**
 * Finds the account's totals before the message and the first rule it would exceed, and keeps
 * the message's summary as evidence (counted or not); the counters live on from `t`.
 */
export function measure(a: AccountCounters, input: RecordInput, t: number): Measure {
  const totals = settle(a.counts, input.rules, t, seriesOf(input.rules).sig)
  const adds = input.rules.map((r) => addOf(r, input.recipients))
  const overIndex = input.rules.findIndex((r, i) => (totals[i] ?? 0) + (adds[i] ?? 0) > r.max)
  // Like the Redis store's ring: a summary the same as the newest is not kept twice.
  if (!sameSummary(a.evidence[0], input.summary)) a.evidence = [input.summary, ...a.evidence].slice(0, EVIDENCE_CAP)
  a.expiresAt = t + countersTtlMs(input.rules)
  return { totals, adds, overIndex }
}

/**
 * Counts the message; answers 'ok', with the limit crossed (monitor mode) and, the first time
 * in its window, the evidence for the report.
 */
export function add(a: AccountCounters, input: RecordInput, m: Measure, t: number): RecordResult {
  const { totals, adds, overIndex } = m
  count(a.counts, input.rules, input.recipients)
  input.rules.forEach((_, i) => (totals[i] = (totals[i] ?? 0) + (adds[i] ?? 0)))
  const counts = input.rules.map((r, i) => windowCount(r, totals[i] ?? 0))
  if (overIndex < 0) return { status: 'ok', counts, flipped: false, at: t }
  const over = counts[overIndex] as WindowCount
  const rule = input.rules[overIndex] as Rule
  const flipped = a.monitoredUntil <= t
  if (!flipped) return { status: 'ok', counts, over, flipped, at: t }
  a.monitoredUntil = t + rule.bucketMs * rule.buckets
  return { status: 'ok', counts, over, flipped, at: t, evidence: [...a.evidence] }
}

function sameSummary(a: MessageSummary | undefined, b: MessageSummary): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b)
}
