/**
 * The disable records as MAIL FROM and AUTH read them: from a local cache that Redis keeps true
 * (client-side caching, docs/store.md). A connection of its own turns CLIENT TRACKING on (RESP3)
 * and reads nothing but disable records, so Redis tracks exactly those keys for it and pushes an
 * invalidation when one changes, whoever changes it (another Haraka, the CLI, a script, FLUSHALL,
 * a key deletion). The cache is emptied whenever that connection drops, errs or reconnects, and
 * whenever a call fails; a read that an invalidation overtook is answered but not kept
 * (key-cache.ts). While the tracking connection is not ready, reads go to the main connection
 * uncached. The counting script stays the authority: a cached "enabled" a moment stale never lets
 * a message through.
 */
import type { RedisConfig } from '../../config'
import { withTimeout } from '..'
import { redisWhere, type Logger, type RedisConnection } from './connection'
import { createKeyCache } from './key-cache'

/** How many disable records (keys) a process keeps at most; beyond that the least recently used is dropped. */
export const CACHED_RECORDS_MAX = 10_000

/** The fields of a hash as HGETALL answers them (empty: no such key). */
export type HashFields = Readonly<Record<string, string>>

/** Hash reads kept true by Redis; see the module comment. */
export interface TrackedHashes {
  /** The hash at `key`, from the cache when Redis tracks it for this process, else from Redis. */
  read(what: string, key: string): Promise<HashFields>
  /** Forgets `key` now: this process has just written it (the push may come a moment later). */
  forget(key: string): void
  /**
   * Calls `listener` with each key Redis says changed (only keys this process read through the
   * cache), and with null when changes may have gone unseen (a flush, a new tracking connection).
   */
  onInvalidate(listener: (key: string | null) => void): void
  /** Closes the tracking connection; reads go to the main connection afterwards. */
  close(): Promise<void>
}

export interface TrackedHashesOptions {
  readonly redis: RedisConfig
  readonly timeoutMs: number
  readonly log: Logger
  /** Default CACHED_RECORDS_MAX. */
  readonly maxEntries?: number
}

/**
 * TrackedHashes over `connection`'s server, connecting its tracking connection in the background.
 * About 60 lines: every part shares the tracking client and the cache, so it stays one closure.
 */
export function trackHashes(connection: RedisConnection, options: TrackedHashesOptions): TrackedHashes {
  const { redis, timeoutMs, log } = options
  const cache = createKeyCache<HashFields>(options.maxEntries ?? CACHED_RECORDS_MAX)
  const tracker = connection.trackingClient()
  const where = `${redisWhere(redis)} (disable-record cache)`
  let lastError = ''
  let closed = false

  const listeners: ((key: string | null) => void)[] = []
  const tell = (key: string | null): void => {
    for (const listener of listeners) listener(key)
  }
  const clear = (): void => cache.clear()
  tracker.on('invalidate', (key: Buffer | string | null) => {
    // null: the server flushed its tracking table (FLUSHALL, FLUSHDB, a failover): forget all.
    if (key === null) clear()
    else cache.invalidate(key.toString())
    tell(key === null ? null : key.toString())
  })
  // Whatever the tracking connection did not see cannot be trusted: a drop, an error, a new connection.
  for (const event of ['error', 'end', 'reconnecting', 'ready'] as const) tracker.on(event, clear)
  tracker.on('error', (err: Error) => {
    if (err.message !== lastError)
      log.warn(`${where}: ${err.message}; disable records are read from Redis at every lookup meanwhile`)
    lastError = err.message
  })
  tracker.on('ready', () => {
    if (lastError) log.info(`${where}: tracking again`)
    lastError = ''
    // Whatever changed while no connection tracked went unannounced.
    tell(null)
  })
  connection.onFailure(clear)
  tracker.connect().catch(() => undefined)

  return {
    async read(what: string, key: string): Promise<HashFields> {
      if (closed || !tracker.isReady) return connection.call(what, (client) => client.hGetAll(key))
      const hit = cache.get(key)
      if (hit) return hit
      const ticket = cache.begin(key)
      try {
        const fields = Object.freeze(await connection.call(what, () => tracker.hGetAll(key)))
        cache.settle(ticket, fields)
        return fields
      } catch (err) {
        cache.abandon(ticket)
        throw err
      }
    },
    forget: (key) => cache.invalidate(key),
    onInvalidate: (listener) => void listeners.push(listener),
    async close(): Promise<void> {
      closed = true
      clear()
      try {
        if (tracker.isOpen) await withTimeout(tracker.close(), timeoutMs, `${where}: close`)
      } catch {
        tracker.destroy()
      }
    },
  }
}
