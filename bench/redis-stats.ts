// What redis-server tells about itself: INFO sections, INFO commandstats, and MONITOR (on a
// client of its own) to tell the commands Haraka's client sent from those a Lua script ran.

import { connectRedis } from '../support'

/** The `key:value` lines of an INFO reply. */
export function parseInfo(text: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of String(text).split('\r\n')) {
    const i = line.indexOf(':')
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}

export interface CommandStat {
  calls: number
  usec: number
}

/** Command name (lower case, e.g. evalsha, config|resetstat) -> calls and usec. */
export type CommandStats = Record<string, CommandStat>

/** INFO commandstats, by command. */
export function parseCommandstats(text: unknown): CommandStats {
  const out: CommandStats = {}
  for (const [k, v] of Object.entries(parseInfo(text))) {
    if (!k.startsWith('cmdstat_')) continue
    const m = /calls=(\d+),usec=(\d+)/.exec(v)
    if (m) out[k.slice(8)] = { calls: Number(m[1]), usec: Number(m[2]) }
  }
  return out
}

/** Commands the bench itself sends. */
const HOUSEKEEPING = new Set([
  'info',
  'config|resetstat',
  'config',
  'monitor',
  'ping',
  'flushall',
  'memory|usage',
  'memory|purge',
])

/** Adds `stats` (without the bench's own commands) into `into`. */
export function addStats(into: CommandStats, stats: CommandStats): void {
  for (const [cmd, s] of Object.entries(stats)) {
    if (HOUSEKEEPING.has(cmd)) continue
    const t = (into[cmd] ??= { calls: 0, usec: 0 })
    t.calls += s.calls
    t.usec += s.usec
  }
}

export interface Monitor {
  /** Commands by name, sent by a client / run by a Lua script, since the start or reset(). */
  readonly counts: { client: Record<string, number>; script: Record<string, number> }
  reset(): void
  stop(): void
}

/** MONITOR on a connection of its own; resolves once redis confirmed it. */
export async function monitorRedis(port: number): Promise<Monitor> {
  const client = await connectRedis(port)
  const counts: Monitor['counts'] = { client: {}, script: {} }
  await client.monitor((line) => {
    const m = /^\+?\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]+)"/.exec(String(line))
    if (!m?.[1] || !m[2]) return
    const who = m[1] === 'lua' ? 'script' : 'client'
    const cmd = m[2].toLowerCase()
    counts[who][cmd] = (counts[who][cmd] ?? 0) + 1
  })
  return {
    counts,
    reset() {
      counts.client = {}
      counts.script = {}
    },
    stop() {
      client.destroy()
    },
  }
}
