// The human-readable report: where it goes (stdout, or stderr when stdout carries --json), number
// formats, aligned tables, and the targets with PASS or MISS.

import type { Target } from './result'

let out: NodeJS.WritableStream = process.stdout

/** Sends the report to `stream` from now on. */
export function reportTo(stream: NodeJS.WritableStream): void {
  out = stream
}

/** One line of the report. */
export function say(text = ''): void {
  out.write(`${text}\n`)
}

const fixed = (digits: number) => (x: number) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a')
export const f0 = fixed(0)
export const f1 = fixed(1)
export const f2 = fixed(2)
export const f3 = fixed(3)
export const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : 'n/a')
export const signed = (x: number, digits = 2): string =>
  Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(digits)}` : 'n/a'

/** Prints rows as columns: the first left-aligned, the others right-aligned. */
export function table(rows: readonly (readonly (string | number)[])[], { indent = '  ' } = {}): void {
  const widths: number[] = []
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, String(c).length)))
  for (const r of rows) {
    const cells = r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i] ?? 0) : String(c).padStart(widths[i] ?? 0)))
    say(indent + cells.join('  ').trimEnd())
  }
}

/** A target: `ok` whether it was met, `measured` the figure it judges, `value` how the report shows it. */
export function target(ok: boolean, text: string, measured: number, value: string): Target {
  return { ok, text, measured, value }
}
