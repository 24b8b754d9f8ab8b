/**
 * The Redis store: its own node-redis client, connected in the background and never awaited,
 * every call bounded by store_timeout, one Lua script per operation (scripts.ts).
 */
import { createClient } from 'redis'
import type { RedisConfig, Rule } from '../../config'
import { accountKeys, AUDIT_LOG, decodeAccount, PREFIX, tokenKey } from '../keys'
import { DISABLE, DROP_HELD, ENABLE, REASSERT, RECORD, REDEEM, type Script } from './scripts'
import {
  AUDIT_CAP,
  describeRules,
  EVIDENCE_CAP,
  toAuditEntry,
  parseEvidence,
  parseRuleCounts,
  StoreError,
  windowCount,
  withTimeout,
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
import { randomId, tokenDigest } from '../../ids'
import { windowTotals } from '../buckets'

export interface Logger {
  info(msg: string): void
  warn(msg: string): void
  error(msg: string): void
}

export interface RedisStoreOptions {
  readonly redis: RedisConfig
  readonly timeoutMs: number
  readonly log: Logger
  /** Check at each (re)connect that Redis keeps the flags (CONFIG GET) and log what is at risk. */
  readonly checkDurability?: boolean
}

/** A disable record and the fields it is stored as. */
export interface StoredRecord {
  readonly record: DisabledRecord
  readonly fields: Readonly<Record<string, string>>
}

/** What the REASSERT script found (see lib/store/redis/scripts.ts). */
export type ReassertResult =
  | { readonly state: 'present'; readonly stored: StoredRecord }
  | { readonly state: 'enabled' }
  | { readonly state: 'restored'; readonly record: DisabledRecord }

/** The Redis store, with what a journal (lib/store/journal.ts) needs beyond the Store interface. */
export interface RedisStore extends Store {
  /** The account's disable record with its stored fields, or null (one HGETALL, like getDisabled). */
  getStored(account: string): Promise<StoredRecord | null>
  /** Writes `fields` back as the account's disable record unless one is there or an enable cleared it. */
  reassert(account: string, fields: Readonly<Record<string, string>>): Promise<ReassertResult>
  /** Calls `listener` after every (re)connect with Redis's run_id ('' when INFO is refused). */
  onConnect(listener: (runId: string) => void): void
}

type Reply = unknown

const RECONNECT_MAX_MS = 1000

/**
 * A Store on Redis with its own node-redis client. It connects in the background and never
 * waits for the connection: while Redis is down every call fails fast with StoreError, and the
 * client reconnects by itself (at most RECONNECT_MAX_MS apart).
 */
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  const { redis, timeoutMs, log } = options
  const client = createClient({
    socket: {
      host: redis.host,
      port: redis.port,
      connectTimeout: Math.max(timeoutMs, 1000),
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, RECONNECT_MAX_MS),
    },
    database: redis.db,
    ...(redis.username ? { username: redis.username } : {}),
    ...(redis.password ? { password: redis.password } : {}),
    disableOfflineQueue: true,
  })
  const where = `redis ${redis.host}:${redis.port}/${redis.db}`
  let lastError = ''
  // node-redis reports every failed reconnect; log each distinct failure once.
  const reportError = (err: Error): void => {
    if (err.message !== lastError) log.error(`${where}: ${err.message}`)
    lastError = err.message
  }
  client.on('error', reportError)
  const connectListeners: ((runId: string) => void)[] = []
  client.on('ready', () => {
    if (lastError) log.info(`${where}: connected again`)
    lastError = ''
    void afterConnect()
  })
  client.connect().catch(reportError)

  /** Asks the server who it is (and whether it keeps data), then tells the listeners. */
  async function afterConnect(): Promise<void> {
    let runId = ''
    try {
      const info = String(await call('info', () => client.info('server')))
      runId = /^run_id:(\w+)/m.exec(info)?.[1] ?? ''
    } catch (err) {
      log.info(`${where}: INFO server refused (${(err as Error).message}): a restarted Redis is noticed by the periodic journal check only`)
    }
    if (options.checkDurability) await checkDurability()
    for (const listener of connectListeners) {
      try {
        listener(runId)
      } catch (err) {
        log.error(`${where}: after connect: ${(err as Error).message}`)
      }
    }
  }

  /** Logs a WARN for each setting that lets Redis lose disable records (INFO when it cannot tell). */
  async function checkDurability(): Promise<void> {
    let settings: Record<string, string>
    try {
      settings = {}
      for (const name of ['appendonly', 'save', 'maxmemory-policy']) {
        const reply = (await call('config get', () => client.configGet(name))) as Record<string, string>
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
    if (risks.length === 0) log.info(`${where}: keeps disabled flags (appendonly=${settings.appendonly}, save="${settings.save}", maxmemory-policy=${settings['maxmemory-policy']})`)
  }

  // After a call times out, Redis is presumed stuck: calls fail at once (instead of each waiting
  // timeoutMs) until a PING answers again. One probe at a time.
  let stuckSince = 0
  let probing = false
  function probe(): void {
    if (probing || stuckSince === 0) return
    probing = true
    withTimeout(client.ping(), timeoutMs, 'ping')
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
  let closed = false

  async function call<T>(what: string, work: () => Promise<T>): Promise<T> {
    if (!client.isReady) throw new StoreError(`${what}: ${where} is not connected${lastError ? ` (${lastError})` : ''}`)
    if (stuckSince !== 0) throw new StoreError(`${what}: ${where} has not answered for ${Date.now() - stuckSince} ms`)
    try {
      return await withTimeout(work(), timeoutMs, `${what} on ${where}`)
    } catch (err) {
      if (err instanceof StoreError && err.failure === 'timeout' && stuckSince === 0) {
        stuckSince = Date.now()
        log.error(`${where}: no answer within ${timeoutMs} ms; failing fast until it answers a PING`)
        probe()
      }
      throw err
    }
  }

  async function evalScript(script: Script, keys: string[], args: string[]): Promise<Reply> {
    return call(script.name, async () => {
      try {
        return await client.evalSha(script.sha, { keys, arguments: args })
      } catch (err) {
        if (!String((err as Error)?.message).startsWith('NOSCRIPT')) throw err
        return client.eval(script.source, { keys, arguments: args })
      }
    })
  }

  async function hgetall(what: string, key: string): Promise<Record<string, string>> {
    return call(what, () => client.hGetAll(key))
  }

  const store: RedisStore = {
    kind: 'redis',

    async record(input: RecordInput): Promise<RecordResult> {
      const k = accountKeys(input.account)
      const args = [
        input.mode,
        String(input.recipients),
        JSON.stringify(input.summary),
        String(EVIDENCE_CAP),
        randomId(),
        input.account,
        describeRules(input.rules),
        tokenDigest(input.token),
        String(input.tokenTtlMs),
        String(input.rules.length),
      ]
      for (const r of input.rules) args.push(r.kind === 'messages' ? 'm' : 'r', String(r.max), String(r.bucketMs), String(r.buckets))
      const reply = await evalScript(RECORD, [k.counts, k.evidence, k.disabled, k.monitored], args)
      if (!Array.isArray(reply) || reply.length < 4) throw new StoreError(`record: unexpected reply ${JSON.stringify(reply)}`, { failure: 'reply' })
      const [status, flipped, overIndex] = reply as [string, number, number]
      const counts = input.rules.map((r, i) => windowCount(r, Number(reply[4 + i] ?? 0)))
      const over = counts[Number(overIndex) - 1]
      if (status === 'disabled') return { status, counts: [], flipped: false, by: String(reply[4] ?? '') }
      if (status === 'refused' && over) {
        // The token pointer lives outside the account's slot, so it cannot be written by the script.
        await call('token', () => client.set(tokenKey(tokenDigest(input.token)), input.account, { PX: 2 * input.tokenTtlMs })).catch((err: Error) =>
          log.error(`could not store the reactivation token of ${JSON.stringify(input.account)}: ${err.message}`),
        )
        const at = Number(reply[3])
        const record: DisabledRecord = {
          account: input.account,
          reason: 'limit',
          by: 'limit',
          at,
          incident: String(reply[4 + input.rules.length + 1] ?? ''),
          over,
          counts,
          evidence: parseEvidence(String(reply[4 + input.rules.length] ?? '[]')),
          tokenExpiresAt: at + input.tokenTtlMs,
        }
        return { status, counts, over, flipped: Number(flipped) === 1, record }
      }
      const evidence = Number(flipped) === 1 ? { evidence: parseEvidence(String(reply[4 + input.rules.length] ?? '[]')) } : {}
      return { status: 'ok', counts, ...(over ? { over } : {}), flipped: Number(flipped) === 1, at: Number(reply[3]), ...evidence }
    },

    async tokenAccount(token: string): Promise<string | null> {
      return (await call('tokenAccount', () => client.get(tokenKey(tokenDigest(token))))) ?? null
    },

    async redeem(account: string, token: string): Promise<RedeemResult> {
      const k = accountKeys(account)
      const reply = String(await evalScript(REDEEM, [k.disabled, k.counts, k.evidence, k.monitored, k.enabled], [tokenDigest(token)]))
      if (reply !== 'ok' && reply !== 'not-disabled' && reply !== 'mismatch' && reply !== 'expired') {
        throw new StoreError(`redeem: unexpected reply ${JSON.stringify(reply)}`, { failure: 'reply' })
      }
      return reply
    },

    async audit(entry: AuditEntry): Promise<void> {
      await call('audit', () => client.multi().lPush(AUDIT_LOG, JSON.stringify(entry)).lTrim(AUDIT_LOG, 0, AUDIT_CAP - 1).exec())
    },

    async auditLog(options: { account?: string; limit?: number } = {}): Promise<AuditEntry[]> {
      const rows: string[] = await call('auditLog', () => client.lRange(AUDIT_LOG, 0, -1))
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

    async getDisabled(account: string): Promise<DisabledRecord | null> {
      return toRecord(await hgetall('getDisabled', accountKeys(account).disabled))
    },

    async getStored(account: string): Promise<StoredRecord | null> {
      const fields = await hgetall('getDisabled', accountKeys(account).disabled)
      const record = toRecord(fields)
      return record ? { record, fields } : null
    },

    async reassert(account: string, fields: Readonly<Record<string, string>>): Promise<ReassertResult> {
      const k = accountKeys(account)
      const pairs = Object.entries(fields).flat()
      if (pairs.length === 0) throw new StoreError(`reassert: no fields for ${JSON.stringify(account)}`)
      const reply = await evalScript(REASSERT, [k.disabled, k.enabled], [fields.incident ?? '', fields.at ?? '0', ...pairs])
      const [state, ...rest] = Array.isArray(reply) ? (reply as unknown[]).map(String) : []
      if (state === 'enabled') return { state }
      if (state === 'present') {
        const now: Record<string, string> = {}
        for (let i = 0; i + 1 < rest.length; i += 2) now[rest[i] as string] = rest[i + 1] as string
        const record = toRecord(now)
        if (record) return { state, stored: { record, fields: now } }
      }
      if (state === 'restored') {
        const record = toRecord({ ...fields })
        // The token pointer lives outside the slot and was lost too: without it a reply finds no account.
        const digest = fields.token_sha256 ?? ''
        const expires = Number(fields.token_expires) || 0
        const keepMs = expires - Date.now() + (expires - (Number(fields.at) || expires))
        if (digest && keepMs > 0) {
          await call('token', () => client.set(tokenKey(digest), account, { PX: keepMs })).catch((err: Error) =>
            log.error(`could not restore the reactivation token pointer of ${JSON.stringify(account)}: ${err.message}`),
          )
        }
        if (record) return { state, record }
      }
      throw new StoreError(`reassert: unexpected reply ${JSON.stringify(reply)}`, { failure: 'reply' })
    },

    onConnect(listener: (runId: string) => void): void {
      connectListeners.push(listener)
    },

    async disable(input: DisableInput): Promise<boolean> {
      const k = accountKeys(input.account)
      const fields = ['account', input.account, 'reason', input.reason, 'by', input.by, 'incident', input.incident]
      return Number(await evalScript(DISABLE, [k.disabled], fields)) === 1
    },

    async enable(account: string): Promise<boolean> {
      const k = accountKeys(account)
      return Number(await evalScript(ENABLE, [k.disabled, k.counts, k.evidence, k.monitored, k.enabled], [])) === 1
    },

    async reset(account: string): Promise<void> {
      const k = accountKeys(account)
      await call('reset', () => client.del([k.counts, k.evidence, k.monitored]))
    },

    async counts(account: string, rules: readonly Rule[]): Promise<WindowCount[]> {
      const k = accountKeys(account)
      const [fields, time] = await call('counts', () => Promise.all([client.hGetAll(k.counts), client.time()]))
      const entries = Object.entries(fields as Record<string, string>).map(([f, v]): [string, number] => [f, Number(v)])
      const totals = windowTotals(entries, rules, timeToMs(time))
      return rules.map((r, i) => windowCount(r, totals[i] ?? 0))
    },

    async evidence(account: string): Promise<MessageSummary[]> {
      const rows = await call('evidence', () => client.lRange(accountKeys(account).evidence, 0, -1))
      return parseEvidence(`[${(rows).join(',')}]`)
    },

    async listDisabled(): Promise<DisabledRecord[]> {
      // The disable records are the truth: scan for them (an operator command, not a mail path).
      const pattern = `${PREFIX}:{*}:disabled`
      const names = await call('listDisabled', async () => {
        const found: string[] = []
        for await (const keys of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
          for (const key of [keys].flat()) {
            const m = /^hijack-guard:\{(.*)\}:disabled$/.exec(String(key))
            if (m?.[1] !== undefined) found.push(decodeAccount(m[1]))
          }
        }
        return found
      })
      const records = await Promise.all(names.map((name) => store.getDisabled(name)))
      return records.filter((r): r is DisabledRecord => r !== null).sort((a, b) => b.at - a.at)
    },

    async ready(waitMs: number): Promise<void> {
      const end = Date.now() + waitMs
      while (!client.isReady) {
        if (Date.now() >= end) throw new StoreError(`${where} did not answer within ${waitMs} ms${lastError ? ` (${lastError})` : ''}`, { failure: 'timeout' })
        await new Promise((r) => setTimeout(r, 25))
      }
      await call('ping', () => client.ping())
    },

    async heldState(account: string): Promise<HeldState> {
      const k = accountKeys(account)
      const [disabled, dropBefore] = await call('heldState', () => Promise.all([client.exists(k.disabled), client.get(k.dropBefore)]))
      return { disabled: Number(disabled) === 1, dropBefore: Number(dropBefore) || 0 }
    },

    async hold(account: string, id: string, ttlMs: number): Promise<void> {
      const k = accountKeys(account)
      await call('hold', () => client.multi().sAdd(k.held, id).pExpire(k.held, ttlMs).exec())
    },

    async release(account: string, id: string): Promise<boolean> {
      return Number(await call('release', () => client.sRem(accountKeys(account).held, id))) > 0
    },

    async heldCount(account: string): Promise<number> {
      return Number(await call('heldCount', () => client.sCard(accountKeys(account).held)))
    },

    async dropHeld(account: string, ttlMs: number): Promise<number> {
      const k = accountKeys(account)
      return Number(await evalScript(DROP_HELD, [k.dropBefore, k.held], [String(ttlMs)]))
    },

    async close(): Promise<void> {
      closed = true
      // A graceful close waits for the replies still due: from a server that accepts and never
      // answers (frozen, or not Redis) they never come, so the wait is bounded like any call.
      try {
        if (client.isOpen) await withTimeout(client.close(), timeoutMs, `${where}: close`)
      } catch {
        client.destroy()
      }
    },
  }
  return store
}

/** A disable record from its stored fields, or null when there are none. */
export function toRecord(h: Record<string, string>): DisabledRecord | null {
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
  }
}

/** What the Redis settings risk for the disable records (CONFIG GET values); empty when nothing. */
export function durabilityRisks(settings: Readonly<Record<string, string>>): string[] {
  const risks: string[] = []
  if (settings.appendonly === 'no' && (settings.save ?? '').trim() === '') {
    risks.push('Redis keeps nothing on disk (appendonly no, save ""): a restart loses every disabled flag; only those in a journal come back. Set appendonly yes')
  } else if (settings.appendonly === 'no') {
    risks.push(`Redis writes only snapshots (appendonly no, save "${settings.save ?? ''}"): a crash loses the disabled flags set since the last one; only those in a journal come back. Set appendonly yes`)
  }
  const policy = settings['maxmemory-policy'] ?? ''
  if (policy.startsWith('allkeys-')) {
    risks.push(`maxmemory-policy ${policy} lets Redis evict disabled flags when memory runs short; use noeviction (or a volatile-* policy: the flags have no TTL)`)
  }
  return risks
}

function timeToMs(time: unknown): number {
  if (time instanceof Date) return time.getTime()
  if (Array.isArray(time)) return Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000)
  return Date.now()
}
