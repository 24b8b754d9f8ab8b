// What redis-server tells about itself: INFO sections and INFO commandstats (MONITOR, to tell the
// commands Haraka's client sent from those a Lua script ran, is support's monitorRedis).

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
