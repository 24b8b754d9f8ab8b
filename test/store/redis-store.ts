// The Redis store as the store tests open it: on a loopback redis-server from support/redis.ts,
// with a logger that keeps its lines for the assertions.

import * as assert from 'node:assert/strict'
import type { RedisConfig } from '../../lib/config'
import type { DisabledRecord, Store } from '../../lib/store'
import { createRedisStore, type Logger, type RedisStore } from '../../lib/store/redis'
import { HOST, waitUntil } from '../../support/process'
import { startRedis, type RedisClient, type RedisServer } from '../../support/redis'

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
  /** Serve disable records from the cache Redis keeps true, as Haraka does (default true). */
  readonly cacheDisabled?: boolean
}

/** A Redis store on loopback `port`; it connects in the background (see untilAnswers). */
export function openRedisStore(
  port: number,
  { timeoutMs = 1000, log = quietLog(), checkDurability, cacheDisabled = true }: OpenRedisOptions = {},
): RedisStore {
  return createRedisStore({ redis: redisConfig(port), timeoutMs, log, checkDurability, cacheDisabled })
}

/** Resolves once `store` answers a read (within 5 s). */
export async function untilAnswers(store: Store): Promise<void> {
  await waitUntil(async () => (await store.getDisabled('ready-probe')) === null, {
    timeoutMs: 5000,
    ignoreErrors: true,
    message: 'the store answers',
  })
}

/**
 * How long a change made on another connection may take to reach a store's disable-record cache:
 * Redis pushes the invalidation as it runs the write, on the store's tracking connection, so it
 * races the writer's own reply only within this process; a bound, not a sleep.
 */
export const INVALIDATION_MS = 1000

/** Resolves with the record once `store` sees `account` disabled (within INVALIDATION_MS). */
export function untilDisabled(store: Store, account: string): Promise<DisabledRecord> {
  return waitUntil(() => store.getDisabled(account), {
    timeoutMs: INVALIDATION_MS,
    intervalMs: 5,
    message: `${JSON.stringify(account)} seen disabled`,
  })
}

/** Resolves once `store` sees `account` enabled (within INVALIDATION_MS). */
export async function untilEnabled(store: Store, account: string): Promise<void> {
  await waitUntil(async () => (await store.getDisabled(account)) === null, {
    timeoutMs: INVALIDATION_MS,
    intervalMs: 5,
    message: `${JSON.stringify(account)} seen enabled`,
  })
}

/** What redisServerHooks() sets up: valid inside the describe's tests and hooks. */
export interface SuiteRedis {
  /** The suite's redis-server. */
  readonly server: RedisServer
  /** A client of it, for the assertions (closed with the server). */
  readonly admin: RedisClient
}

/** Registers before/after hooks that start one redis-server for the describe() and stop it. */
export function redisServerHooks(): SuiteRedis {
  let server: RedisServer | undefined
  let admin: RedisClient | undefined
  before(async function () {
    server = await startRedis()
    admin = await server.client()
  })
  after(async function () {
    // also closes admin, its client
    await server?.stop()
  })
  return {
    get server(): RedisServer {
      assert.ok(server, 'redisServerHooks: before() has not run')
      return server
    },
    get admin(): RedisClient {
      assert.ok(admin, 'redisServerHooks: before() has not run')
      return admin
    },
  }
}
