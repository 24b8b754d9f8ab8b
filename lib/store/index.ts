/**
 * The store (this folder): the one interface both implementations keep, its result types and
 * errors (here), the Redis key layout (keys.ts), the time buckets (buckets.ts), the Redis store
 * and its Lua scripts (redis/), the embedded memory store (memory/), and the journal that keeps
 * disabled flags through a Redis that loses its data (journal/).
 */
import { probationRules, type LimitKind, type Mode, type Rule } from '../config'
import type { PasswordHash } from '../password'

/** What one message tells about its sender, kept as evidence (capped, see EVIDENCE_CAP). */
export interface MessageSummary {
  readonly ip: string
  readonly helo: string
  readonly domains: readonly string[]
  readonly subject: string
}

/** A rule and the account's current total against it. */
export interface WindowCount {
  readonly kind: LimitKind
  readonly max: number
  readonly windowMs: number
  readonly text: string
  readonly count: number
}

export interface RecordInput {
  readonly account: string
  readonly recipients: number
  readonly rules: readonly Rule[]
  readonly mode: Mode
  readonly summary: MessageSummary
  /**
   * The reactivation token of the disable record if this call disables (32 hex). Stores keep
   * only its SHA-256 (tokenDigest); the alert carries the token itself.
   */
  readonly token: string
  /** How long that token may be redeemed, from the moment of the disable. */
  readonly tokenTtlMs: number
  /**
   * The message's client network (networkOf) for the `networks` rules; '' or absent: not counted
   * (an exempt network, no address).
   */
  readonly network?: string
  /** [warn] at: one warning per window when a total reaches this fraction of its limit; 0 or absent = off. */
  readonly warnAt?: number
  /**
   * [reactivate] probation_factor: while the account is on probation (startProbation), its rules
   * are counted with their max multiplied by it (probationRules); absent = no probation.
   */
  readonly probationFactor?: number
}

/**
 * The outcome of counting one message.
 * - ok: counted; `counts` include it. `over` is set in monitor mode when a limit was crossed,
 *   and `flipped` says whether this is the first report of that in the window (then `evidence`
 *   holds the account's stored evidence for the report).
 * - refused: over a limit in enforce mode; not counted; the account is now disabled and
 *   `flipped` is true for exactly one caller per incident.
 * - disabled: the account was already disabled; not counted. `by` is who disabled it (see
 *   DisabledRecord.by).
 */
export type RecordResult =
  | {
      readonly status: 'ok'
      readonly counts: readonly WindowCount[]
      readonly over?: WindowCount
      readonly flipped: boolean
      readonly at: number
      /** When `flipped` in monitor mode, or `warn`: the account's stored evidence, newest first. */
      readonly evidence?: readonly MessageSummary[]
      /** The rule this message brought to the [warn] fraction, the first time in its window for the account. */
      readonly warn?: WindowCount
      /** When `over` or `warn` is a networks rule: the networks seen in its window, newest first. */
      readonly networks?: readonly string[]
    }
  | {
      readonly status: 'refused'
      readonly counts: readonly WindowCount[]
      readonly over: WindowCount
      readonly flipped: boolean
      readonly record: DisabledRecord
    }
  | {
      readonly status: 'disabled'
      readonly counts: readonly WindowCount[]
      readonly flipped: false
      readonly by: string
    }

/** Why and when an account was disabled, with the evidence gathered while counting. */
export interface DisabledRecord {
  readonly account: string
  /** 'limit' for an automatic disable, or free text given by an operator. */
  readonly reason: string
  /** Who disabled it: 'limit', or an actor such as 'cli:root'. */
  readonly by: string
  /** Milliseconds since the epoch, store clock. */
  readonly at: number
  readonly incident: string
  /** The limit crossed and the totals at that moment (empty for a manual disable). */
  readonly over?: WindowCount
  readonly counts: readonly WindowCount[]
  readonly evidence: readonly MessageSummary[]
  /** Until when the incident's token may be redeemed (ms); absent when there is no token. */
  readonly tokenExpiresAt?: number
  /** When `over` is a networks rule: the networks seen in its window, newest first (this message's first). */
  readonly networks?: readonly string[]
}

/** Why redeem() did or did not re-enable the account. */
export type RedeemResult = 'ok' | 'not-disabled' | 'mismatch' | 'expired'

/**
 * What an audit entry records: a disable, an enable, a counters reset, a reply that did not
 * re-enable, held mail dropped, an AUTH after failed ones from elsewhere, and the incident's
 * password: refused at AUTH, changed (a new one accepted), allowed again by an admin.
 */
export const AUDIT_ACTIONS = [
  'disable',
  'enable',
  'reset',
  'reactivate-failed',
  'drop-held',
  'auth-after-failures',
  'password-refused',
  'password-changed',
  'password-allowed',
] as const

/** One line of the audit trail. */
export interface AuditEntry {
  /** Milliseconds since the epoch. */
  readonly at: number
  readonly account: string
  readonly action: (typeof AUDIT_ACTIONS)[number]
  /** Who: 'limit' for the automatic disable, an admin login, or 'cli:<os user>'. */
  readonly actor: string
  /** How: 'limit', 'reply', 'cli'. */
  readonly how: string
  readonly reason?: string
}

export interface DisableInput {
  readonly account: string
  readonly reason: string
  readonly by: string
  readonly incident: string
}

/** The state of an account as outbound sees it for held mail. */
export interface HeldState {
  readonly disabled: boolean
  /** Messages counted at or before this store-clock time are to be dropped; 0 = none. */
  readonly dropBefore: number
}

/** One failed AUTH of an account, from `source` (the client address). */
export interface AuthFailureInput {
  readonly account: string
  readonly source: string
  /** The [signals] auth_failures limit: `max` failures within `windowMs`. */
  readonly max: number
  readonly windowMs: number
}

/**
 * The account's failed AUTHs after counting one:
 * - count: failures within the window, this one included (at most `max`: older ones are dropped);
 * - reached: count >= max;
 * - alert: true for exactly one caller per window per account, the first that reached the limit;
 * - sources: the client addresses seen failing in the window (at most AUTH_SOURCES_CAP);
 * - until: store-clock ms when the window will hold fewer than `max` failures, if no more come;
 * - at: the store-clock time of this failure.
 */
export interface AuthFailureResult {
  readonly count: number
  readonly reached: boolean
  readonly alert: boolean
  readonly sources: readonly string[]
  readonly until: number
  readonly at: number
}

/** How many distinct client addresses an account's failed AUTHs keep as evidence. */
export const AUTH_SOURCES_CAP = 20

/** How many client networks an account keeps (the most recently seen); more than any networks limit may be. */
export const NETWORKS_CAP = 1000

/** How many networks a disable record or a warning names (the most recent). */
export const NETWORKS_SHOWN = 50

/** How many password hashes an account keeps (one per incident; the newest). */
export const PASSWORDS_CAP = 3

/** How many message summaries an account keeps as evidence. */
export const EVIDENCE_CAP = 10

/** How many audit entries the store keeps (the oldest are dropped). */
export const AUDIT_CAP = 10_000

/**
 * The store: the one interface both the Redis and the memory implementation provide.
 * Every method rejects with StoreError when the store cannot answer in time.
 */
export interface Store {
  readonly kind: 'redis' | 'memory'
  /** Counts one message and checks the limits, atomically (see RecordResult). */
  record(input: RecordInput): Promise<RecordResult>
  /**
   * Counts `input.recipients` permanently refused recipients of the account against `input.rules`
   * ([signals] invalid_recipients), in counters and evidence of their own, and checks them
   * atomically; over a limit it disables the account as record() does (RecordResult: 'refused'
   * means the account is now disabled, the recipients were not counted).
   */
  invalid(input: RecordInput): Promise<RecordResult>
  /** The disable record, or null when the account is not disabled. */
  getDisabled(account: string): Promise<DisabledRecord | null>
  /** The account a reactivation token was issued for, or null (unknown, or long expired). */
  tokenAccount(token: string): Promise<string | null>
  /** Re-enables the account when `token` is its current, unexpired token; single use, atomic. */
  redeem(account: string, token: string): Promise<RedeemResult>
  /** Appends to the audit trail. */
  audit(entry: AuditEntry): Promise<void>
  /** The audit trail, newest first, optionally for one account. */
  auditLog(options?: { account?: string; limit?: number }): Promise<AuditEntry[]>
  /** Disables an account by hand; false when it was disabled already (the record is kept). */
  disable(input: DisableInput): Promise<boolean>
  /** Clears the disable record, counters and evidence; false when the account was not disabled. */
  enable(account: string): Promise<boolean>
  /** Clears counters and evidence, keeping the disabled flag. */
  reset(account: string): Promise<void>
  /** The current totals of an account against the given rules. */
  counts(account: string, rules: readonly Rule[]): Promise<WindowCount[]>
  /** The recent message summaries of an account, newest first. */
  evidence(account: string): Promise<MessageSummary[]>
  /** Every disabled account's record. */
  listDisabled(): Promise<DisabledRecord[]>
  /** Resolves once the store answers, or rejects with StoreError after timeoutMs. */
  ready(timeoutMs: number): Promise<void>
  /** What outbound needs to decide on a queued message of the account (see HeldState). */
  heldState(account: string): Promise<HeldState>
  /** Notes that a queued message of a disabled account is being held. */
  hold(account: string, id: string, ttlMs: number): Promise<void>
  /** Forgets a held message (delivered after an enable, or dropped); true when it was held. */
  release(account: string, id: string): Promise<boolean>
  /** How many queued messages of the account are held. */
  heldCount(account: string): Promise<number>
  /** Marks every message of the account queued until now for dropping; answers the held count. */
  dropHeld(account: string, ttlMs: number): Promise<number>
  /** Puts the account on probation until `until` (ms), replacing an earlier end; 0 ends it. */
  startProbation(account: string, until: number): Promise<void>
  /** Until when (ms) the account is on probation, 0 when it is not (or that time has passed by `now`). */
  probationUntil(account: string, now: number): Promise<number>
  /** Keeps the hash of a password in use when the account was disabled (the newest PASSWORDS_CAP). */
  rememberPassword(account: string, hash: PasswordHash): Promise<void>
  /** The hashes of the passwords refused until the account's password is changed; empty: none pending. */
  oldPasswords(account: string): Promise<PasswordHash[]>
  /** Forgets them (the password was changed, or an admin allowed the old one); true when there were any. */
  forgetPasswords(account: string): Promise<boolean>
  /**
   * Calls `listener` with an account that may just have been enabled, by this process or by any
   * other sharing the store (the CLI, another Haraka), or with null when notices may have been
   * missed (any account may have been). Best effort and at most seconds late: a notice can be
   * lost (Redis down, a read not tracked), so the held-mail retry stays the fallback; a notice
   * can also come for an account that is still disabled. No store call is made for it.
   */
  watchEnables(listener: (account: string | null) => void): void
  /** Counts one failed AUTH of an account in a sliding window (see AuthFailureResult); atomic. */
  authFailure(input: AuthFailureInput): Promise<AuthFailureResult>
  /** Releases connections and timers; the store is unusable afterwards. */
  close(): Promise<void>
}

/**
 * How a store call failed, for control flow (the message is for people):
 * - timeout: no answer within store_timeout (the store may be stuck);
 * - unavailable: not connected, or failing fast after a timeout until it answers again;
 * - reply: it answered something the plugin cannot read;
 * - file: a state or journal file cannot be read, written or locked.
 */
export type StoreFailure = 'timeout' | 'unavailable' | 'reply' | 'file'

/** The store did not answer (down, too slow, or broken); `failure` says which. */
export class StoreError extends Error {
  readonly failure: StoreFailure
  constructor(message: string, options?: { cause?: unknown; failure?: StoreFailure }) {
    super(message, options)
    this.name = 'StoreError'
    this.failure = options?.failure ?? 'unavailable'
  }
}

/** Rejects with StoreError when `work` has not settled within `ms`. */
export async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreError(`${what}: no answer within ${ms} ms`, { failure: 'timeout' })), ms)
  })
  try {
    return await Promise.race([work, timeout])
  } catch (err) {
    throw err instanceof StoreError
      ? err
      : new StoreError(`${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  } finally {
    clearTimeout(timer)
  }
}

/** The networks as a disable record keeps them: a JSON array of strings, tolerant of damaged data. */
export function parseNetworks(json: string | undefined): string[] {
  try {
    const rows: unknown = JSON.parse(json ?? '[]')
    return Array.isArray(rows) ? rows.filter((r): r is string => typeof r === 'string') : []
  } catch {
    return []
  }
}

/** `input` with its rules scaled for probation when the account is on it until after `now` (`until`). */
export function withProbation(input: RecordInput, until: number, now: number): RecordInput {
  return input.probationFactor !== undefined && until > now
    ? { ...input, rules: probationRules(input.rules, input.probationFactor) }
    : input
}

/** The rule as a WindowCount with the given total. */
export function windowCount(rule: Rule, count: number): WindowCount {
  return { kind: rule.kind, max: rule.max, windowMs: rule.windowMs, text: rule.text, count }
}

/** The compact description of rules stored with a disable record. */
export function describeRules(rules: readonly Rule[]): string {
  let text = described.get(rules)
  if (text === undefined) {
    text = JSON.stringify(rules.map((r) => [r.kind, r.max, r.windowMs, r.text]))
    described.set(rules, text)
  }
  return text
}

// Rule lists are frozen parts of the config: each is described once, not once per message.
const described = new WeakMap<readonly Rule[], string>()

/** Parses what describeRules wrote, with the stored totals; tolerant of damaged data. */
export function parseRuleCounts(rulesJson: string | undefined, totalsCsv: string | undefined): WindowCount[] {
  let rows: unknown
  try {
    rows = JSON.parse(rulesJson ?? '[]')
  } catch {
    return []
  }
  if (!Array.isArray(rows)) return []
  const totals = (totalsCsv ?? '').split(',').map(Number)
  return rows.flatMap((row, i): WindowCount[] => {
    if (!Array.isArray(row) || row.length < 4) return []
    const [kind, max, windowMs, text] = row as [unknown, unknown, unknown, unknown]
    if (kind !== 'messages' && kind !== 'recipients' && kind !== 'networks' && kind !== 'invalid_recipients') return []
    return [{ kind, max: Number(max), windowMs: Number(windowMs), text: String(text), count: totals[i] ?? 0 }]
  })
}

/** A string, number or boolean from parsed JSON as text; anything else as ''. */
function str(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : ''
}

/** An audit entry from parsed JSON, or nothing when the shape is wrong. */
export function toAuditEntry(row: unknown): AuditEntry[] {
  if (!row || typeof row !== 'object') return []
  const r = row as Record<string, unknown>
  const action = AUDIT_ACTIONS.find((a) => a === r.action)
  if (!action) return []
  return [
    {
      at: Number(r.at) || 0,
      account: str(r.account),
      action,
      actor: str(r.actor),
      how: str(r.how),
      ...(r.reason !== undefined ? { reason: str(r.reason) } : {}),
    },
  ]
}

/** Parses a stored evidence list, dropping entries that are not summaries. */
export function parseEvidence(json: string | undefined): MessageSummary[] {
  let rows: unknown
  try {
    rows = JSON.parse(json ?? '[]')
  } catch {
    return []
  }
  return Array.isArray(rows) ? rows.flatMap(toSummary) : []
}

/**
 * A summary as the Redis store keeps it: a JSON array `[ip, helo, [domains], subject]`, shorter
 * than an object (no field names) since every account keeps several.
 */
export function encodeSummary(s: MessageSummary): string {
  return JSON.stringify([s.ip, s.helo, s.domains, s.subject])
}

/** A summary from parsed JSON (encodeSummary's array, or an object as 0.1 stored it), or nothing when the shape is wrong. */
export function toSummary(row: unknown): MessageSummary[] {
  if (Array.isArray(row)) {
    const [ip, helo, domains, subject] = row as unknown[]
    return toSummary({ ip, helo, domains, subject })
  }
  if (!row || typeof row !== 'object') return []
  const r = row as Record<string, unknown>
  return [
    {
      ip: str(r.ip),
      helo: str(r.helo),
      domains: Array.isArray(r.domains) ? r.domains.map(String) : [],
      subject: str(r.subject),
    },
  ]
}
