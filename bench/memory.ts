// Section 3: Redis memory per active account: the store (from dist/) used directly on a
// redis-server of its own, at the default config, with other bucket counts, and for busy accounts.

import { randomBytes } from 'node:crypto'
import type { Rule } from '../lib/config'
import { count, seriesOf, settle } from '../lib/store/series'
import { startRedis } from '../support'
import { quietLog, type RawIni } from './dist'
import type { BenchEnv } from './env'
import { parseCommandstats, parseInfo } from './redis-stats'
import { f0, f1, say, table, target } from './report'
import type { MemoryResult, MemoryRow, Target } from './result'
import { parallel } from './stats'
import { summaryFor } from './summaries'

interface Scenario {
  readonly label: string
  readonly limits: Readonly<Record<string, string>>
  /** Messages each account records. */
  readonly messages: number
  /** Start from the state of an account that sent in every bucket of its windows. */
  readonly busy?: boolean
  readonly n: number
}

export async function memory(env: BenchEnv): Promise<{ result: MemoryResult; targets: Target[] }> {
  const o = env.options
  const { createRedisStore, parseConfig, accountKeys } = env.dist
  const redis = await startRedis()
  const command = (...args: (string | number)[]): Promise<unknown> => redis.command(args, { timeoutMs: 10_000 })
  const usedMemory = async (): Promise<number> => Number(parseInfo(await command('INFO', 'memory')).used_memory)

  say()
  say(`3. Redis memory per active account (the store used directly; ${o.accounts} accounts; a redis-server of its own)`)
  const scenarios: Scenario[] = [
    { label: 'default (500/30m, 2500/30m, 30 buckets), 1 message', limits: {}, messages: 1, n: o.accounts },
    { label: 'default, 3 messages', limits: {}, messages: 3, n: o.accounts },
    { label: 'default, 10 messages (evidence list full)', limits: {}, messages: 10, n: o.accounts },
    { label: 'buckets = 10, 1 message', limits: { buckets: '10' }, messages: 1, n: o.accounts },
    { label: 'buckets = 60, 1 message', limits: { buckets: '60' }, messages: 1, n: o.accounts },
    { label: 'busy: default, all 30 buckets + evidence full', limits: {}, messages: 10, busy: true, n: o.busyAccounts },
    { label: 'busy: buckets = 10', limits: { buckets: '10' }, messages: 10, busy: true, n: o.busyAccounts },
    { label: 'busy: buckets = 60', limits: { buckets: '60' }, messages: 10, busy: true, n: o.busyAccounts },
    {
      label: 'busy: messages = 500/30m, 2000/24h',
      limits: { messages: '500/30m, 2000/24h' },
      messages: 10,
      busy: true,
      n: o.busyAccounts,
    },
  ]
  // buckets is capped at 60 (lib/config.ts): a busy account's two kinds of buckets, 120 fields,
  // stay within Redis's default hash-max-listpack-entries (128), so its counts stay compact
  const lp = await command('CONFIG', 'GET', 'hash-max-listpack-entries')
  const listpackMax = Array.isArray(lp) ? Number(lp[1]) : NaN
  const rows: MemoryRow[] = []
  for (const sc of scenarios) {
    const ini: RawIni = {
      main: { store: 'redis' },
      limits: { ...sc.limits },
      redis: { host: '127.0.0.1', port: String(redis.port) },
    }
    const config = parseConfig(ini, 'mx.test.example')
    const store = createRedisStore({ redis: config.redis, timeoutMs: 10_000, log: quietLog })
    await store.ready(10_000)
    await command('FLUSHALL')
    await command('MEMORY', 'PURGE')
    const before = await usedMemory()
    const names = Array.from({ length: sc.n }, (_, i) => `staff${String(i).padStart(5, '0')}@customer-company.example`)
    if (sc.busy) {
      // every bucket of the window filled to 70 % of the limits, as the counter model
      // (lib/store/series.ts, which the record script follows) keeps it, one message at a time
      const t = await command('TIME')
      const [seconds, micros] = Array.isArray(t) ? (t as unknown[]) : []
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
      const fields = busyCounters(config.rules, now)
      const args = [...fields].flatMap(([f, v]) => [f, v])
      await parallel(names, 50, (name) => command('HSET', accountKeys(name).counts, ...args))
    }
    // record the messages through the store, as the plugin does at queue_outbound
    await command('CONFIG', 'RESETSTAT')
    for (let j = 0; j < sc.messages; j++) {
      await parallel(names, 50, async (name, i) => {
        const r = await store.record({
          account: name,
          recipients: 1 + ((i + j) % 4),
          rules: config.rules,
          mode: 'enforce',
          summary: summaryFor(i, j),
          token: randomBytes(16).toString('hex'),
          tokenTtlMs: config.reactivate.tokenTtlMs,
        })
        if (r.status !== 'ok') throw new Error(`record: ${r.status}`)
      })
    }
    await new Promise((resolve) => setTimeout(resolve, 1000)) // let redis finish rehashing its dictionaries
    const recordStats = parseCommandstats(await command('INFO', 'commandstats')).evalsha
    const after = await usedMemory()
    const sample = names.slice(0, Math.min(names.length, 1000))
    let counts = 0
    const evidence = 0 // the evidence ring lives in the counts hash
    await parallel(sample, 50, async (name) => {
      const k = accountKeys(name)
      // (read first: `x += await ...` would add to the value x had before the await)
      const c = Number(await command('MEMORY', 'USAGE', k.counts, 'SAMPLES', '0')) || 0
      counts += c
    })
    const k0 = accountKeys(names[0] ?? '')
    const hlen = Number(await command('HLEN', k0.counts))
    const encoding = String(await command('OBJECT', 'ENCODING', k0.counts))
    const db0 = parseInfo(await command('INFO', 'keyspace')).db0 ?? ''
    const keys = Number(db0.replace(/^keys=(\d+).*/, '$1')) || 0
    await store.close()
    rows.push({
      label: sc.label,
      accounts: sc.n,
      perAccount: (after - before) / sc.n,
      memoryUsage: (counts + evidence) / sample.length,
      counts: counts / sample.length,
      evidence: evidence / sample.length,
      fields: hlen,
      encoding,
      keysPerAccount: keys / sc.n,
      recordUsec: recordStats ? recordStats.usec / recordStats.calls : NaN,
    })
  }
  table([
    [
      'scenario',
      'accounts',
      'used_memory/acct',
      'MEMORY USAGE/acct',
      'counts',
      'evidence',
      'hash fields',
      'encoding',
      'record usec',
    ],
    ...rows.map((r) => [
      r.label,
      r.accounts,
      f0(r.perAccount),
      f0(r.memoryUsage),
      f0(r.counts),
      f0(r.evidence),
      r.fields,
      r.encoding,
      f1(r.recordUsec),
    ]),
  ])
  const [def, , full] = rows as [MemoryRow, MemoryRow, MemoryRow]
  say(
    '  used_memory/acct: INFO memory used_memory after minus before, divided by the accounts (includes the keyspace and',
  )
  say(
    '  expiry dictionaries); MEMORY USAGE/acct: the two keys an active account has (counts hash + evidence list), mean',
  )
  say(`  over up to 1000 accounts. ${def.keysPerAccount} keys per account; a disabled account adds its disable record.`)
  say(`  redis hash-max-listpack-entries = ${listpackMax}: a counts hash with more fields becomes a hash table.`)
  say('  record usec: redis time of one record script (commandstats), which reads every field of the counts hash.')
  await redis.stop()
  const targets = [
    target(
      def.perAccount <= 2048,
      '<= 2 KB Redis memory per active account, default config, 1 message',
      def.perAccount,
      `${f0(def.perAccount)} B`,
    ),
    target(
      full.perAccount <= 2048,
      '<= 2 KB Redis memory per active account, default config, 10+ messages (evidence full)',
      full.perAccount,
      `${f0(full.perAccount)} B`,
    ),
  ]
  return { result: { rows, listpackMax }, targets }
}

/** An account's counter hash with every bucket of every rule's window at 70 % of the limits. */
function busyCounters(rules: readonly Rule[], now: number): Map<string, string> {
  const hash = new Map<string, string>()
  const { sig } = seriesOf(rules)
  const longest = rules.reduce((a, r) => (r.bucketMs * r.buckets > a.bucketMs * a.buckets ? r : a))
  const perBucket = Math.max(1, Math.floor((0.7 * longest.max) / longest.buckets))
  for (let b = longest.buckets - 1; b >= 1; b--)
    for (let i = 0; i < perBucket; i++) {
      settle(hash, rules, now - b * longest.bucketMs, sig)
      count(hash, rules, 1)
    }
  return hash
}
