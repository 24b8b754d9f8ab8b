import type { Rule } from './config'

/** The counter field of a rule's bucket: "<bucketMs>.<index>.<m|r>" (see docs/store.md). */
export function bucketField(rule: Rule, nowMs: number): string {
  return `${rule.bucketMs}.${Math.floor(nowMs / rule.bucketMs)}.${rule.kind === 'messages' ? 'm' : 'r'}`
}

function parseField(field: string): { bucketMs: number; index: number; kind: string } | null {
  const m = /^(\d+)\.(\d+)\.([a-z])$/.exec(field)
  return m ? { bucketMs: Number(m[1]), index: Number(m[2]), kind: m[3] ?? '' } : null
}

/** Each rule's total over the buckets inside its window at nowMs (buckets ahead of now count too, as in the record script). */
export function windowTotals(fields: Iterable<[string, number]>, rules: readonly Rule[], nowMs: number): number[] {
  const totals = rules.map(() => 0)
  for (const [field, value] of fields) {
    const f = parseField(field)
    if (!f) continue
    rules.forEach((r, i) => {
      const cur = Math.floor(nowMs / r.bucketMs)
      const kind = r.kind === 'messages' ? 'm' : 'r'
      if (f.bucketMs === r.bucketMs && f.kind === kind && f.index > cur - r.buckets) {
        totals[i] = (totals[i] ?? 0) + value
      }
    })
  }
  return totals
}

/** Fields that no rule's window covers any more at nowMs (safe to delete). */
export function staleFields(fields: Iterable<string>, rules: readonly Rule[], nowMs: number): string[] {
  const stale: string[] = []
  for (const field of fields) {
    const f = parseField(field)
    const live = f && rules.some((r) => r.bucketMs === f.bucketMs && f.index > Math.floor(nowMs / r.bucketMs) - r.buckets)
    if (!live) stale.push(field)
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
