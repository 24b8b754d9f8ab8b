// Section 3: Redis CPU per message of a busy account: accounts held near 70 % of their limits
// with every bucket filled, at the default config's shape (500 messages and 2500 recipients per
// window, 30 buckets) and with buckets = 60. Waiting for 30-minute windows is not an option, so
// the windows shrink and the limits do not: buckets of 100 ms, recorded through the store's own
// record() (dist/lib/store/redis) at the rate that keeps each account at 70 %. That rate puts as
// many messages into each bucket (about 12 with 30 buckets, 6 with 60) as 70 % of 500 per 30
// minutes does with the real 1-minute buckets, so the script sees the same state and the same
// bucket turnover per message. A redis-server of its own: its CPU is the accounts' alone.

import { startRedis } from '../support'
import type { BenchEnv } from './env'
import { pacedUntil, recordOne, scaledStore } from './pace'
import { parseCommandstats, parseInfo } from './redis-stats'
import { f1, pct, say, table, target } from './report'
import type { BusyResult, BusyRow, Target } from './result'
import { procCpu } from './stats'
import { summaryFor } from './summaries'

/** The Redis CPU target per message, busy account, us. */
export const MAX_BUSY_REDIS_CPU_US = 40
export const BUSY_BUCKET_MS = 100
/** The share of each limit the accounts are held at. */
export const BUSY_FILL = 0.7
/** Recipients per message: 70 % of 2500 recipients when the messages are at 70 % of 500. */
const RECIPIENTS = 5
const MESSAGE_LIMIT = 500

export async function busy(env: BenchEnv): Promise<{ result: BusyResult; targets: Target[] }> {
  const o = env.options
  say()
  say(
    `3. Redis CPU per message of busy accounts: ${o.busyCpuAccounts} accounts at ${pct(BUSY_FILL)} of their limits, every bucket filled`,
  )
  say(
    `   (limits of the default config with ${BUSY_BUCKET_MS} ms buckets; one window to fill, then ${o.busyCpuSeconds} s measured; a redis-server of its own)`,
  )
  const redis = await startRedis()
  const rows: BusyRow[] = []
  try {
    for (const [label, buckets] of [
      ['default config: 500 messages, 2500 recipients, 30 buckets', 30],
      ['buckets = 60', 60],
    ] as const) {
      const s = await scaledStore(env.dist, redis.port, { buckets, bucketMs: BUSY_BUCKET_MS })
      const windowMs = buckets * BUSY_BUCKET_MS
      const names = Array.from({ length: o.busyCpuAccounts }, (_, i) => `busy${buckets}-${i}@customer-company.example`)
      // messages per second of all accounts together, BUSY_FILL of each account's limit per window
      const perSecond = (names.length * BUSY_FILL * MESSAGE_LIMIT) / (windowMs / 1000)
      const state = { sent: 0, notOk: 0, t0: Date.now() }
      const message = (n: number): Promise<boolean> => {
        const i = n % names.length
        return recordOne(s, names[i] ?? '', RECIPIENTS, summaryFor(i, Math.floor(n / names.length)))
      }
      await pacedUntil(state.t0 + windowMs + BUSY_BUCKET_MS, perSecond, state, message)
      await redis.command(['CONFIG', 'RESETSTAT'])
      const cpu0 = procCpu(redis.pid)
      const sent0 = state.sent
      await pacedUntil(Date.now() + o.busyCpuSeconds * 1000, perSecond, state, message)
      const cpu = procCpu(redis.pid) - cpu0
      const messages = state.sent - sent0
      const stats = parseCommandstats(await redis.command(['INFO', 'commandstats']))
      const scriptUsec = (stats.evalsha?.usec ?? 0) + (stats.eval?.usec ?? 0)
      const calls = Object.entries(stats)
        .filter(([cmd]) => !cmd.startsWith('info') && !cmd.startsWith('config'))
        .reduce((a, [, t]) => a + t.calls, 0)
      const fill = { messages: 0, recipients: 0, networks: 0, invalid_recipients: 0 }
      for (const name of names) {
        for (const c of await s.store.counts(name, s.rules)) fill[c.kind] += c.count / c.max / names.length
      }
      await s.store.close()
      rows.push({
        label,
        buckets,
        bucketMs: BUSY_BUCKET_MS,
        windowMs,
        accounts: names.length,
        messages,
        messageFill: fill.messages,
        recipientFill: fill.recipients,
        notOk: state.notOk,
        scriptUsecPerMessage: scriptUsec / messages,
        redisCpuUsPerMessage: (cpu / messages) * 1e6,
        commandsPerMessage: calls / messages,
      })
    }
    const info = parseInfo(await redis.command(['INFO', 'server']))
    say(`   redis hz ${info.hz ?? '?'}: its timer work is part of the process CPU below`)
  } finally {
    await redis.stop()
  }
  table([
    [
      'busy accounts',
      'messages',
      'per bucket',
      'fill msg/rcpt',
      'not ok',
      'script usec/msg',
      'commands/msg',
      'redis CPU us/msg',
    ],
    ...rows.map((r) => [
      r.label,
      r.messages,
      f1((BUSY_FILL * MESSAGE_LIMIT) / r.buckets),
      `${pct(r.messageFill)}/${pct(r.recipientFill)}`,
      r.notOk,
      f1(r.scriptUsecPerMessage),
      f1(r.commandsPerMessage),
      f1(r.redisCpuUsPerMessage),
    ]),
  ])
  say('  script usec: INFO commandstats of the record script (its commands included); redis CPU: redis-server')
  say('  utime+stime from /proc over the measurement, which adds reading and writing the sockets.')
  const targets = rows.map((r) =>
    target(
      r.redisCpuUsPerMessage <= MAX_BUSY_REDIS_CPU_US,
      `Redis CPU <= ${MAX_BUSY_REDIS_CPU_US} us per message, busy account, ${r.buckets === 30 ? 'default config' : `buckets = ${r.buckets}`}`,
      r.redisCpuUsPerMessage,
      `${f1(r.redisCpuUsPerMessage)} us (record script ${f1(r.scriptUsecPerMessage)} us, ${r.messages} messages)`,
    ),
  )
  return { result: { rows }, targets }
}
