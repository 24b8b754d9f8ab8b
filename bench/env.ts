// The bench's set-up: one redis-server, the sink child, and two Haraka instances identical but
// for hijack-guard (limits never reached, except for the exactness accounts).

import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { REPO_ROOT, createHaraka, startRedis, type HarakaInstance, type RedisServer } from '../support'
import { loadDist, type Dist } from './dist'
import { MESSAGE_SIZE } from './load'
import type { BenchOptions } from './options'
import { parseInfo } from './redis-stats'
import type { Machine } from './result'
import { startSinkChild, type SinkChild } from './sink'

export interface Side {
  readonly name: 'with' | 'without'
  readonly haraka: HarakaInstance
  readonly plugin: boolean
}

export interface BenchEnv {
  readonly options: BenchOptions
  readonly redis: RedisServer
  readonly sink: SinkChild
  /** A: with the plugin, B: without. */
  readonly sides: { readonly A: Side; readonly B: Side }
  /** The logins of the load. */
  readonly accounts: readonly string[]
  /** The logins of the exactness trials, each with messages = exactLimit/1m. */
  readonly exactAccounts: readonly string[]
  readonly dist: Dist
  readonly machine: Machine
}

function harakaVersion(): string {
  const pj: unknown = JSON.parse(
    fs.readFileSync(path.join(REPO_ROOT, 'node_modules', 'Haraka', 'package.json'), 'utf8'),
  )
  const version = typeof pj === 'object' && pj !== null ? (pj as { version?: unknown }).version : undefined
  return typeof version === 'string' ? version : '?'
}

export async function setUp(o: BenchOptions): Promise<BenchEnv> {
  const redis = await startRedis()
  const redisInfo = parseInfo(await redis.command(['INFO', 'server']))
  const sink = await startSinkChild()
  const accounts = Array.from({ length: o.smtpAccounts }, (_, i) => `user${String(i).padStart(4, '0')}@test.example`)
  const exactAccounts = Array.from({ length: o.exactTrials }, (_, i) => `burst${i + 1}@test.example`)
  const users: Record<string, string> = {}
  for (const a of [...accounts, ...exactAccounts]) users[a] = 'pw'
  const common = { sinkPort: sink.port, users, logLevel: o.logLevel, logToFile: true }
  const pluginIni = [
    '[main]',
    'store = redis',
    '[redis]',
    'host = 127.0.0.1',
    `port = ${redis.port}`,
    '[limits]',
    'messages = 100000000/30m',
    'recipients = 100000000/30m',
    'buckets = 30',
    '[alert]',
    'to = postmaster@outside.example',
    ...exactAccounts.flatMap((a) => [`[account:${a}]`, `messages = ${o.exactLimit}/1m`]),
    '',
  ].join('\n')
  const withPlugin = await createHaraka({ ...common, pluginIni })
  const without = await createHaraka({ ...common, plugin: false })
  await withPlugin.start()
  await without.start()
  const dist = await loadDist()
  const cpus = os.cpus()
  return {
    options: o,
    redis,
    sink,
    sides: {
      A: { name: 'with', haraka: withPlugin, plugin: true },
      B: { name: 'without', haraka: without, plugin: false },
    },
    accounts,
    exactAccounts,
    dist,
    machine: {
      date: new Date().toISOString(),
      cpus: cpus.length,
      cpuModel: cpus[0]?.model.trim() ?? '?',
      memoryGiB: os.totalmem() / 2 ** 30,
      loadAverage: os.loadavg(),
      node: process.version,
      haraka: harakaVersion(),
      harakaNodes: 0,
      harakaLogLevel: o.logLevel,
      redis: redisInfo.redis_version ?? '?',
      messageBytes: MESSAGE_SIZE,
    },
  }
}
