/**
 * Every Redis key the plugin uses, in one place (see docs/store.md).
 *
 * An account's keys share the hash tag `{<encoded account>}` so that each script touches one
 * Redis Cluster slot. The encoding keeps letters, digits and `@ . _ + -` and writes every other
 * UTF-8 byte as `%XX`, so it is injective, never contains `{`, `}` or `:`, and stays readable
 * (`hijack-guard:{alice@example.com}:counts`). The empty login encodes as `%`, which no other
 * login produces.
 */
export const PREFIX = 'hijack-guard'

const SAFE_BYTE = /^[A-Za-z0-9@._+-]$/

/** The hash-tag body for an account (see the module comment). */
export function encodeAccount(account: string): string {
  if (account === '') return '%'
  let out = ''
  for (const byte of Buffer.from(account, 'utf8')) {
    const ch = String.fromCharCode(byte)
    out += byte < 0x80 && SAFE_BYTE.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/** The inverse of encodeAccount. */
export function decodeAccount(encoded: string): string {
  if (encoded === '%') return ''
  const bytes: number[] = []
  for (let i = 0; i < encoded.length; i++) {
    if (encoded[i] === '%') {
      bytes.push(parseInt(encoded.slice(i + 1, i + 3), 16))
      i += 2
    } else {
      bytes.push(encoded.charCodeAt(i))
    }
  }
  return Buffer.from(bytes).toString('utf8')
}

export interface AccountKeys {
  /**
   * Hash: the account's counters (a ring of buckets and a running total per rule, see
   * lib/store/series.ts) and `ed`, the digest of the newest evidence summary. Expires after the
   * longest window plus one bucket, renewed once per bucket.
   */
  readonly counts: string
  /** List of the last distinct message summaries (JSON), newest first, capped. Expires with the counts. */
  readonly evidence: string
  /** Hash: the disable record. Present means disabled. Never expires. */
  readonly disabled: string
  /** String with a TTL: set when monitor mode has reported an overrun in the current window. */
  readonly monitored: string
  /** Set of ids of queued messages held while the account is disabled; expires after max_hold. */
  readonly held: string
  /** String (store-clock ms): messages counted until then are dropped from the queue. */
  readonly dropBefore: string
  /**
   * Hash, the tombstone of the last enable: `incident` it cleared ('' when none), `at` (store-clock
   * ms). Never expires; tells a journal that an enable, not a data loss, removed a record.
   */
  readonly enabled: string
  /** Sorted set of the account's failed AUTHs in the window (score: store-clock ms), capped; TTL the window. */
  readonly authFailures: string
  /** Hash: client address -> last failed AUTH (ms), capped at AUTH_SOURCES_CAP; TTL the window. */
  readonly authSources: string
  /** String with a TTL of the window: set by the failure that reached the limit (one alert per window). */
  readonly authAlerted: string
  /** Sorted set: client network -> last message from it (store-clock ms), capped at NETWORKS_CAP; TTL the longest networks window. */
  readonly networks: string
  /** String with a TTL of a window: set by the [warn] warning (one per window per account). */
  readonly warned: string
  /** Hash: the counters of [signals] invalid_recipients, laid out as `counts` (series kind `i`). */
  readonly invalid: string
  /** List: summaries of the refused recipients (domains, source), newest first, capped; TTL as `invalid`. */
  readonly invalidEvidence: string
  /** String with a TTL: monitor mode already reported invalid_recipients this window. */
  readonly invalidMonitored: string
  /**
   * Hash, no TTL: incident -> JSON of the salted scrypt hash of the password in use when it was
   * disabled (lib/password.ts), at most PASSWORDS_CAP; kept through an enable until the password changes.
   */
  readonly oldPasswords: string
}

/** The keys of one account, all in the account's hash-tag slot. */
export function accountKeys(account: string): AccountKeys {
  const base = `${PREFIX}:{${encodeAccount(account)}}`
  return {
    counts: `${base}:counts`,
    disabled: `${base}:disabled`,
    evidence: `${base}:evidence`,
    monitored: `${base}:monitored`,
    held: `${base}:held`,
    dropBefore: `${base}:drop-before`,
    enabled: `${base}:enabled`,
    authFailures: `${base}:auth-failures`,
    authSources: `${base}:auth-sources`,
    authAlerted: `${base}:auth-alerted`,
    networks: `${base}:networks`,
    warned: `${base}:warned`,
    invalid: `${base}:invalid`,
    invalidEvidence: `${base}:invalid-evidence`,
    invalidMonitored: `${base}:invalid-monitored`,
    oldPasswords: `${base}:old-passwords`,
  }
}

/** The account whose `disabled` key `key` is (accountKeys), or null for any other key. */
export function disabledKeyAccount(key: string): string | null {
  const m = /^hijack-guard:\{([^{}:]*)\}:disabled$/.exec(key)
  return m ? decodeAccount(m[1] as string) : null
}

/**
 * The keys of what an account's mail counted, [signals] invalid_recipients included (cleared by an
 * enable and by a reset; the disabled flag is not one).
 */
export function countingKeys(k: AccountKeys): string[] {
  return [k.counts, k.evidence, k.monitored, k.networks, k.warned, k.invalid, k.invalidEvidence, k.invalidMonitored]
}

/**
 * Hash, no TTL: account -> the incident of its newest kept password, for every account with a
 * password change pending. One small key every process caches (kept true by CLIENT TRACKING), so
 * AUTH of an account with nothing pending reads nothing.
 */
export const PASSWORDS_PENDING = `${PREFIX}:passwords-pending`

/**
 * Hash, no TTL: account -> until when (ms, the enabling server's clock) it is on probation after
 * an enable ([reactivate] probation); entries past are dropped when another is written. Read at
 * counting through the disable-record cache, so it costs no round trip once a process has it.
 */
export const PROBATION = `${PREFIX}:probation`

/** List of audit entries (JSON), newest first, capped at AUDIT_CAP. */
export const AUDIT_LOG = `${PREFIX}:audit`

/**
 * String with a TTL: the account a reactivation token was issued for, named by the token's
 * SHA-256 (tokenDigest), never by the token. Only a pointer for finding the account; the token
 * is checked against the digest in the account's disable record.
 */
export function tokenKey(digest: string): string {
  return `${PREFIX}:token-sha256:${encodeAccount(digest)}`
}
