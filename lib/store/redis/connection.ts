/**
 * The Redis store's connection: its own node-redis client, connected in the background, every
 * call bounded by store_timeout and failing fast while Redis is down or stuck, and what is
 * checked at each (re)connect (run_id for the journal, durability settings).
 */
import { createClient, TimeoutError, type RedisClientType } from 'redis'
import type { RedisConfig } from '../../config'
import { StoreError, withTimeout } from '..'
import type { Script, ScriptCall } from './scripts'

/** Where the store and the journal log to (Haraka's logger, or a quiet one for the CLI). */
export interface Logger {
  info(msg: string): void
  warn(msg: string): void
  error(msg: string): void
}

/** How to reach Redis and how long to wait for it. */
export interface RedisConnectionOptions {
  readonly redis: RedisConfig
  readonly timeoutMs: number
  readonly log: Logger
  /** Check at each (re)connect that Redis keeps the flags (CONFIG GET) and log what is at risk. */
  readonly checkDurability?: boolean
}

/** The node-redis client as this module creates it (RESP3, the default modules). */
export type RedisClient = RedisClientType

/** A connection to Redis that answers or fails within its timeout, and never waits to connect. */
export interface RedisConnection {
  /** The logger the connection was given; store methods log through it too. */
  readonly log: Logger
  /** Runs `work` on the client within the timeout; rejects with StoreError at once when not connected or stuck. */
  call<T>(what: string, work: (client: RedisClient) => Promise<T>): Promise<T>
  /** Runs a Lua script by its SHA with `call`'s KEYS and ARGV, sending its source when Redis does not have it (NOSCRIPT). */
  evalScript(script: Script, call: ScriptCall): Promise<unknown>
  /** Calls `listener` after every (re)connect with Redis's run_id ('' when INFO is refused). */
  onConnect(listener: (runId: string) => void): void
  /** Calls `listener` whenever a call fails or the client reports an error (a reason to doubt a cache). */
  onFailure(listener: () => void): void
  /**
   * A new, unconnected client with the same settings that turns CLIENT TRACKING on at each
   * connect and emits 'invalidate' (a key, or null for all) for each invalidation Redis pushes.
   */
  trackingClient(): RedisClient
  /** Resolves once Redis answers a PING; rejects with StoreError after `waitMs`. */
  ready(waitMs: number): Promise<void>
  /** Closes the client; the connection is unusable afterwards. */
  close(): Promise<void>
}

const RECONNECT_MAX_MS = 1000

/**
 * A node-redis 6 client with every setting the plugin relies on written out, so that it behaves
 * the same whichever 6.x an install hoists (see docs/store.md, "The Redis client"):
 * - RESP3 (HELLO 3, Redis 6 or later): the push messages of CLIENT TRACKING need it; the scripts'
 *   replies (tables, integers, strings) read the same as under RESP2;
 * - a command not yet written to the socket within `timeoutMs` is dropped, never sent late (the
 *   whole call is bounded by the same store_timeout in RedisConnection.call);
 * - no offline queue: while disconnected a command fails at once instead of waiting;
 * - reconnects forever, 50 ms doubling up to RECONNECT_MAX_MS apart;
 * - no maintenance notifications (a Redis Enterprise feature that would stretch timeouts to 10 s).
 */
function createRedisClient(redis: RedisConfig, timeoutMs: number): RedisClient {
  return createClient({
    RESP: 3,
    socket: {
      host: redis.host,
      port: redis.port,
      connectTimeout: Math.max(timeoutMs, 1000),
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, RECONNECT_MAX_MS),
    },
    database: redis.db,
    ...(redis.username ? { username: redis.username } : {}),
    ...(redis.password ? { password: redis.password } : {}),
    commandOptions: { timeout: timeoutMs },
    disableOfflineQueue: true,
    maintNotifications: 'disabled',
  })
}

/**
 * Connects to Redis in the background and never waits for the connection: while Redis is down
 * every call fails fast with StoreError, and the client reconnects by itself (at most
 * RECONNECT_MAX_MS apart). About 60 lines: every part shares the client, its last error and the
 * fail-fast state, so it stays one closure.
 */
export function connectRedis(options: RedisConnectionOptions): RedisConnection {
  const { redis, timeoutMs, log } = options
  const client = createRedisClient(redis, timeoutMs)
  const where = redisWhere(redis)
  let lastError = ''
  const connectListeners: ((runId: string) => void)[] = []
  const failureListeners: (() => void)[] = []
  const failed = (): void => {
    for (const listener of failureListeners) listener()
  }
  // node-redis reports every failed reconnect; log each distinct failure once.
  const reportError = (err: Error): void => {
    failed()
    if (err.message !== lastError) log.error(`${where}: ${err.message}`)
    lastError = err.message
  }
  const stuck = failFast(() => client.ping(), timeoutMs, log, where)

  const connection: RedisConnection = {
    log,
    async call<T>(what: string, work: (c: RedisClient) => Promise<T>): Promise<T> {
      if (!client.isReady)
        throw new StoreError(`${what}: ${where} is not connected${lastError ? ` (${lastError})` : ''}`)
      stuck.check(what)
      try {
        return await withTimeout(work(client), timeoutMs, `${what} on ${where}`)
      } catch (err) {
        const e =
          err instanceof TimeoutError
            ? new StoreError(`${what} on ${where}: not sent within ${timeoutMs} ms`, { failure: 'timeout', cause: err })
            : err
        stuck.failed(e)
        failed()
        throw e
      }
    },
    async evalScript(script: Script, call: ScriptCall): Promise<unknown> {
      return connection.call(script.name, (c) => evalWithFallback(c, script, call))
    },
    onConnect(listener: (runId: string) => void): void {
      connectListeners.push(listener)
    },
    onFailure(listener: () => void): void {
      failureListeners.push(listener)
    },
    trackingClient(): RedisClient {
      // duplicate() reuses the client class node-redis built for these settings (tens of ms to build).
      return client.duplicate({ emitInvalidate: true })
    },
    async ready(waitMs: number): Promise<void> {
      const end = Date.now() + waitMs
      while (!client.isReady) {
        if (Date.now() >= end)
          throw new StoreError(`${where} did not answer within ${waitMs} ms${lastError ? ` (${lastError})` : ''}`, {
            failure: 'timeout',
          })
        await new Promise((r) => setTimeout(r, 25))
      }
      await connection.call('ping', (c) => c.ping())
    },
    async close(): Promise<void> {
      stuck.close()
      // A graceful close waits for the replies still due: from a server that accepts and never
      // answers (frozen, or not Redis) they never come, so the wait is bounded like any call.
      try {
        if (client.isOpen) await withTimeout(client.close(), timeoutMs, `${where}: close`)
      } catch {
        client.destroy()
      }
    },
  }

  client.on('error', reportError)
  client.on('ready', () => {
    if (lastError) log.info(`${where}: connected again`)
    lastError = ''
    void afterConnect(connection, where, options.checkDurability === true, connectListeners)
  })
  client.connect().catch(reportError)
  return connection
}

/** How log lines name a Redis server: `redis host:port/db`. */
export function redisWhere(redis: RedisConfig): string {
  return `redis ${redis.host}:${redis.port}/${redis.db}`
}

async function evalWithFallback(client: RedisClient, script: Script, { keys, args }: ScriptCall): Promise<unknown> {
  try {
    return await client.evalSha(script.sha, { keys, arguments: args })
  } catch (err) {
    if (!String((err as Error)?.message).startsWith('NOSCRIPT')) throw err
    return client.eval(script.source, { keys, arguments: args })
  }
}

/** The fail-fast state of a connection; see failFast. */
interface FailFast {
  /** Throws StoreError while Redis is presumed stuck. */
  check(what: string): void
  /** Notes a failed call: a timeout marks Redis stuck and starts probing it. */
  failed(err: unknown): void
  /** Stops probing. */
  close(): void
}

/**
 * After a call times out, Redis is presumed stuck: calls fail at once (instead of each waiting
 * timeoutMs) until a PING answers again. One probe at a time.
 */
function failFast(ping: () => Promise<unknown>, timeoutMs: number, log: Logger, where: string): FailFast {
  let stuckSince = 0
  let probing = false
  let closed = false
  function probe(): void {
    if (probing || stuckSince === 0) return
    probing = true
    withTimeout(ping(), timeoutMs, 'ping')
      .then(() => {
        log.info(`${where}: answering again after ${Date.now() - stuckSince} ms`)
        stuckSince = 0
      })
      .catch(() => undefined)
      .finally(() => {
        probing = false
        if (stuckSince !== 0 && !closed) setTimeout(probe, Math.min(timeoutMs, RECONNECT_MAX_MS)).unref()
      })
  }
  return {
    check(what: string): void {
      if (stuckSince !== 0) throw new StoreError(`${what}: ${where} has not answered for ${Date.now() - stuckSince} ms`)
    },
    failed(err: unknown): void {
      if (err instanceof StoreError && err.failure === 'timeout' && stuckSince === 0) {
        stuckSince = Date.now()
        log.error(`${where}: no answer within ${timeoutMs} ms; failing fast until it answers a PING`)
        probe()
      }
    },
    close(): void {
      closed = true
    },
  }
}

/** Asks the server who it is (and whether it keeps data), then tells the listeners. */
async function afterConnect(
  connection: RedisConnection,
  where: string,
  checkDurability: boolean,
  listeners: readonly ((runId: string) => void)[],
): Promise<void> {
  const { log } = connection
  let runId = ''
  try {
    const info = String(await connection.call('info', (c) => c.info('server')))
    runId = /^run_id:(\w+)/m.exec(info)?.[1] ?? ''
  } catch (err) {
    log.info(
      `${where}: INFO server refused (${(err as Error).message}): a restarted Redis is noticed by the periodic journal check only`,
    )
  }
  if (checkDurability) await logDurability(connection, where)
  for (const listener of listeners) {
    try {
      listener(runId)
    } catch (err) {
      log.error(`${where}: after connect: ${(err as Error).message}`)
    }
  }
}

/** Logs a WARN for each setting that lets Redis lose disable records (INFO when it cannot tell). */
async function logDurability(connection: RedisConnection, where: string): Promise<void> {
  const { log } = connection
  let settings: Record<string, string>
  try {
    settings = {}
    for (const name of ['appendonly', 'save', 'maxmemory-policy']) {
      const reply = (await connection.call('config get', (c) => c.configGet(name))) as Record<string, string>
      if (reply[name] === undefined) throw new Error(`no value for ${name}`)
      settings[name] = String(reply[name])
    }
  } catch (err) {
    log.info(
      `${where}: could not check whether Redis keeps disabled flags (CONFIG GET: ${(err as Error).message}); ` +
        'make sure it persists them (appendonly yes) and never evicts them (maxmemory-policy noeviction or volatile-*)',
    )
    return
  }
  const risks = durabilityRisks(settings)
  for (const risk of risks) log.warn(`${where}: ${risk}`)
  if (risks.length === 0)
    log.info(
      `${where}: keeps disabled flags (appendonly=${settings.appendonly}, save="${settings.save}", maxmemory-policy=${settings['maxmemory-policy']})`,
    )
}

/** What the Redis settings risk for the disable records (CONFIG GET values); empty when nothing. */
export function durabilityRisks(settings: Readonly<Record<string, string>>): string[] {
  const risks: string[] = []
  if (settings.appendonly === 'no' && (settings.save ?? '').trim() === '') {
    risks.push(
      'Redis keeps nothing on disk (appendonly no, save ""): a restart loses every disabled flag; only those in a journal come back. Set appendonly yes',
    )
  } else if (settings.appendonly === 'no') {
    risks.push(
      `Redis writes only snapshots (appendonly no, save "${settings.save ?? ''}"): a crash loses the disabled flags set since the last one; only those in a journal come back. Set appendonly yes`,
    )
  }
  const policy = settings['maxmemory-policy'] ?? ''
  if (policy.startsWith('allkeys-')) {
    risks.push(
      `maxmemory-policy ${policy} lets Redis evict disabled flags when memory runs short; use noeviction (or a volatile-* policy: the flags have no TTL)`,
    )
  }
  return risks
}
