// Percentiles and CPU time: the measuring instruments.

import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import type { Latency } from './result'

/** The p-th percentile (nearest rank) of ascending `sorted`; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i] ?? NaN
}

/** p50 and p99 of latency samples in ms. */
export function latency(samples: readonly number[]): Latency {
  const s = Float64Array.from(samples).sort()
  return { n: s.length, p50: percentile(s, 50), p99: percentile(s, 99) }
}

const CLK_TCK = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
  } catch {
    return 100
  }
})()

/** User + system CPU seconds of a process (all its threads), from /proc; 0 when unknown. */
export function procCpu(pid: number | null | undefined): number {
  if (!pid) return 0
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / CLK_TCK
  } catch {
    return 0
  }
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat; 0 when unknown. */
export function machineBusy(): number {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    const idle = (v[3] ?? 0) + (v[4] ?? 0)
    return (v.reduce((a, b) => a + b, 0) - idle) / CLK_TCK
  } catch {
    return 0
  }
}

/** This process's user + system CPU seconds. */
export function selfCpu(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

/** Runs `fn` over `items` with at most `width` calls in flight. */
export async function parallel<T>(
  items: readonly T[],
  width: number,
  fn: (item: T, index: number) => Promise<unknown>,
): Promise<void> {
  let next = 0
  async function lane(): Promise<void> {
    while (next < items.length) {
      const i = next++
      await fn(items[i] as T, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane))
}
