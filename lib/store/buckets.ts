import type { Rule } from '../config'

/**
 * Counter fields and how a rule reads them (see docs/store.md, "Windows and buckets").
 *
 * A field `<bucketMs>.<index>.<m|r>` holds what was counted in the time span
 * [index * bucketMs, (index + 1) * bucketMs). A rule reads the fields of its own bucket size
 * whose index is in its window; a field of a bucket size that no current rule of its kind uses
 * (left over from an earlier configuration) counts toward every rule of its kind whose window it
 * overlaps at all, so a change of window or buckets never gives an account a fresh quota.
 * The record script (lib/store/redis/scripts/record.ts) applies the same rules.
 */

interface Field {
  readonly bucketMs: number
  readonly index: number
  readonly kind: string
}

function kindCode(rule: Rule): string {
  return rule.kind === 'messages' ? 'm' : 'r'
}

/** The counter field of a rule's bucket: "<bucketMs>.<index>.<m|r>" (see docs/store.md). */
export function bucketField(rule: Rule, nowMs: number): string {
  return `${rule.bucketMs}.${Math.floor(nowMs / rule.bucketMs)}.${kindCode(rule)}`
}

function parseField(field: string): Field | null {
  const m = /^(\d+)\.(\d+)\.([a-z])$/.exec(field)
  return m ? { bucketMs: Number(m[1]), index: Number(m[2]), kind: m[3] ?? '' } : null
}

/** The store-clock ms at which a rule's window begins at nowMs: the start of its oldest bucket. */
function windowStartMs(rule: Rule, nowMs: number): number {
  return (Math.floor(nowMs / rule.bucketMs) - rule.buckets + 1) * rule.bucketMs
}

/** Which rules a field counts toward at nowMs: a predicate per field, built once per rule set. */
function fieldReader(rules: readonly Rule[], nowMs: number): (f: Field, i: number) => boolean {
  const current = new Set(rules.map((r) => `${r.bucketMs}.${kindCode(r)}`))
  const firsts = rules.map((r) => Math.floor(nowMs / r.bucketMs) - r.buckets + 1)
  const starts = rules.map((r) => windowStartMs(r, nowMs))
  return (f, i) => {
    const r = rules[i] as Rule
    if (kindCode(r) !== f.kind) return false
    // Buckets ahead of now (after a clock step back) still count: an attacker gains nothing.
    if (r.bucketMs === f.bucketMs) return f.index >= (firsts[i] as number)
    // A bucket another current rule writes holds the same messages as this rule's own buckets.
    if (current.has(`${f.bucketMs}.${f.kind}`)) return false
    return (f.index + 1) * f.bucketMs > (starts[i] as number)
  }
}

/** Each rule's total over the fields that count toward it at nowMs (see the module comment). */
export function windowTotals(fields: Iterable<[string, number]>, rules: readonly Rule[], nowMs: number): number[] {
  const totals = rules.map(() => 0)
  const counts = fieldReader(rules, nowMs)
  for (const [field, value] of fields) {
    const f = parseField(field)
    if (!f) continue
    rules.forEach((_, i) => {
      if (counts(f, i)) totals[i] = (totals[i] ?? 0) + value
    })
  }
  return totals
}

/** Fields that count toward no rule at nowMs (out of every window, or malformed): safe to delete. */
export function staleFields(fields: Iterable<string>, rules: readonly Rule[], nowMs: number): string[] {
  const counts = fieldReader(rules, nowMs)
  const stale: string[] = []
  for (const field of fields) {
    const f = parseField(field)
    if (!f || !rules.some((_, i) => counts(f, i))) stale.push(field)
  }
  return stale
}

/** How long an account's counters must live: the longest window plus one bucket. */
export function countersTtlMs(rules: readonly Rule[]): number {
  return rules.reduce((ttl, r) => Math.max(ttl, r.bucketMs * (r.buckets + 1)), 0) || 60_000
}

/** The counter fields one message adds to, with the amount: each (bucket size, kind) once. */
export function increments(rules: readonly Rule[], recipients: number, nowMs: number): Map<string, number> {
  const fields = new Map<string, number>()
  for (const r of rules) {
    const add = r.kind === 'messages' ? 1 : recipients
    const f = bucketField(r, nowMs)
    if (add > 0 && !fields.has(f)) fields.set(f, add)
  }
  return fields
}
