/**
 * An account's counters: one hash per account, a ring of buckets and a running total per rule
 * (see docs/store.md, "Counters"). This module is the reference model: the memory store runs it,
 * the Redis store's `counts` reads with it, and the RECORD script (lib/store/redis/scripts/record.ts)
 * applies the same rules in Lua, with a fast path for the usual case.
 *
 * Fields of the hash:
 * - `s`: the ids of the series the hash holds, space-separated (the current rules' first, in order);
 * - `<id>`, `<id>@`, `<id>!` (a series' meta): the sum of its buckets in the window that ends at its
 *   newest bucket, that bucket's index, and the comma-separated signatures of the rule sets that
 *   have written it;
 * - `<id>.<slot>`: what was counted in the bucket whose index is `slot` modulo the series' buckets;
 * - `ed`: the digest of the newest evidence summary (the summaries are a list of their own, whose
 *   values are too long for Redis's compact hash encoding);
 * - `<bucketMs>.<index>.<m|r>`: a bucket written before this layout (0.1), read until it expires.
 *
 * A series id is `<m|r|i><bucketMs>x<buckets>` (`i`: [signals] invalid_recipients, kept in a hash of
 * its own, keys.ts `invalid`): each rule owns a series, and rules with the same kind,
 * bucket size and bucket count share one. The usual case is a hash that holds exactly the current
 * rules' series (`s` equals their list): a message then reads and writes a few fields, whatever the
 * number of buckets. After a change of rules, the series no current rule writes ("retired") are kept
 * until their window has passed, and count toward a current rule of their kind unless the two were
 * ever written by the same rule set (then they hold the same messages).
 */
import { createHash } from 'node:crypto'
import type { Rule } from '../config'

/**
 * What a message adds to a rule of its kind (none to a networks rule: see networksIn); what a
 * Store.invalid call adds to an invalid_recipients rule: its refused recipients.
 */
export function addOf(rule: Rule, recipients: number): number {
  return rule.kind === 'messages' ? 1 : rule.kind === 'networks' ? 0 : recipients
}

/** Whether a rule counts in a series of buckets (messages, recipients), not in the networks set. */
export function inSeries(rule: Rule): boolean {
  return rule.kind !== 'networks'
}

const seriesRuleSets = new WeakMap<readonly Rule[], readonly Rule[]>()

/** The rules of a set that count in series, worked out once per rule set. */
function seriesRules(rules: readonly Rule[]): readonly Rule[] {
  let r = seriesRuleSets.get(rules)
  if (!r) {
    r = rules.every(inSeries) ? rules : rules.filter(inSeries)
    seriesRuleSets.set(rules, r)
  }
  return r
}

/** How long a rule's window is as the store keeps it: its buckets' span (a networks rule: the window). */
export function ruleWindowMs(rule: Rule): number {
  return inSeries(rule) ? rule.bucketMs * rule.buckets : rule.windowMs
}

/**
 * The total at which a rule warns: [warn] at `fraction` of its max, rounded up; 0 (never) when
 * warnings are off, or when that total is the max itself below 100% (a small limit: 80% of 4 is
 * 4, and a warning at the limit would only come one message before the alert).
 */
export function warnTotal(rule: Rule, fraction: number | undefined): number {
  if (!fraction || fraction <= 0) return 0
  const total = Math.max(1, Math.ceil(fraction * rule.max - 1e-9))
  return total < rule.max || fraction >= 1 ? total : 0
}

/**
 * The distinct networks seen within a networks rule's window at `now` (last seen after
 * now - window), given each network's last-seen time.
 */
export function networksIn(seen: ReadonlyMap<string, number>, rule: Rule, now: number): number {
  let n = 0
  for (const at of seen.values()) if (at > now - rule.windowMs) n++
  return n
}

/**
 * The letter of a rule's kind in its series ids: m messages, r recipients, i invalid recipients
 * (n: networks rules count in a set, never in a series).
 */
const KIND_LETTER: Record<Rule['kind'], string> = {
  messages: 'm',
  recipients: 'r',
  networks: 'n',
  invalid_recipients: 'i',
}

/** The series a rule counts in: `<m|r|i><bucketMs>x<buckets>`. */
export function seriesId(rule: Rule): string {
  return `${KIND_LETTER[rule.kind]}${rule.bucketMs}x${rule.buckets}`
}

/** The series of a rule set, each once, in rule order, space-separated: the `s` of a settled hash. */
export function seriesList(rules: readonly Rule[]): string {
  return [...new Set(seriesRules(rules).map(seriesId))].join(' ')
}

/** A short name for a rule set (its series list): 8 hex digits of its SHA-1. */
export function seriesSig(list: string): string {
  return createHash('sha1').update(list).digest('hex').slice(0, 8)
}

/** A rule set's series, as the record script is given them. */
export interface NamedSeries {
  /** seriesList */
  readonly list: string
  /** seriesSig of the list */
  readonly sig: string
  /** One rule per series (the first of the rules that share it), in list order. */
  readonly series: readonly Rule[]
  /** For each rule, the index of its series in `series`; -1 for a networks rule. */
  readonly seriesOfRule: readonly number[]
  /** countersTtlMs */
  readonly ttlMs: number
}

const named = new WeakMap<readonly Rule[], NamedSeries>()

/** A rule set's series, worked out once per rule set (the config reuses its rule arrays). */
export function seriesOf(rules: readonly Rule[]): NamedSeries {
  let n = named.get(rules)
  if (!n) {
    const ids = rules.map((r) => (inSeries(r) ? seriesId(r) : ''))
    const unique = [...new Set(ids.filter(Boolean))]
    const list = unique.join(' ')
    n = {
      list,
      sig: seriesSig(list),
      series: unique.map((id) => rules[ids.indexOf(id)] as Rule),
      seriesOfRule: ids.map((id) => (id ? unique.indexOf(id) : -1)),
      ttlMs: countersTtlMs(rules),
    }
    named.set(rules, n)
  }
  return n
}

/** A short digest of a message summary (FNV-1a, 8 hex): the evidence skips one like its newest. */
export function summaryDigest(summary: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < summary.length; i++) h = Math.imul(h ^ summary.charCodeAt(i), 0x01000193)
  return (h >>> 0).toString(16).padStart(8, '0')
}

/** How many signatures a series keeps (the newest); an older one dropped can only make a total higher. */
export const MAX_SIGS = 4

/** How long an account's counters must live: the longest window plus one bucket. */
export function countersTtlMs(rules: readonly Rule[]): number {
  return seriesRules(rules).reduce((ttl, r) => Math.max(ttl, r.bucketMs * (r.buckets + 1)), 0) || 60_000
}

/** The hash as the model sees it (a Map for the memory store, HGETALL for Redis). */
export type CounterHash = Map<string, string>

interface Meta {
  last: number
  total: number
  sigs: string[]
}

interface Shape {
  readonly kind: string
  readonly bucketMs: number
  readonly buckets: number
}

const ID = /^([mri])(\d+)x(\d+)$/
/** The token in `s` that says earlier-layout buckets are still live (not a series id). */
export const LEGACY_PENDING = '0'
const LEGACY = /^(\d+)\.(\d+)\.([mr])$/

function shapeOf(id: string): Shape | null {
  const m = ID.exec(id)
  return m ? { kind: m[1] ?? '', bucketMs: Number(m[2]), buckets: Number(m[3]) } : null
}

function readMeta(hash: CounterHash, id: string): Meta | null {
  const total = hash.get(id)
  const last = hash.get(`${id}@`)
  if (total === undefined || last === undefined || !/^-?\d+$/.test(total) || !/^-?\d+$/.test(last)) return null
  return { last: Number(last), total: Number(total), sigs: (hash.get(`${id}!`) ?? '').split(',').filter(Boolean) }
}

function writeMeta(hash: CounterHash, id: string, meta: Meta): void {
  hash.set(id, String(meta.total))
  hash.set(`${id}@`, String(meta.last))
  hash.set(`${id}!`, meta.sigs.join(','))
}

function deleteSeries(hash: CounterHash, id: string, buckets: number): void {
  for (const f of [id, `${id}@`, `${id}!`]) hash.delete(f)
  dropSlots(hash, id, buckets)
}

function slotValue(hash: CounterHash, id: string, slot: number): number {
  return Number(hash.get(`${id}.${slot}`) ?? 0) || 0
}

function dropSlots(hash: CounterHash, id: string, buckets: number): void {
  for (let s = 0; s < buckets; s++) hash.delete(`${id}.${s}`)
}

/**
 * Moves a series to the bucket of `now` (never back: a bucket ahead of now, after a clock step,
 * stays the newest and keeps counting), subtracting and deleting the buckets that left its window.
 */
function advance(hash: CounterHash, id: string, shape: Shape, meta: Meta, now: number): void {
  const cur = Math.floor(now / shape.bucketMs)
  if (cur <= meta.last) return
  if (cur - meta.last >= shape.buckets) {
    dropSlots(hash, id, shape.buckets)
    meta.total = 0
  } else {
    for (let idx = meta.last + 1; idx <= cur; idx++) {
      const slot = idx % shape.buckets
      meta.total -= slotValue(hash, id, slot)
      hash.delete(`${id}.${slot}`)
    }
  }
  meta.last = cur
}

/** The bucket index a slot of a series holds, given its newest bucket. */
function slotIndex(last: number, buckets: number, slot: number): number {
  return last - (((((last % buckets) - slot) % buckets) + buckets) % buckets)
}

/** The start (ms) of a rule's window at `now`: the start of its oldest bucket. */
function windowStart(rule: Rule, now: number): number {
  return (Math.floor(now / rule.bucketMs) - rule.buckets + 1) * rule.bucketMs
}

interface Retired {
  readonly id: string
  readonly shape: Shape
  readonly meta: Meta
}

/**
 * Whether a retired series can go: its own window has passed (its rule would count nothing of it)
 * and its newest bucket ended before the window of every current rule of its kind.
 */
function passed(q: Retired, rules: readonly Rule[], now: number): boolean {
  const end = (q.meta.last + 1) * q.shape.bucketMs
  return (
    Math.floor(now / q.shape.bucketMs) - q.meta.last >= q.shape.buckets &&
    rules.every((r) => seriesId(r)[0] !== q.shape.kind || end <= windowStart(r, now))
  )
}

/** What a retired series holds toward `rule` at `now`: its buckets that end after the window's start. */
function retiredToward(hash: CounterHash, q: Retired, rule: Rule, now: number): number {
  const start = windowStart(rule, now)
  let sum = 0
  for (let slot = 0; slot < q.shape.buckets; slot++) {
    const v = slotValue(hash, q.id, slot)
    if (v > 0 && (slotIndex(q.meta.last, q.shape.buckets, slot) + 1) * q.shape.bucketMs > start) sum += v
  }
  return sum
}

/** Buckets of the earlier layout: counted whole toward every rule of their kind they reach into. */
function legacyToward(hash: CounterHash, rules: readonly Rule[], now: number): { totals: number[]; live: boolean } {
  const totals = rules.map(() => 0)
  let anyLive = false
  for (const [field, value] of hash) {
    const m = LEGACY.exec(field)
    if (!m) continue
    const end = (Number(m[2]) + 1) * Number(m[1])
    let live = false
    rules.forEach((r, i) => {
      if (KIND_LETTER[r.kind] === m[3] && end > windowStart(r, now)) {
        totals[i] = (totals[i] ?? 0) + (Number(value) || 0)
        live = true
      }
    })
    if (live) anyLive = true
    else hash.delete(field)
  }
  return { totals, live: anyLive }
}

/**
 * Brings the hash to `now` for a rule set (signature `sig`) and answers each rule's total before
 * the message: advances its series (creating a missing one), signs them, deletes retired series
 * whose window has passed, and adds what the retired and earlier-layout buckets hold.
 */
export function settle(hash: CounterHash, all: readonly Rule[], now: number, sig: string): number[] {
  const rules = seriesRules(all)
  if (rules !== all) {
    const totals = settle(hash, rules, now, sig)
    let i = 0
    return all.map((r) => (inSeries(r) ? (totals[i++] ?? 0) : 0))
  }
  const list = seriesList(rules)
  const current = list.split(' ').filter(Boolean)
  const metas = new Map<string, Meta>()
  for (const id of current) {
    const shape = shapeOf(id) as Shape
    const meta = readMeta(hash, id) ?? { last: Math.floor(now / shape.bucketMs), total: 0, sigs: [] }
    advance(hash, id, shape, meta, now)
    if (!meta.sigs.includes(sig)) meta.sigs = [...meta.sigs, sig].slice(-MAX_SIGS)
    writeMeta(hash, id, meta)
    metas.set(id, meta)
  }
  const retired: Retired[] = []
  for (const id of (hash.get('s') ?? '').split(' ')) {
    const shape = shapeOf(id)
    const meta = shape && !metas.has(id) ? readMeta(hash, id) : null
    if (!shape || !meta) continue
    if (passed({ id, shape, meta }, rules, now)) deleteSeries(hash, id, shape.buckets)
    else retired.push({ id, shape, meta })
  }
  const legacy = legacyToward(hash, rules, now)
  // While earlier-layout buckets live, `s` never equals a rule list, so every message takes this path.
  const pending = legacy.live ? [LEGACY_PENDING] : []
  hash.set('s', [...current, ...retired.map((q) => q.id), ...pending].join(' '))
  return rules.map((r, i) => {
    const own = metas.get(seriesId(r)) as Meta
    return own.total + (legacy.totals[i] ?? 0) + retiredTotal(hash, retired, r, own, now)
  })
}

/**
 * What the retired series add to a rule: none that shares a rule set with the rule's own series
 * (those messages are in it already). Retired series that share a rule set with each other hold
 * the same messages and count once: the smallest count of those that reach back to the start of
 * the rule's window (each holds every message since), or else the largest.
 */
function retiredTotal(hash: CounterHash, retired: readonly Retired[], rule: Rule, own: Meta, now: number): number {
  const groups: { sigs: Set<string>; covering: number; any: number }[] = []
  const start = windowStart(rule, now)
  for (const q of retired) {
    if (q.shape.kind !== seriesId(rule)[0] || q.meta.sigs.some((s) => own.sigs.includes(s))) continue
    const value = retiredToward(hash, q, rule, now)
    const covers = (q.meta.last - q.shape.buckets + 1) * q.shape.bucketMs <= start
    let group = groups.find((g) => q.meta.sigs.some((s) => g.sigs.has(s)))
    if (!group) {
      group = { sigs: new Set(), covering: Infinity, any: 0 }
      groups.push(group)
    }
    for (const s of q.meta.sigs) group.sigs.add(s)
    group.any = Math.max(group.any, value)
    if (covers) group.covering = Math.min(group.covering, value)
  }
  return groups.reduce((sum, g) => sum + (g.covering === Infinity ? g.any : g.covering), 0)
}

/** Adds a message to each series of the rule set, once per series (after settle). */
export function count(hash: CounterHash, rules: readonly Rule[], recipients: number): void {
  const done = new Set<string>()
  for (const r of rules) {
    const id = seriesId(r)
    const add = addOf(r, recipients)
    if (done.has(id) || add === 0) continue
    done.add(id)
    const meta = readMeta(hash, id) as Meta
    const slot = `${id}.${meta.last % r.buckets}`
    hash.set(slot, String((Number(hash.get(slot) ?? 0) || 0) + add))
    meta.total += add
    writeMeta(hash, id, meta)
  }
}

/** Each rule's total at `now`, without changing the hash or the networks (for `counts`). */
export function totalsAt(
  hash: CounterHash,
  rules: readonly Rule[],
  now: number,
  networks: ReadonlyMap<string, number> = new Map(),
): number[] {
  if (rules.length === 0) return []
  const totals = settle(new Map(hash), rules, now, seriesOf(rules).sig)
  return rules.map((r, i) => (inSeries(r) ? (totals[i] ?? 0) : networksIn(networks, r, now)))
}
