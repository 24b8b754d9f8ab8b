// Section 4: Redis memory per account: the store (from dist/) used directly on a redis-server of
// its own. Active accounts record a few messages of one session at the default config (and other
// bucket counts); busy accounts have every bucket filled and 10 distinct summaries, recorded
// through the store in buckets shrunk to a few hundred ms (bench/pace.ts) with the default
// config's limits and bucket count, since the layout, not the bucket length, sets their size.

import { startRedis } from '../support'
import { quietLog, type Dist } from './dist'
import type { BenchEnv } from './env'
import { oncePerBucket, recordAll, scaledStore } from './pace'
import { parseCommandstats, parseInfo } from './redis-stats'
import { f0, f1, say, table, target } from './report'
import type { MemoryResult, MemoryRow, Target } from './result'
import { parallel } from './stats'
import { distinctSummaryFor, summaryFor } from './summaries'

/** The memory target per active account, bytes. */
export const MAX_ACTIVE_BYTES = 1024

interface Scenario {
  readonly label: string
  /** [limits] keys over the defaults. */
  readonly limits: Readonly<Record<string, string>>
  /** Messages each account records (one session: same IP and HELO name). */
  readonly messages: number
  /** Busy: every bucket filled (one message per bucket), summaries cycling through 10 distinct ones. */
  readonly busyBuckets?: number
  readonly n: number
}

export const ACTIVE_LABEL = 'active: default config, 3 messages of one session'
export const BUSY_LABEL = 'busy: default config, every bucket filled, 10 distinct summaries'

const SAMPLE = 1000

export async function memory(env: BenchEnv): Promise<{ result: MemoryResult; targets: Target[] }> {
  const o = env.options
  const redis = await startRedis()
  const command = (...args: (string | number)[]): Promise<unknown> => redis.command(args, { timeoutMs: 10_000 })
  const usedMemory = async (): Promise<number> => Number(parseInfo(await command('INFO', 'memory')).used_memory)

  say()
  say(`4. Redis memory per account (the store used directly; ${o.accounts} active accounts; a redis-server of its own)`)
  const scenarios: Scenario[] = [
    { label: 'default config, 1 message', limits: {}, messages: 1, n: o.accounts },
    { label: ACTIVE_LABEL, limits: {}, messages: 3, n: o.accounts },
    { label: 'default config, 10 messages of one session', limits: {}, messages: 10, n: o.accounts },
    { label: 'buckets = 10, 3 messages', limits: { buckets: '10' }, messages: 3, n: o.accounts },
    { label: 'buckets = 60, 3 messages', limits: { buckets: '60' }, messages: 3, n: o.accounts },
    { label: BUSY_LABEL, limits: {}, messages: 0, busyBuckets: 30, n: o.busyAccounts },
    { label: 'busy: buckets = 60', limits: {}, messages: 0, busyBuckets: 60, n: o.busyAccounts },
  ]
  const listpackMax = configNumber(await command('CONFIG', 'GET', 'hash-max-listpack-entries'))
  const rows: MemoryRow[] = []
  for (const sc of scenarios) {
    const names = Array.from({ length: sc.n }, (_, i) => `staff${String(i).padStart(5, '0')}@customer-company.example`)
    // the store's connection is open before the first figure is read, and closed after the last
    const bucketMs = sc.busyBuckets ? Math.max(100, Math.ceil((sc.n * 0.6) / 100) * 100) : 0
    const s = sc.busyBuckets
      ? await scaledStore(env.dist, redis.port, { buckets: sc.busyBuckets, bucketMs })
      : await defaultStore(env.dist, redis.port, sc.limits)
    let overruns = 0
    let notOk = 0
    await command('CONFIG', 'RESETSTAT')
    if (sc.busyBuckets) {
      // one pass over every account per bucket: the buckets are long enough for a pass to fit
      overruns = await oncePerBucket(sc.busyBuckets, bucketMs, async (k) => {
        notOk += await recordAll(s, names, (i) => ({
          recipients: 1 + ((i + k) % 4),
          summary: distinctSummaryFor(i, k % 10),
        }))
      })
    } else {
      for (let j = 0; j < sc.messages; j++) {
        notOk += await recordAll(s, names, (i) => ({ recipients: 1 + ((i + j) % 4), summary: summaryFor(i, j) }))
      }
    }
    if (notOk) throw new Error(`${sc.label}: ${notOk} record calls did not answer ok`)
    await new Promise((resolve) => setTimeout(resolve, 1000)) // let redis finish rehashing its dictionaries
    const recordStats = parseCommandstats(await command('INFO', 'commandstats')).evalsha
    await s.store.close()
    const usage = await keyUsage(command, env.dist.accountKeys, names.slice(0, SAMPLE))
    // the empty figure right after: buffers and caches that grew during the run count on neither side
    const withKeys = await usedMemory()
    await command('FLUSHALL')
    const empty = await usedMemory()
    rows.push({
      ...usage,
      label: sc.label,
      accounts: sc.n,
      overruns,
      perAccount: (withKeys - empty) / sc.n,
      recordUsec: recordStats ? recordStats.usec / recordStats.calls : NaN,
    })
  }
  await redis.stop()
  table([
    [
      'scenario',
      'accounts',
      'used_memory/acct',
      'MEMORY USAGE/acct',
      'keys/acct',
      'by key',
      'counts fields',
      'record usec',
    ],
    ...rows.map((r) => [
      r.label,
      r.accounts,
      f0(r.perAccount),
      f0(r.memoryUsage),
      f1(r.keysPerAccount),
      Object.entries(r.byKey)
        .map(([k, v]) => `${k} ${f0(v)}`)
        .join(', '),
      `${r.fields} ${r.encoding}`,
      f1(r.recordUsec),
    ]),
  ])
  say("  used_memory/acct: INFO memory used_memory with the accounts' keys minus right after FLUSHALL, divided by the")
  say(
    '  accounts (includes the keyspace and expiry dictionaries); MEMORY USAGE/acct: every key of an account, mean over',
  )
  say(`  up to ${SAMPLE} accounts, and by key.`)
  say(
    `  redis hash-max-listpack-entries = ${listpackMax}. Busy rows: one message per bucket in buckets of a few hundred ms;`,
  )
  const late = rows.filter((r) => r.overruns)
  say(
    `  passes that ran into the next bucket: ${late.length ? late.map((r) => `${r.overruns} (${r.label})`).join(', ') : 'none'}.`,
  )
  const active = rows.find((r) => r.label === ACTIVE_LABEL)
  const busyRow = rows.find((r) => r.label === BUSY_LABEL)
  const bytesPerActiveAccount = active?.perAccount ?? NaN
  const bytesPerBusyAccount = busyRow?.perAccount ?? NaN
  const targets = [
    target(
      bytesPerActiveAccount <= MAX_ACTIVE_BYTES,
      'Redis memory <= 1 KB per active account, default config',
      bytesPerActiveAccount,
      `${f0(bytesPerActiveAccount)} B (3 messages of one session; busy account ${f0(bytesPerBusyAccount)} B)`,
    ),
  ]
  return { result: { rows, listpackMax, bytesPerActiveAccount, bytesPerBusyAccount }, targets }
}

/** A store at the default config with `limits` over it. */
async function defaultStore(dist: Dist, port: number, limits: Readonly<Record<string, string>>) {
  const config = dist.parseConfig(
    { main: { store: 'redis' }, limits: { ...limits }, redis: { host: '127.0.0.1', port: String(port) } },
    'mx.test.example',
  )
  const store = dist.createRedisStore({ redis: config.redis, timeoutMs: 10_000, log: quietLog })
  await store.ready(10_000)
  return { store, rules: config.rules, tokenTtlMs: config.reactivate.tokenTtlMs }
}

/** The value of a CONFIG GET reply (an array in RESP2, a map in RESP3). */
function configNumber(reply: unknown): number {
  const value: unknown = Array.isArray(reply)
    ? reply[1]
    : typeof reply === 'object' && reply
      ? Object.values(reply)[0]
      : NaN
  return Number(value)
}

/** MEMORY USAGE of every key of the sampled accounts (lib/store/keys.ts), per account and by key name. */
async function keyUsage(
  command: (...args: (string | number)[]) => Promise<unknown>,
  accountKeys: Dist['accountKeys'],
  sample: readonly string[],
): Promise<Pick<MemoryRow, 'memoryUsage' | 'byKey' | 'keysPerAccount' | 'fields' | 'encoding'>> {
  const byKey: Record<string, number> = {}
  let total = 0
  let keys = 0
  await parallel(sample, 20, async (name) => {
    for (const [kind, key] of Object.entries(accountKeys(name))) {
      if (typeof key !== 'string') continue
      const reply = await command('MEMORY', 'USAGE', key, 'SAMPLES', '0')
      if (reply === null) continue
      const bytes = Number(reply) || 0
      byKey[kind] = (byKey[kind] ?? 0) + bytes / sample.length
      total += bytes
      keys++
    }
  })
  const counts = accountKeys(sample[0] ?? '').counts
  const fields = Number(await command('HLEN', counts))
  const encoding = fields ? String(await command('OBJECT', 'ENCODING', counts)) : 'none'
  return { memoryUsage: total / sample.length, byKey, keysPerAccount: keys / sample.length, fields, encoding }
}
