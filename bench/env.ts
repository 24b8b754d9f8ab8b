// The bench's set-up: one redis-server, the sink child, and three Haraka instances identical but
// for their rate limiting: `without` any, `limit` (haraka-plugin-limit's [rate_rcpt_sender], the
// devDependency's version installed from npm as an operator does, on the same redis-server) and
// `with` hijack-guard (limits never reached, except for the exactness accounts).

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

/** The three sides, in the order of the interleaving (A B C C B A ...). */
export const SIDE_NAMES = ['without', 'limit', 'with'] as const
export type SideName = (typeof SIDE_NAMES)[number]

/** How the report names each side. */
export const SIDE_LABELS: Readonly<Record<SideName, string>> = {
  without: 'without (bare Haraka)',
  limit: 'limit (haraka-plugin-limit)',
  with: 'with hijack-guard',
}

export interface Side {
  readonly name: SideName
  readonly haraka: HarakaInstance
  /** Whether its Haraka talks to the bench's redis-server. */
  readonly usesRedis: boolean
}

export interface BenchEnv {
  readonly options: BenchOptions
  readonly redis: RedisServer
  readonly sink: SinkChild
  readonly sides: Readonly<Record<SideName, Side>>
  /** haraka-plugin-limit's version (the devDependency's). */
  readonly limitVersion: string
  /** The logins of the load. */
  readonly accounts: readonly string[]
  /** The logins of the exactness trials, each with messages = exactLimit/1m. */
  readonly exactAccounts: readonly string[]
  readonly dist: Dist
  readonly machine: Machine
}

/** The version of a package installed in the repository's node_modules. */
function installedVersion(name: string): string {
  const pj: unknown = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8'))
  const version = typeof pj === 'object' && pj !== null ? (pj as { version?: unknown }).version : undefined
  return typeof version === 'string' ? version : '?'
}

/**
 * haraka-plugin-limit counting recipients per envelope sender at a limit never reached, on
 * `redisPort` (config/redis.ini, which it reads through haraka-plugin-redis; its own database).
 * Haraka's shared `redis` plugin is not listed: with it, Haraka publishes every connection result
 * to Redis (results.ini redis_publish), a cost of that plugin on every side, not of the limit.
 */
function limitConfig(redisPort: number): Record<string, string> {
  return {
    'redis.ini': ['[server]', 'host=127.0.0.1', `port=${redisPort}`, ''].join('\n'),
    'limit.ini': ['[rate_rcpt_sender]', 'enabled=true', 'default=100000000/30m', ''].join('\n'),
  }
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
  const limitVersion = installedVersion('haraka-plugin-limit')
  const withPlugin = await createHaraka({ ...common, pluginIni })
  const without = await createHaraka({ ...common, plugin: false })
  const limit = await createHaraka({
    ...common,
    plugin: false,
    packages: [`haraka-plugin-limit@${limitVersion}`],
    extraPlugins: ['limit'],
    config: limitConfig(redis.port),
  })
  for (const h of [without, limit, withPlugin]) await h.start()
  const dist = await loadDist()
  const cpus = os.cpus()
  return {
    options: o,
    redis,
    sink,
    sides: {
      without: { name: 'without', haraka: without, usesRedis: false },
      limit: { name: 'limit', haraka: limit, usesRedis: true },
      with: { name: 'with', haraka: withPlugin, usesRedis: true },
    },
    limitVersion,
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
      haraka: installedVersion('Haraka'),
      harakaNodes: 0,
      harakaLogLevel: o.logLevel,
      redis: redisInfo.redis_version ?? '?',
      messageBytes: MESSAGE_SIZE,
    },
  }
}
