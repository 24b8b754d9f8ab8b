/**
 * The journal: this server's durable memory of the disable records it wrote or saw in Redis, so
 * that a Redis that loses data (a restart without persistence, a failover to a replica that
 * missed the write, eviction, FLUSHALL) cannot silently re-enable an account. See docs/store.md.
 *
 * withJournal() wraps the Redis store: when Redis says an account is not disabled and the journal
 * holds a record of it, the REASSERT script either finds the tombstone of an enable (the journal
 * forgets the record) or writes the record back (WARN). An account the journal does not hold costs
 * nothing extra.
 *
 * This folder: the file (file.ts), this process's copy of it (cache.ts), the checks of Redis
 * against it (reconcile.ts), and withJournal (here).
 */
import type { DisabledRecord, DisableInput, HeldState, RecordInput, RecordResult, RedeemResult, Store } from '..'
import type { Logger, RedisStore } from '../redis'
import { createJournalCache } from './cache'
import type { JournalFile } from './file'
import { createChecks, reconcile, rememberCurrent, type Checks, type Journaled } from './reconcile'

export { createJournalFile, parseJournal, serializeJournal, type JournalEntry, type JournalFile } from './file'

/** The journal's file, log and check intervals. */
export interface JournalOptions {
  readonly file: JournalFile
  readonly log: Logger
  /** How often every journaled record is checked against Redis (ms). */
  readonly checkMs: number
  /** How often the file is looked at for entries other processes wrote (ms). */
  readonly refreshMs?: number
}

/**
 * The Redis store with the journal layered over it (see the module comment). Every journal
 * failure is logged and never fails a store call: the flag in Redis still holds.
 */
export function withJournal(store: RedisStore, options: JournalOptions): Store {
  const { file, log, checkMs } = options
  const j: Journaled = { store, journal: createJournalCache(file, log), log }
  const checks = createChecks(j)
  store.onConnect((runId) => checks.connected(runId))
  const checkTimer = setInterval(() => void checks.checkAll('periodic check'), checkMs)
  checkTimer.unref()
  // Other processes of this server journal too: reload the file when it changed.
  const refreshTimer = j.journal.follow(options.refreshMs ?? 1000, () => checks.busy())
  // The journal as it was when this process started.
  void j.journal.reload().catch((err: unknown) => log.error(`journal: ${(err as Error).message}`))

  return {
    ...store,
    ...fallbackMethods(j, checks),
    ...followingMethods(j),

    async close(): Promise<void> {
      clearInterval(checkTimer)
      clearInterval(refreshTimer)
      await checks.close()
      await store.close()
    },
  }
}

/** The answers Redis may have lost: checked against the journal, and taken from it while Redis cannot answer. */
function fallbackMethods(
  j: Journaled,
  checks: Checks,
): Pick<Store, 'getDisabled' | 'record' | 'invalid' | 'heldState'> {
  const { store, journal } = j
  // record() and invalid() may disable: journaled alike, and refused from the journal while Redis cannot answer.
  const counting = async (
    input: RecordInput,
    count: (input: RecordInput) => Promise<RecordResult>,
  ): Promise<RecordResult> => {
    const entry = journal.get(input.account)
    let result: RecordResult
    try {
      if (entry) await reconcile(j, input.account, entry)
      result = await count(input)
    } catch (err) {
      if (!entry) throw err
      const record = checks.journaledRecord(input.account, entry, err)
      return { status: 'disabled', counts: [], flipped: false, by: record.by }
    }
    if (
      (result.status === 'refused' && result.flipped) ||
      (result.status === 'disabled' && !journal.has(input.account))
    )
      await rememberCurrent(j, input.account)
    return result
  }
  return {
    async getDisabled(account: string): Promise<DisabledRecord | null> {
      const entry = journal.get(account)
      try {
        const stored = await store.getStored(account)
        if (stored) {
          if (entry?.incident !== stored.record.incident) await journal.remember(account, stored)
          return stored.record
        }
        return entry ? await reconcile(j, account, entry) : null
      } catch (err) {
        if (!entry) throw err
        return checks.journaledRecord(account, entry, err)
      }
    },

    record: (input) => counting(input, (i) => store.record(i)),

    invalid: (input) => counting(input, (i) => store.invalid(i)),

    async heldState(account: string): Promise<HeldState> {
      const entry = journal.get(account)
      let state: HeldState
      try {
        if (entry) await reconcile(j, account, entry)
        state = await store.heldState(account)
      } catch (err) {
        if (!entry) throw err
        checks.journaledRecord(account, entry, err)
        return { disabled: true, dropBefore: 0 }
      }
      if (state.disabled && !journal.has(account)) await rememberCurrent(j, account)
      return state
    },
  }
}

/** The changes the journal follows: a disable is journaled, an enable forgets the record. */
function followingMethods(j: Journaled): Pick<Store, 'disable' | 'enable' | 'redeem'> {
  const { store, journal } = j
  return {
    async disable(input: DisableInput): Promise<boolean> {
      const done = await store.disable(input)
      if (done) await rememberCurrent(j, input.account)
      return done
    },

    async enable(account: string): Promise<boolean> {
      const was = await store.enable(account)
      await journal.forget(account)
      return was
    },

    async redeem(account: string, token: string): Promise<RedeemResult> {
      const result = await store.redeem(account, token)
      if (result === 'ok') await journal.forget(account)
      return result
    },
  }
}
