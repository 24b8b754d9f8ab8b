/**
 * Checking Redis against the journal: one account whose journaled record Redis does not show,
 * every journaled account at each (re)connect and periodically, and the record to go by while
 * Redis cannot answer.
 */
import type { DisabledRecord } from '..'
import { toRecord, type Logger, type RedisStore } from '../redis'
import { name, type JournalCache } from './cache'
import type { JournalEntry } from './file'

/** What the checks work on: the Redis store, this process's journal and the log. */
export interface Journaled {
  readonly store: RedisStore
  readonly journal: JournalCache
  readonly log: Logger
}

/** Redis does not show the journaled record of the account: finds out why, and acts. */
export async function reconcile(j: Journaled, account: string, entry: JournalEntry): Promise<DisabledRecord | null> {
  const found = await j.store.reassert(account, entry.fields)
  switch (found.state) {
    case 'present':
      if (found.stored.record.incident !== entry.incident) await j.journal.remember(account, found.stored)
      return found.stored.record
    case 'enabled':
      await j.journal.forget(account, entry.incident)
      j.log.info(`journal: ${name(account)} was enabled since incident ${entry.incident}; forgotten`)
      return null
    case 'restored':
      j.log.warn(
        `re-asserted disabled flag of ${name(account)} lost by Redis (incident ${entry.incident}, disabled at ${new Date(entry.at).toISOString()})`,
      )
      return found.record
  }
}

/** Journals the account's current record, when it has one (after Redis said it is disabled); failures are logged. */
export async function rememberCurrent(j: Journaled, account: string): Promise<void> {
  try {
    const stored = await j.store.getStored(account)
    if (stored) await j.journal.remember(account, stored)
  } catch (err) {
    j.log.error(`journal: could not read the disable record of ${name(account)}: ${(err as Error).message}`)
  }
}

/** The checks of every journaled account, one at a time, and the fallback while Redis cannot answer. */
export interface Checks {
  /** Checks every journaled record against Redis; a call during a check runs it once more afterwards. */
  checkAll(why: string): Promise<void>
  /** Checks everything after a (re)connect, warning when `runId` shows a restarted or replaced Redis. */
  connected(runId: string): void
  /**
   * Redis cannot answer: an account the journal holds counts as disabled meanwhile, whatever
   * on_store_error says (the journal is this server's own knowledge that it was).
   */
  journaledRecord(account: string, entry: JournalEntry, err: unknown): DisabledRecord
  /** True while a check runs. */
  busy(): boolean
  /** Stops checking; resolves when a check under way has ended. */
  close(): Promise<void>
}

/** The checks over `j` (see Checks). */
export function createChecks(j: Journaled): Checks {
  const { log } = j
  let closed = false
  let lastRunId = ''
  let checking: Promise<void> | null = null
  let rerun: string | null = null
  let unansweredReported = 0

  function checkAll(why: string): Promise<void> {
    if (checking) {
      // A check under way may have read Redis before it came back: run once more after it.
      rerun = why
      return checking
    }
    checking = checkEach(j, why, () => closed).finally(() => {
      checking = null
      const again = rerun
      rerun = null
      if (again !== null && !closed) void checkAll(again)
    })
    return checking
  }

  return {
    checkAll,
    connected(runId: string): void {
      if (closed) return
      const why =
        lastRunId && runId && runId !== lastRunId
          ? `Redis restarted or replaced: run_id ${lastRunId} -> ${runId}`
          : 'connected'
      if (why !== 'connected') log.warn(`journal: ${why}; checking every journaled disable`)
      if (runId) lastRunId = runId
      void checkAll(why)
    },
    journaledRecord(account: string, entry: JournalEntry, err: unknown): DisabledRecord {
      if (Date.now() - unansweredReported > 60_000) {
        unansweredReported = Date.now()
        log.warn(
          `journal: Redis cannot answer (${(err as Error).message}); accounts in the journal stay disabled meanwhile`,
        )
      }
      return (
        toRecord({ ...entry.fields }) ?? {
          account,
          reason: 'limit',
          by: 'journal',
          at: entry.at,
          incident: entry.incident,
          counts: [],
          evidence: [],
        }
      )
    },
    busy: () => checking !== null,
    async close(): Promise<void> {
      closed = true
      await checking?.catch(() => undefined)
    },
  }
}

/** One pass over the journal, read afresh (other processes write it too); stops at the first failure. */
async function checkEach(j: Journaled, why: string, closed: () => boolean): Promise<void> {
  try {
    await j.journal.reload()
  } catch (err) {
    j.log.error(`journal: ${(err as Error).message}`)
    return
  }
  for (const [account, entry] of j.journal.entries()) {
    if (closed()) return
    try {
      await reconcile(j, account, entry)
    } catch (err) {
      j.log.error(`journal: could not check ${name(account)} (${why}): ${(err as Error).message}`)
      return
    }
  }
  if (j.journal.size() > 0 && why !== 'periodic check')
    j.log.info(`journal: ${j.journal.size()} disabled account(s) checked against Redis (${why})`)
}
