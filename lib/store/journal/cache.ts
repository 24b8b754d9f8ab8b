/**
 * This process's copy of the journal file: what the file held when this process last read or
 * wrote it, changed only through the file, and re-read when another process changed it.
 */
import type { Logger, StoredRecord } from '../redis'
import { toEntry, type JournalEntry, type JournalFile } from './file'

/** The journal as this process knows it. */
export interface JournalCache {
  /** The account's journaled record, or undefined. */
  get(account: string): JournalEntry | undefined
  has(account: string): boolean
  /** Every journaled account and its record (a copy: checking them may change the journal). */
  entries(): [string, JournalEntry][]
  /** How many accounts the journal holds. */
  size(): number
  /** Journals a record this process wrote or saw, unless it holds that incident already. */
  remember(account: string, stored: StoredRecord): Promise<void>
  /** Forgets an account's record: of `incident` only, or whatever it is (after an enable here). */
  forget(account: string, incident?: string): Promise<void>
  /** Reads the file afresh; rejects when it cannot be read. */
  reload(): Promise<void>
  /** Re-reads the file every `everyMs` when another process replaced it, unless `busy()`; answers the timer. */
  follow(everyMs: number, busy: () => boolean): NodeJS.Timeout
}

/** An account name as log lines quote it. */
export const name = (account: string): string => JSON.stringify(account)

/**
 * The journal in `file`, empty until reload(); a failed change is logged, never thrown. About 60
 * lines: every method shares the cached entries and their file stamp, so it stays one closure.
 */
export function createJournalCache(file: JournalFile, log: Logger): JournalCache {
  let cache = new Map<string, JournalEntry>()
  let cacheStamp = ''

  async function change(what: string, fn: (entries: Map<string, JournalEntry>) => boolean): Promise<void> {
    try {
      cache = await file.update(fn)
      cacheStamp = await file.stamp()
    } catch (err) {
      log.error(`journal: could not ${what}: ${(err as Error).message}`)
    }
  }

  return {
    get: (account) => cache.get(account),
    has: (account) => cache.has(account),
    entries: () => [...cache],
    size: () => cache.size,

    async remember(account: string, stored: StoredRecord): Promise<void> {
      const entry = toEntry(stored.fields)
      if (cache.get(account)?.incident === entry.incident) return
      cache.set(account, entry)
      await change(`journal the disable of ${name(account)}`, (entries) => {
        if (entries.get(account)?.incident === entry.incident) return false
        entries.set(account, entry)
        return true
      })
    },

    async forget(account: string, incident?: string): Promise<void> {
      if (incident !== undefined && cache.get(account)?.incident !== incident) return
      cache.delete(account)
      await change(`drop ${name(account)} from the journal`, (entries) => {
        const entry = entries.get(account)
        if (!entry || (incident !== undefined && entry.incident !== incident)) return false
        entries.delete(account)
        return true
      })
    },

    async reload(): Promise<void> {
      cache = await file.load()
      cacheStamp = await file.stamp()
    },

    follow(everyMs: number, busy: () => boolean): NodeJS.Timeout {
      const timer = setInterval(() => {
        void file
          .stamp()
          .then(async (stamp) => {
            if (stamp === cacheStamp || busy()) return
            cache = await file.load()
            cacheStamp = stamp
          })
          .catch(() => undefined)
      }, everyMs)
      timer.unref()
      return timer
    },
  }
}
