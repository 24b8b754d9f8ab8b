/**
 * The memory store's live counters: per account, the message and recipient counts (the hash of
 * lib/store/series.ts, the same model the Redis store keeps) and the recent evidence, in this
 * process's memory only, dropped when they expire.
 */
import type { Rule } from '../../config'
import {
  addOf,
  count,
  countersTtlMs,
  inSeries,
  networksIn,
  ruleWindowMs,
  seriesOf,
  settle,
  warnTotal,
  type CounterHash,
} from '../series'
import {
  EVIDENCE_CAP,
  NETWORKS_CAP,
  NETWORKS_SHOWN,
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
  /** Client network -> last message from it (ms), most recent last, at most NETWORKS_CAP. */
  networks: Map<string, number>
  /** Until when the [warn] warning of the current window has gone out. */
  warnedUntil: number
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
      const a = live(account, t) ?? {
        counts: new Map<string, string>(),
        evidence: [],
        expiresAt: 0,
        monitoredUntil: 0,
        networks: new Map<string, number>(),
        warnedUntil: 0,
      }
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
  const net = input.network ?? ''
  const seen = net ? a.networks.get(net) : undefined
  const adds = input.rules.map((r, i) => {
    if (inSeries(r)) return addOf(r, input.recipients)
    totals[i] = networksIn(a.networks, r, t)
    return net && (seen === undefined || seen <= t - r.windowMs) ? 1 : 0
  })
  const overIndex = input.rules.findIndex((r, i) => (totals[i] ?? 0) + (adds[i] ?? 0) > r.max)
  // Like the Redis store's ring: a summary the same as the newest is not kept twice.
  if (!sameSummary(a.evidence[0], input.summary)) a.evidence = [input.summary, ...a.evidence].slice(0, EVIDENCE_CAP)
  a.expiresAt = Math.max(a.expiresAt, t + countersTtlMs(input.rules), t + longestNetworksWindow(input.rules))
  return { totals, adds, overIndex }
}

/**
 * Counts the message; answers 'ok', with the limit crossed (monitor mode) and, the first time
 * in its window, the evidence for the report; or with the rule brought to its [warn] total, the
 * first time in a window for the account.
 */
export function add(a: AccountCounters, input: RecordInput, m: Measure, t: number): RecordResult {
  const { totals, adds, overIndex } = m
  count(a.counts, input.rules, input.recipients)
  noteNetwork(a, input, t)
  const before = [...totals]
  input.rules.forEach((_, i) => (totals[i] = (totals[i] ?? 0) + (adds[i] ?? 0)))
  const counts = input.rules.map((r, i) => windowCount(r, totals[i] ?? 0))
  const warnIndex = input.rules.findIndex((r, i) => {
    const at = warnTotal(r, input.warnAt)
    const after = totals[i] ?? 0
    return at > 0 && (before[i] ?? 0) < at && after >= at && after <= r.max
  })
  let warn: WindowCount | undefined
  if (warnIndex >= 0 && a.warnedUntil <= t) {
    a.warnedUntil = t + ruleWindowMs(input.rules[warnIndex] as Rule)
    warn = counts[warnIndex]
  }
  const over = overIndex >= 0 ? counts[overIndex] : undefined
  const flipped = over !== undefined && a.monitoredUntil <= t
  if (flipped) a.monitoredUntil = t + ruleWindowMs(input.rules[overIndex] as Rule)
  const shown = flipped ? overIndex : warn ? warnIndex : -1
  const networks = shown >= 0 ? networksShown(a, input.rules[shown] as Rule, t, '') : undefined
  return {
    status: 'ok',
    counts,
    ...(over ? { over } : {}),
    flipped,
    at: t,
    ...(warn ? { warn } : {}),
    ...(flipped || warn ? { evidence: [...a.evidence] } : {}),
    ...(networks ? { networks } : {}),
  }
}

/**
 * The networks seen in a networks rule's window, newest first, `extra` (a network not counted)
 * first; undefined for a rule that counts in series.
 */
export function networksShown(a: AccountCounters, rule: Rule, t: number, extra: string): string[] | undefined {
  if (inSeries(rule)) return undefined
  const inWindow = [...a.networks].filter(([, at]) => at > t - rule.windowMs).reverse()
  return [...(extra ? [extra] : []), ...inWindow.map(([n]) => n)].slice(0, NETWORKS_SHOWN)
}

/** Notes the counted message's network as seen now (most recent last), trimmed like the Redis set. */
function noteNetwork(a: AccountCounters, input: RecordInput, t: number): void {
  const net = input.network ?? ''
  const longest = longestNetworksWindow(input.rules)
  if (!net || longest === 0) return
  const isNew = !a.networks.has(net)
  a.networks.delete(net)
  a.networks.set(net, t)
  if (!isNew) return
  for (const [n, at] of a.networks) if (at <= t - longest) a.networks.delete(n)
  while (a.networks.size > NETWORKS_CAP) a.networks.delete(a.networks.keys().next().value as string)
}

function longestNetworksWindow(rules: readonly Rule[]): number {
  return rules.reduce((w, r) => (inSeries(r) ? w : Math.max(w, r.windowMs)), 0)
}

function sameSummary(a: MessageSummary | undefined, b: MessageSummary): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b)
}
