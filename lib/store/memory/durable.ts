/**
 * What the memory store keeps on disk (disable records, token pointers, audit, held mail) and
 * its JSON form: parsed and validated on the way in, written with a version on the way out.
 */
import { toPasswordHash, type PasswordHash } from '../../password'
import { StoreError, toAuditEntry, toSummary, type AuditEntry, type DisabledRecord } from '..'

/** A disable record as kept on disk: with its token's SHA-256, which readers never see. */
export type StoredRecord = DisabledRecord & { tokenSha256?: string }

/** Which account a token digest belongs to, and until when. */
export interface TokenPointer {
  account: string
  /** When the pointer may be forgotten (twice the token's lifetime). */
  forgetAt: number
}

/**
 * Everything that must survive a restart, and that the CLI changes through the file. Maps,
 * never plain objects, hold account names: "__proto__" is a login like any other.
 */
export interface Durable {
  disabled: Map<string, StoredRecord>
  /** SHA-256 of a token (tokenDigest) -> its account; the tokens themselves are never kept. */
  tokens: Map<string, TokenPointer>
  audit: AuditEntry[]
  /** account -> ms: counters cleared (by enable or reset) at that time. */
  cleared: Map<string, number>
  /** account -> queued mail counted until `at` is dropped; the mark is kept until `until`. */
  dropBefore: Map<string, { at: number; until: number }>
  /** account -> held message id -> when to forget it. */
  held: Map<string, Map<string, number>>
  /** account -> hashes of the passwords refused until it is changed (see lib/password.ts). */
  passwords: Map<string, PasswordHash[]>
  /** account -> until when (ms) it is on probation after an enable. */
  probation: Map<string, number>
}

/** The record as readers see it: without the token digest. */
export function publicRecord(r: StoredRecord): DisabledRecord {
  const { tokenSha256: _secret, ...rest } = r
  return rest
}

/** The state of a store that has never written a file. */
export function emptyDurable(): Durable {
  return {
    disabled: new Map(),
    tokens: new Map(),
    audit: [],
    cleared: new Map(),
    dropBefore: new Map(),
    held: new Map(),
    passwords: new Map(),
    probation: new Map(),
  }
}

/** The state file's text for `d`. */
export function toJson(d: Durable): string {
  const held = [...d.held].map(([account, ids]): [string, Record<string, number>] => [account, Object.fromEntries(ids)])
  return `${JSON.stringify(
    {
      version: 1,
      disabled: Object.fromEntries(d.disabled),
      tokens: Object.fromEntries(d.tokens),
      audit: d.audit,
      cleared: Object.fromEntries(d.cleared),
      dropBefore: Object.fromEntries(d.dropBefore),
      held: Object.fromEntries(held),
      passwords: Object.fromEntries(d.passwords),
      probation: Object.fromEntries(d.probation),
    },
    null,
    2,
  )}\n`
}

/**
 * The state in the text of `file`. Throws StoreError when the text is not JSON, has no
 * "disabled" object or a damaged disable record; other damaged entries are dropped.
 */
export function parseDurable(file: string, text: string): Durable {
  let state: unknown
  try {
    state = JSON.parse(text)
  } catch (err) {
    throw new StoreError(`${file} is not valid JSON (${(err as Error).message}); fix or move it away`, {
      cause: err,
      failure: 'file',
    })
  }
  const parsed = (state ?? {}) as Record<string, unknown>
  const rows = parsed.disabled
  if (!rows || typeof rows !== 'object')
    throw new StoreError(`${file} has no "disabled" object; fix or move it away`, { failure: 'file' })
  const d = emptyDurable()
  for (const [account, r] of Object.entries(rows) as [string, unknown][]) {
    if (!isRecordLike(r))
      throw new StoreError(`${file}: the record of ${JSON.stringify(account)} is damaged; fix or move it away`, {
        failure: 'file',
      })
    // A token in clear (a file written before tokens were hashed) is not kept: the hash is the authority.
    const { token: _clear, networks, ...rest } = r as StoredRecord & { token?: unknown }
    d.disabled.set(account, {
      ...rest,
      account,
      evidence: (r.evidence ?? []).flatMap(toSummary),
      counts: r.counts ?? [],
      ...(Array.isArray(networks) ? { networks: networks.filter((n): n is string => typeof n === 'string') } : {}),
    })
  }
  for (const [digest, p] of entriesOf(parsed.tokens)) {
    const ptr = p as Partial<TokenPointer> | null
    if (ptr && typeof ptr.account === 'string' && /^[0-9a-f]{64}$/.test(digest))
      d.tokens.set(digest, { account: ptr.account, forgetAt: Number(ptr.forgetAt) || 0 })
  }
  d.audit = Array.isArray(parsed.audit) ? parsed.audit.flatMap(toAuditEntry) : []
  for (const [account, at] of entriesOf(parsed.cleared)) d.cleared.set(account, Number(at) || 0)
  for (const [account, m] of entriesOf(parsed.dropBefore)) {
    const mark = m as { at?: unknown; until?: unknown } | null
    if (mark) d.dropBefore.set(account, { at: Number(mark.at) || 0, until: Number(mark.until) || 0 })
  }
  for (const [account, ids] of entriesOf(parsed.held)) {
    d.held.set(account, new Map(entriesOf(ids).map(([id, until]): [string, number] => [id, Number(until) || 0])))
  }
  for (const [account, until] of entriesOf(parsed.probation)) {
    if (Number(until) > 0) d.probation.set(account, Number(until))
  }
  for (const [account, list] of entriesOf(parsed.passwords)) {
    const hashes = Array.isArray(list) ? list.flatMap(toPasswordHash) : []
    if (hashes.length) d.passwords.set(account, hashes)
  }
  return d
}

function entriesOf(value: unknown): [string, unknown][] {
  return value && typeof value === 'object' && !Array.isArray(value) ? Object.entries(value) : []
}

/** A disable record as JSON.parse gave it: an object whose evidence and counts, if any, are lists. */
function isRecordLike(r: unknown): r is StoredRecord {
  if (!r || typeof r !== 'object' || Array.isArray(r)) return false
  const { evidence, counts } = r as Record<string, unknown>
  return (evidence === undefined || Array.isArray(evidence)) && (counts === undefined || Array.isArray(counts))
}

/** Sets (`until` = when to forget it) or clears (null) a held-mail mark in `d`. */
export function applyHeld(d: Durable, account: string, id: string, until: number | null): void {
  const ids = d.held.get(account) ?? new Map<string, number>()
  if (until === null) ids.delete(id)
  else ids.set(id, until)
  if (ids.size === 0) d.held.delete(account)
  else d.held.set(account, ids)
}
