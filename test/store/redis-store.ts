// The Redis store as the store tests open it: on a loopback redis-server from support/redis.ts,
// with a logger that keeps its lines for the assertions.

import type { RedisConfig } from '../../lib/config'
import type { Store } from '../../lib/store'
import { createRedisStore, type Logger, type RedisStore } from '../../lib/store/redis'
import { HOST, waitUntil } from '../../support/process'

/** A Logger that keeps what it is told, as 'level message'. */
export interface KeptLog extends Logger {
  readonly lines: string[]
}

export function quietLog(): KeptLog {
  const lines: string[] = []
  return {
    lines,
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
  }
}

/** The [redis] section for a server on loopback `port`, database 0. */
export function redisConfig(port: number): RedisConfig {
  return { host: HOST, port, db: 0, journal: 'hijack-guard.journal.json', journalCheckMs: 60_000 }
}

export interface OpenRedisOptions {
  /** store_timeout (default 1000 ms). */
  readonly timeoutMs?: number
  readonly log?: Logger
  readonly checkDurability?: boolean
}

/** A Redis store on loopback `port`; it connects in the background (see untilAnswers). */
export function openRedisStore(
  port: number,
  { timeoutMs = 1000, log = quietLog(), checkDurability }: OpenRedisOptions = {},
): RedisStore {
  return createRedisStore({ redis: redisConfig(port), timeoutMs, log, checkDurability })
}

/** Resolves once `store` answers a read (within 5 s). */
export async function untilAnswers(store: Store): Promise<void> {
  await waitUntil(async () => (await store.getDisabled('ready-probe')) === null, {
    timeoutMs: 5000,
    ignoreErrors: true,
    message: 'the store answers',
  })
}
