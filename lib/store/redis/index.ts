/**
 * The Redis store: the store methods (here), each one Lua script (scripts/, each with its encoder
 * and decoder) or a few commands over the connection (connection.ts: the client, timeouts, fail-fast, reconnects).
 */
import type { Rule } from '../../config'
import {
  accountKeys,
  AUDIT_LOG,
  countingKeys,
  decodeAccount,
  disabledKeyAccount,
  PASSWORDS_PENDING,
  PREFIX,
  PROBATION,
  tokenKey,
} from '../keys'
import { connectRedis, type RedisConnection, type RedisConnectionOptions } from './connection'
import { trackHashes, type HashFields, type TrackedHashes } from './tracking'
import { AUTH_FAILURE, DISABLE, DROP_HELD, ENABLE, REASSERT, RECORD, REDEEM } from './scripts'
import {
  AUDIT_CAP,
  EVIDENCE_CAP,
  PASSWORDS_CAP,
  toAuditEntry,
  withProbation,
  parseEvidence,
  parseNetworks,
  parseRuleCounts,
  StoreError,
  windowCount,
  type AuditEntry,
  type DisabledRecord,
  type DisableInput,
  type HeldState,
  type RedeemResult,
  type MessageSummary,
  type RecordInput,
  type RecordResult,
  type Store,
  type WindowCount,
} from '..'
import { tokenDigest } from '../../ids'
import { toPasswordHash, type PasswordHash } from '../../password'
import { totalsAt } from '../series'

export type { Logger } from './connection'
export { durabilityRisks } from './connection'

/** How to reach Redis, how long to wait, where to log (see RedisConnectionOptions), and whether to cache. */
export interface RedisStoreOptions extends RedisConnectionOptions {
  /**
   * Serve getDisabled/getStored from a cache Redis keeps true (tracking.ts: a second connection
   * with CLIENT TRACKING). For Haraka's mail path; a one-shot caller (the CLI) leaves it off.
   */
  readonly cacheDisabled?: boolean
}

/** A disable record and the fields it is stored as. */
export interface StoredRecord {
  readonly record: DisabledRecord
  readonly fields: Readonly<Record<string, string>>
}

/** What the REASSERT script found (see lib/store/redis/scripts/reassert.ts). */
export type ReassertResult =
  | { readonly state: 'present'; readonly stored: StoredRecord }
  | { readonly state: 'enabled' }
  | { readonly state: 'restored'; readonly record: DisabledRecord }

/** The Redis store, with what a journal (lib/store/journal/) needs beyond the Store interface. */
export interface RedisStore extends Store {
  /** The account's disable record with its stored fields, or null (one HGETALL, like getDisabled). */
  getStored(account: string): Promise<StoredRecord | null>
  /** Writes `fields` back as the account's disable record unless one is there or an enable cleared it. */
  reassert(account: string, fields: Readonly<Record<string, string>>): Promise<ReassertResult>
  /** Calls `listener` after every (re)connect with Redis's run_id ('' when INFO is refused). */
  onConnect(listener: (runId: string) => void): void
}

/**
 * A Store on Redis with its own node-redis client. It connects in the background and never
 * waits for the connection: while Redis is down every call fails fast with StoreError, and the
 * client reconnects by itself (see connectRedis).
 */
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  const redis = connectRedis(options)
  const records = options.cacheDisabled ? trackHashes(redis, options) : uncachedHashes(redis)
  // Told of this process's own enables at once (the invalidation Redis pushes comes too, a moment later).
  const enables: ((account: string) => void)[] = []
  const enabled = (account: string): void => {
    for (const listener of enables) listener(account)
  }
  return {
    kind: 'redis',
    ...countingMethods(redis, records),
    ...disableMethods(redis, records, enabled),
    ...auditMethods(redis),
    ...heldMethods(redis, records),
    ...passwordMethods(redis, records),
    watchEnables(listener) {
      enables.push(listener)
      records.onInvalidate((key) => {
        const account = key === null ? null : disabledKeyAccount(key)
        if (key === null || account !== null) listener(account)
      })
    },
    async authFailure(input) {
      return AUTH_FAILURE.decode(await redis.evalScript(AUTH_FAILURE, AUTH_FAILURE.encode(input)), input)
    },
    onConnect: (listener) => redis.onConnect(listener),
    ready: (waitMs) => redis.ready(waitMs),
    async close(): Promise<void> {
      await records.close()
      await redis.close()
    },
  }
}

/**
 * The hashes of passwords in use at a disable: one hash per account, a field per incident, and
 * the accounts that have any in PASSWORDS_PENDING. AUTH reads the latter through the cache the
 * disable records use: an account with nothing pending costs no round trip, and no command for a
 * process that has read the (rarely changing) list once.
 */
function passwordMethods(
  redis: RedisConnection,
  records: TrackedHashes,
): Pick<RedisStore, 'rememberPassword' | 'oldPasswords' | 'forgetPasswords' | 'startProbation' | 'probationUntil'> {
  const read = async (account: string): Promise<PasswordHash[]> => {
    const pending = await records.read('oldPasswords', PASSWORDS_PENDING)
    if (pending[account] === undefined) return []
    const fields = await records.read('oldPasswords', accountKeys(account).oldPasswords)
    return Object.values(fields)
      .flatMap((json) => {
        try {
          return toPasswordHash(JSON.parse(json))
        } catch {
          return []
        }
      })
      .sort((a, b) => b.at - a.at)
  }
  const writing = async <T>(account: string, write: () => Promise<T>): Promise<T> => {
    try {
      return await write()
    } finally {
      records.forget(accountKeys(account).oldPasswords)
      records.forget(PASSWORDS_PENDING)
    }
  }
  return {
    oldPasswords: read,

    async probationUntil(account: string, now: number): Promise<number> {
      const until = Number((await records.read('probationUntil', PROBATION))[account] ?? 0) || 0
      return until > now ? until : 0
    },

    async startProbation(account: string, until: number): Promise<void> {
      try {
        const all = await redis.call('startProbation', (client) => client.hGetAll(PROBATION))
        const now = Date.now()
        const past = Object.entries(all as Record<string, string>)
          .filter(([a, u]) => a !== account && Number(u) <= now)
          .map(([a]) => a)
        if (past.length) await redis.call('startProbation', (client) => client.hDel(PROBATION, past))
        await redis.call('startProbation', (client) =>
          until > 0 ? client.hSet(PROBATION, account, String(until)) : client.hDel(PROBATION, account),
        )
      } finally {
        records.forget(PROBATION)
      }
    },

    async rememberPassword(account: string, hash: PasswordHash): Promise<void> {
      const key = accountKeys(account).oldPasswords
      await writing(account, async () => {
        await redis.call('rememberPassword', (client) => client.hSet(key, hash.incident, JSON.stringify(hash)))
        await redis.call('rememberPassword', (client) => client.hSet(PASSWORDS_PENDING, account, hash.incident))
      })
      const older = (await read(account)).slice(PASSWORDS_CAP).map((h) => h.incident)
      if (older.length)
        await writing(account, () => redis.call('rememberPassword', (client) => client.hDel(key, older)))
    },

    async forgetPasswords(account: string): Promise<boolean> {
      return writing(account, async () => {
        const removed = await redis.call('forgetPasswords', (client) => client.del(accountKeys(account).oldPasswords))
        await redis.call('forgetPasswords', (client) => client.hDel(PASSWORDS_PENDING, account))
        return Number(removed) > 0
      })
    },
  }
}

/** Reads of the disable records straight from Redis, for a store without the cache. */
function uncachedHashes(redis: RedisConnection): TrackedHashes {
  return {
    read: (what, key) => redis.call(what, (client) => client.hGetAll(key)),
    forget: () => undefined,
    onInvalidate: () => undefined,
    close: async () => undefined,
  }
}

/** Counting messages against the limits, and the counters and evidence that come of it. */
function countingMethods(
  redis: RedisConnection,
  records: TrackedHashes,
): Pick<RedisStore, 'record' | 'invalid' | 'reset' | 'counts' | 'evidence'> {
  const counting = async (given: RecordInput, counter: 'messages' | 'invalid'): Promise<RecordResult> => {
    // The probation list is read through the cache Redis keeps true: no round trip in steady state.
    const until =
      given.probationFactor === undefined
        ? 0
        : Number((await records.read('probationUntil', PROBATION))[given.account] ?? 0) || 0
    const input = withProbation(given, until, Date.now())
    const result = await recordMessage(redis, input, counter)
    // refused: this call wrote the record; disabled: the cache may not have heard of it yet.
    if (result.status !== 'ok') records.forget(accountKeys(input.account).disabled)
    return result
  }
  return {
    record: (input) => counting(input, 'messages'),

    invalid: (input) => counting(input, 'invalid'),

    async reset(account: string): Promise<void> {
      const k = accountKeys(account)
      await redis.call('reset', (client) => client.del(countingKeys(k)))
    },

    async counts(account: string, rules: readonly Rule[]): Promise<WindowCount[]> {
      const k = accountKeys(account)
      const [fields, seen, time] = await redis.call('counts', (client) =>
        Promise.all([client.hGetAll(k.counts), client.zRangeWithScores(k.networks, 0, -1), client.time()]),
      )
      const now = timeToMs(time)
      const networks = new Map(seen.map((e) => [e.value, e.score]))
      const totals = totalsAt(new Map(Object.entries(fields as Record<string, string>)), rules, now, networks)
      return rules.map((r, i) => windowCount(r, totals[i] ?? 0))
    },

    async evidence(account: string): Promise<MessageSummary[]> {
      const rows = await redis.call('evidence', (client) =>
        client.lRange(accountKeys(account).evidence, 0, EVIDENCE_CAP - 1),
      )
      return parseEvidence(`[${rows.join(',')}]`)
    },
  }
}

/** Counts one message (or invalid recipients) and checks the limits in one RECORD script (see RecordResult). */
async function recordMessage(
  redis: RedisConnection,
  input: RecordInput,
  counter: 'messages' | 'invalid',
): Promise<RecordResult> {
  const result = RECORD.decode(await redis.evalScript(RECORD, RECORD.encode(input, counter)), input)
  if (result.status === 'refused') await storeToken(redis, input)
  return result
}

/** Points the new token's digest at the account; a failure is logged (the disable stands). */
async function storeToken(redis: RedisConnection, input: RecordInput): Promise<void> {
  // The token pointer lives outside the account's slot, so it cannot be written by the script.
  await redis
    .call('token', (client) =>
      client.set(tokenKey(tokenDigest(input.token)), input.account, { PX: 2 * input.tokenTtlMs }),
    )
    .catch((err: Error) =>
      redis.log.error(`could not store the reactivation token of ${JSON.stringify(input.account)}: ${err.message}`),
    )
}

/** The disable records: reading, writing back, disabling and enabling by hand or by token. */
function disableMethods(
  redis: RedisConnection,
  records: TrackedHashes,
  enabled: (account: string) => void,
): Pick<
  RedisStore,
  'getDisabled' | 'getStored' | 'reassert' | 'disable' | 'enable' | 'tokenAccount' | 'redeem' | 'listDisabled'
> {
  const read = (account: string): Promise<HashFields> => records.read('getDisabled', accountKeys(account).disabled)
  // This process's own writes of a record: forgotten at once, whatever the push's timing.
  const writing = async <T>(account: string, write: Promise<T>): Promise<T> => {
    try {
      return await write
    } finally {
      records.forget(accountKeys(account).disabled)
    }
  }
  const getDisabled = async (account: string): Promise<DisabledRecord | null> => toRecord(await read(account))
  return {
    getDisabled,

    async getStored(account: string): Promise<StoredRecord | null> {
      const fields = await read(account)
      const record = toRecord(fields)
      return record ? { record, fields } : null
    },

    reassert: (account, fields) => writing(account, reassert(redis, account, fields)),

    async disable(input: DisableInput): Promise<boolean> {
      return DISABLE.decode(await writing(input.account, redis.evalScript(DISABLE, DISABLE.encode(input))))
    },

    async enable(account: string): Promise<boolean> {
      const was = ENABLE.decode(await writing(account, redis.evalScript(ENABLE, ENABLE.encode(account))))
      if (was) enabled(account)
      return was
    },

    async tokenAccount(token: string): Promise<string | null> {
      return (await redis.call('tokenAccount', (client) => client.get(tokenKey(tokenDigest(token))))) ?? null
    },

    async redeem(account: string, token: string): Promise<RedeemResult> {
      const result = REDEEM.decode(await writing(account, redis.evalScript(REDEEM, REDEEM.encode(account, token))))
      if (result === 'ok') enabled(account)
      return result
    },

    async listDisabled(): Promise<DisabledRecord[]> {
      const names = await disabledAccounts(redis)
      const records = await Promise.all(names.map((name) => getDisabled(name)))
      return records.filter((r): r is DisabledRecord => r !== null).sort((a, b) => b.at - a.at)
    },
  }
}

async function reassert(
  redis: RedisConnection,
  account: string,
  fields: Readonly<Record<string, string>>,
): Promise<ReassertResult> {
  const reply = REASSERT.decode(await redis.evalScript(REASSERT, REASSERT.encode(account, fields)))
  if (reply.state === 'enabled') return reply
  if (reply.state === 'present') {
    const record = toRecord(reply.fields)
    if (record) return { state: 'present', stored: { record, fields: reply.fields } }
    throw new StoreError(`reassert: unreadable record ${JSON.stringify(reply.fields)}`, { failure: 'reply' })
  }
  const record = toRecord({ ...fields })
  await restoreToken(redis, account, fields)
  if (record) return { state: 'restored', record }
  throw new StoreError(`reassert: unreadable record ${JSON.stringify(fields)}`, { failure: 'reply' })
}

/** Writes back the token pointer of a restored record, for the rest of its lifetime; a failure is logged. */
async function restoreToken(
  redis: RedisConnection,
  account: string,
  fields: Readonly<Record<string, string>>,
): Promise<void> {
  // The token pointer lives outside the slot and was lost too: without it a reply finds no account.
  const digest = fields.token_sha256 ?? ''
  const expires = Number(fields.token_expires) || 0
  const keepMs = expires - Date.now() + (expires - (Number(fields.at) || expires))
  if (digest && keepMs > 0) {
    await redis
      .call('token', (client) => client.set(tokenKey(digest), account, { PX: keepMs }))
      .catch((err: Error) =>
        redis.log.error(
          `could not restore the reactivation token pointer of ${JSON.stringify(account)}: ${err.message}`,
        ),
      )
  }
}

/** The accounts that have a disable record. */
async function disabledAccounts(redis: RedisConnection): Promise<string[]> {
  // The disable records are the truth: scan for them (an operator command, not a mail path).
  const pattern = `${PREFIX}:{*}:disabled`
  return redis.call('listDisabled', async (client) => {
    const found: string[] = []
    for await (const keys of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
      for (const key of [keys].flat()) {
        const m = /^hijack-guard:\{(.*)\}:disabled$/.exec(String(key))
        if (m?.[1] !== undefined) found.push(decodeAccount(m[1]))
      }
    }
    return found
  })
}

/** The audit trail: one capped list. */
function auditMethods(redis: RedisConnection): Pick<RedisStore, 'audit' | 'auditLog'> {
  return {
    async audit(entry: AuditEntry): Promise<void> {
      await redis.call('audit', (client) =>
        client
          .multi()
          .lPush(AUDIT_LOG, JSON.stringify(entry))
          .lTrim(AUDIT_LOG, 0, AUDIT_CAP - 1)
          .exec(),
      )
    },

    async auditLog(options: { account?: string; limit?: number } = {}): Promise<AuditEntry[]> {
      const rows: string[] = await redis.call('auditLog', (client) => client.lRange(AUDIT_LOG, 0, -1))
      const entries = rows.flatMap((row) => {
        try {
          return toAuditEntry(JSON.parse(row))
        } catch {
          return []
        }
      })
      const mine = options.account === undefined ? entries : entries.filter((e) => e.account === options.account)
      return mine.slice(0, options.limit ?? mine.length)
    },
  }
}

/** Queued mail of disabled accounts: held, released, or marked for dropping. */
function heldMethods(
  redis: RedisConnection,
  records: TrackedHashes,
): Pick<RedisStore, 'heldState' | 'hold' | 'release' | 'heldCount' | 'dropHeld'> {
  return {
    async heldState(account: string): Promise<HeldState> {
      const k = accountKeys(account)
      // The record through the cache: Redis then tracks it for this process and announces the
      // enable that releases the held message (watchEnables).
      const [record, dropBefore] = await Promise.all([
        records.read('heldState', k.disabled),
        redis.call('heldState', (client) => client.get(k.dropBefore)),
      ])
      return { disabled: Object.keys(record).length > 0, dropBefore: Number(dropBefore) || 0 }
    },

    async hold(account: string, id: string, ttlMs: number): Promise<void> {
      const k = accountKeys(account)
      await redis.call('hold', (client) => client.multi().sAdd(k.held, id).pExpire(k.held, ttlMs).exec())
    },

    async release(account: string, id: string): Promise<boolean> {
      return Number(await redis.call('release', (client) => client.sRem(accountKeys(account).held, id))) > 0
    },

    async heldCount(account: string): Promise<number> {
      return Number(await redis.call('heldCount', (client) => client.sCard(accountKeys(account).held)))
    },

    async dropHeld(account: string, ttlMs: number): Promise<number> {
      return DROP_HELD.decode(await redis.evalScript(DROP_HELD, DROP_HELD.encode(account, ttlMs)))
    },
  }
}

/** A disable record from its stored fields, or null when there are none. */
export function toRecord(h: Readonly<Record<string, string>>): DisabledRecord | null {
  if (!h || Object.keys(h).length === 0) return null
  const counts = parseRuleCounts(h.rules, h.totals)
  const over = counts[Number(h.over) - 1]
  return {
    account: h.account ?? '',
    reason: h.reason ?? '',
    by: h.by ?? '',
    at: Number(h.at) || 0,
    incident: h.incident ?? '',
    ...(over ? { over } : {}),
    counts,
    evidence: parseEvidence(h.evidence),
    ...(Number(h.token_expires) > 0 ? { tokenExpiresAt: Number(h.token_expires) } : {}),
    ...(h.networks ? { networks: parseNetworks(h.networks) } : {}),
  }
}

function timeToMs(time: unknown): number {
  if (time instanceof Date) return time.getTime()
  if (Array.isArray(time)) return Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000)
  return Date.now()
}
