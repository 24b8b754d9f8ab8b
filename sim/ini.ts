// The config the simulator runs: the shipped config/hijack-guard.ini (the defaults), and for the
// Redis cross-check the same config with every window compressed by a factor.

import * as path from 'node:path'
import * as ini from 'haraka-config/lib/readers/ini'
import { REPO_ROOT } from '../support/process'

type Ini = Record<string, Record<string, unknown>>

/** config/hijack-guard.ini as Haraka reads it: the defaults every profile runs with. */
export function readShippedIni(): Ini {
  return ini.load(path.join(REPO_ROOT, 'config', 'hijack-guard.ini'), {})
}

/** `shipped` with the sections and keys of the ini text `extra` over it, as Haraka merges an operator's copy. */
export function withOverrides(shipped: Ini, extra: string): Ini {
  const mine = ini.parseIni('simulator', {}, extra)
  const out: Ini = { ...shipped }
  for (const [name, keys] of Object.entries(mine)) out[name] = { ...(out[name] ?? {}), ...keys }
  return out
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const RULE = /^\s*(\d+)\s*\/\s*(\d+)(ms|s|m|h|d)\s*$/

/** "500/30m, 2000/24h" with each window divided by `scale` (in ms, at least 1 ms); null when `value` is no such list. */
export function scaleRules(value: unknown, scale: number): string | null {
  if (typeof value !== 'string' || value.trim() === '') return null
  const parts = value.split(',').map((part) => RULE.exec(part))
  if (parts.some((m) => m === null)) return null
  return parts
    .map((m) => {
      const [, n, amount, unit] = m as RegExpExecArray
      const ms = Number(amount) * (UNIT_MS[unit ?? 'ms'] ?? 1)
      return `${n}/${Math.max(1, Math.round(ms / scale))}ms`
    })
    .join(', ')
}

/**
 * An override ini: `extra` (ini text over the shipped file) with every "N/window" value of both,
 * in every section, compressed `scale` times: the same limits over windows `scale` times shorter.
 */
export function scaledIni(extra: string, scale: number): string {
  const mine = ini.parseIni('simulator', {}, extra)
  const sections = new Map(Object.entries(withOverrides(readShippedIni(), extra)))
  const out: string[] = []
  for (const [name, keys] of sections) {
    const lines: string[] = []
    for (const [key, value] of Object.entries(keys)) {
      const scaled = scaleRules(value, scale)
      const given = Object.prototype.hasOwnProperty.call(mine[name] ?? {}, key)
      if (scaled !== null) lines.push(`${key} = ${scaled}`)
      else if (given) lines.push(`${key} = ${String(value)}`)
    }
    if (lines.length || name.startsWith('account:')) out.push(`[${name}]`, ...lines)
  }
  return `${out.join('\n')}\n`
}
