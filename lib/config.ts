import { canonicalAccount, canonicalDomain, type AccountsConfig, type Fold } from './account'
import { isNetwork } from './network'
import { CONTROL } from './text'
import { WEBHOOK_EVENTS, type WebhookConfig, type WebhookEventName } from './webhook'

export const CONFIG_FILE = 'hijack-guard.ini'

export type Mode = 'enforce' | 'monitor'
export type StoreKind = 'redis' | 'memory'
export type StoreErrorPolicy = 'open' | 'closed'
/**
 * What a rule counts: messages and recipients ([limits]), distinct client networks ([signals]
 * networks), recipients refused for good ([signals] invalid_recipients).
 */
export type LimitKind = 'messages' | 'recipients' | 'networks' | 'invalid_recipients'
export type ReactivatePolicy = 'admin' | 'token'

/** One "N per window" rule; bucketMs is windowMs / buckets, rounded up. */
export interface Rule {
  readonly kind: LimitKind
  readonly max: number
  readonly windowMs: number
  readonly buckets: number
  readonly bucketMs: number
  /** As the operator wrote it, e.g. "500/30m". */
  readonly text: string
}

export interface RedisConfig {
  readonly host: string
  readonly port: number
  readonly db: number
  readonly username?: string
  readonly password?: string
  /** The journal of disable records this server has seen (lib/store/journal/), relative to the Haraka directory. */
  readonly journal: string
  /** How often every journaled record is checked against Redis. */
  readonly journalCheckMs: number
}

export interface Config {
  readonly mode: Mode
  readonly store: StoreKind
  readonly onStoreError: StoreErrorPolicy
  readonly storeTimeoutMs: number
  /** Who an account is ([accounts]); canonicalAccount(login, config.accounts) names it. */
  readonly accounts: AccountsConfig
  readonly stateFile: string
  readonly rules: readonly Rule[]
  readonly exempt: ReadonlySet<string>
  /** Per-account rule sets, keyed by canonical account. */
  readonly accountRules: ReadonlyMap<string, readonly Rule[]>
  /** [limits] max_recipients_per_message: recipients one message may have; 0 = no cap. */
  readonly maxRecipients: number
  /** Per-account max_recipients_per_message ([account:LOGIN]), keyed by canonical account. */
  readonly accountMaxRecipients: ReadonlyMap<string, number>
  readonly alert: { readonly to: readonly string[]; readonly from: string; readonly replyAddress: string }
  readonly contact: string
  readonly reactivate: {
    readonly policy: ReactivatePolicy
    /** Canonical accounts allowed to re-enable accounts by replying. */
    readonly admins: ReadonlySet<string>
    readonly tokenTtlMs: number
    /** Refuse, after an enable, the password of the session that tripped the disable until it changes. */
    readonly requireNewPassword: boolean
    /** Re-enable an account a limit disabled this long ago, by itself; 0 = never. */
    readonly autoEnableAfterMs: number
    /** After an enable, the account's limits are multiplied by probationFactor for this long; 0 = no probation. */
    readonly probationMs: number
    readonly probationFactor: number
    /** At most `max` enables by reply per account within `windowMs` (more need the CLI); null = no cap. */
    readonly maxReplyEnables: { readonly max: number; readonly windowMs: number; readonly text: string } | null
  }
  /** Outbound mail of a disabled account: retried every retryMs, kept at most maxHoldMs. */
  readonly held: { readonly retryMs: number; readonly maxHoldMs: number }
  /** This server's name (config/me), for addresses, Message-IDs and texts. */
  readonly me: string
  readonly redis: RedisConfig
  /**
   * [signals] invalid_recipients: recipients refused for good (5xx at RCPT by another plugin, or a
   * hard bounce) per account; empty when off.
   */
  readonly invalidRecipients: readonly Rule[]
  /** Per-account invalid_recipients ([account:LOGIN]), keyed by canonical account. */
  readonly accountInvalidRecipients: ReadonlyMap<string, readonly Rule[]>
  /** [signals]: password spraying (failed AUTH per login from anywhere); null when off. */
  readonly authFailures: AuthFailuresConfig | null
  /** Per-account auth_failures ([account:LOGIN]; null = off for that account), keyed by canonical account. */
  readonly accountAuthFailures: ReadonlyMap<string, AuthFailuresConfig | null>
  /** [signals] exempt_networks: CIDRs whose clients are never counted as a network. */
  readonly exemptNetworks: readonly string[]
  /** [warn] at: the fraction of a limit at which one warning goes out per window; 0 = off. */
  readonly warnAt: number
  /** [webhook]: where events are POSTed; null when url is empty. */
  readonly webhook: WebhookConfig | null
  /** [notify]: a notice to the account's owner on an automatic disable, at user_address with %s / %u filled in. */
  readonly notify: { readonly user: boolean; readonly userAddress: string }
  /** Unknown keys and other non-fatal findings, for the log. */
  readonly warnings: readonly string[]
}

export type AuthFailuresAction = 'alert' | 'block'

/** [signals] auth_failures and auth_failures_action: N failed AUTHs per login within windowMs. */
export interface AuthFailuresConfig {
  readonly max: number
  readonly windowMs: number
  /** As the operator wrote it, e.g. "20/1h". */
  readonly text: string
  readonly action: AuthFailuresAction
}

/** A config value the plugin refuses to guess about; the message names file, key and value. */
export class ConfigError extends Error {
  constructor(
    readonly key: string,
    readonly value: unknown,
    reason: string,
  ) {
    super(`${CONFIG_FILE}: ${key} = ${JSON.stringify(value)}: ${reason}`)
    this.name = 'ConfigError'
  }
}

type Section = Record<string, unknown>
type RawIni = Record<string, Section | undefined>

/**
 * Each series holds up to this many bucket fields in the account's counters hash (memory grows
 * with it, time per message does not; see lib/store/series.ts).
 */
const MAX_BUCKETS = 60

/** The largest max_recipients_per_message accepted (a typo guard, far above any real client). */
const MAX_RECIPIENT_CAP = 1_000_000

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * Every key of hijack-guard.ini and its default, as the shipped config/hijack-guard.ini writes
 * it: what parsing falls back to for an unset or empty value (for [limits], an unset one: empty
 * means no limit), and the known keys (anything else is warned about). A test holds the shipped
 * file to this table. An empty default means "none" or "derived" (the field's comment says from what).
 */
export const DEFAULTS = {
  main: {
    mode: 'enforce',
    store: 'redis',
    on_store_error: 'open',
    store_timeout: '1s',
    state_file: 'hijack-guard.state.json',
  },
  limits: { messages: '500/30m', recipients: '2500/30m', buckets: '30', max_recipients_per_message: '100' },
  exempt: { accounts: '' },
  accounts: { fold: 'nfkc', default_domain: '', domain_aliases: '', xclient_login: 'false' },
  alert: { to: '', contact: '', from: '', reply_address: '' },
  reactivate: {
    policy: 'admin',
    admins: '',
    token_ttl: '7d',
    require_new_password: 'true',
    probation: '24h',
    probation_factor: '0.5',
    max_reply_enables: '3/30d',
    auto_enable_after: '',
  },
  held: { retry: '1m', max_hold: '7d' },
  signals: {
    networks: '5/6h, 9/24h',
    exempt_networks: '',
    invalid_recipients: '100/1h',
    auth_failures: '20/1h',
    auth_failures_action: 'alert',
  },
  warn: { at: '80%' },
  webhook: {
    url: '',
    secret: '',
    events: 'disabled, enabled, warning, held_released, held_dropped, password_refused',
    timeout: '5s',
  },
  notify: { user: 'false', user_address: '%s' },
  redis: {
    host: '127.0.0.1',
    port: '6379',
    db: '0',
    username: '',
    password: '',
    journal: 'hijack-guard.journal.json',
    journal_check: '60s',
  },
} as const satisfies Record<string, Record<string, string>>

/** The [signals] keys an [account:LOGIN] section may set, besides every [limits] key. */
const ACCOUNT_SIGNALS = ['networks', 'invalid_recipients', 'auth_failures']

/** Keys still read, with a warning, but no longer shipped. */
const DEPRECATED: Partial<Record<keyof typeof DEFAULTS, readonly string[]>> = { main: ['lowercase_accounts'] }

const KNOWN_KEYS: Record<string, readonly string[]> = Object.fromEntries(
  Object.entries(DEFAULTS).map(([name, keys]) => [
    name,
    [...Object.keys(keys), ...(DEPRECATED[name as keyof typeof DEFAULTS] ?? [])],
  ]),
)

/** A section's value, or its default from DEFAULTS when unset or empty. */
function valueOr<S extends keyof typeof DEFAULTS>(
  sect: Section,
  name: S,
  key: keyof (typeof DEFAULTS)[S] & string,
): unknown {
  return text(sect[key]) === '' ? (DEFAULTS[name] as Record<string, string>)[key] : sect[key]
}

/**
 * Returns the text of an ini value without an inline "  ; comment", or '' when unset. A value
 * that starts with ";" or "#" is a comment, so empty: Haraka's ini parser keeps the comment of
 * `key =   ; comment` as the value.
 */
function text(value: unknown): string {
  if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') return ''
  const t = String(value)
    .replace(/\s+[;#].*$/, '')
    .trim()
  return /^[;#]/.test(t) ? '' : t
}

const ADDRESS = new RegExp(`^[^@\\s${CONTROL}]+@[^@\\s${CONTROL}]+$`)
const DOMAIN = new RegExp(`^[^@\\s${CONTROL}]+$`)
const LOGIN = new RegExp(`^[^\\s${CONTROL}]+$`)

/** Throws ConfigError unless `address` looks like local@domain (no spaces, no control characters). */
function checkAddress(key: string, value: unknown, address: string): void {
  if (!ADDRESS.test(address))
    throw new ConfigError(key, value, `"${address}" is not an address like hijack-guard@example.com`)
}

/**
 * The canonical accounts of a comma-separated list of logins; each must be free of spaces and
 * control characters and name an account.
 */
function parseLogins(key: string, value: unknown, norm: (login: string) => string): string[] {
  return parseList(value).map((login) => {
    const account = norm(login)
    if (!LOGIN.test(login) || account === '')
      throw new ConfigError(
        key,
        value,
        `"${login}" is not a login (a login has no spaces or control characters; separate logins with commas)`,
      )
    return account
  })
}

/** [accounts], with [main] lowercase_accounts as the deprecated spelling of fold. */
function parseAccounts(raw: RawIni, warnings: string[]): AccountsConfig {
  const main = section(raw, 'main')
  const sect = section(raw, 'accounts')
  const folds: readonly Fold[] = ['nfkc', 'lower', 'none']
  let fold = parseChoice('accounts.fold', sect.fold, folds, DEFAULTS.accounts.fold)
  if (text(main.lowercase_accounts) !== '' || typeof main.lowercase_accounts === 'boolean') {
    const lower = parseBoolean('main.lowercase_accounts', main.lowercase_accounts, true)
    if (text(sect.fold) !== '') {
      warnings.push(`[main] lowercase_accounts is deprecated and ignored: [accounts] fold = ${fold} is set`)
    } else {
      fold = lower ? 'lower' : 'none'
      warnings.push(
        `[main] lowercase_accounts is deprecated: use [accounts] fold = ${fold} (the default, nfkc, also joins Unicode spellings)`,
      )
    }
  }
  const defaultDomain = canonicalDomain(text(sect.default_domain), fold)
  if (defaultDomain && !DOMAIN.test(defaultDomain))
    throw new ConfigError('accounts.default_domain', sect.default_domain, 'expected a domain like example.com')
  const domainAliases = new Map<string, string>()
  for (const pair of parseList(sect.domain_aliases)) {
    const m = /^([^:\s@]+)\s*:\s*([^:\s@]+)$/.exec(pair)
    if (!m?.[1] || !m[2])
      throw new ConfigError('accounts.domain_aliases', sect.domain_aliases, `"${pair}" is not alias.domain:real.domain`)
    const alias = canonicalDomain(m[1], fold)
    const target = canonicalDomain(m[2], fold)
    if (alias === target)
      throw new ConfigError('accounts.domain_aliases', sect.domain_aliases, `"${pair}" maps a domain to itself`)
    const before = domainAliases.get(alias)
    if (before !== undefined && before !== target)
      throw new ConfigError(
        'accounts.domain_aliases',
        sect.domain_aliases,
        `${alias} is mapped to both ${before} and ${target}`,
      )
    domainAliases.set(alias, target)
  }
  for (const [alias, target] of domainAliases) {
    // One step only: a chain would make the canonical form depend on the order of the list.
    if (domainAliases.has(target))
      throw new ConfigError(
        'accounts.domain_aliases',
        sect.domain_aliases,
        `${alias} maps to ${target}, which is itself an alias; map every alias to the final domain`,
      )
  }
  if (defaultDomain && domainAliases.has(defaultDomain))
    throw new ConfigError(
      'accounts.default_domain',
      sect.default_domain,
      `${defaultDomain} is an alias in domain_aliases; use the domain it maps to`,
    )
  return {
    fold,
    defaultDomain,
    domainAliases,
    xclientLogin: parseBoolean('accounts.xclient_login', valueOr(sect, 'accounts', 'xclient_login'), false),
  }
}

/** Parses "30m", "1s", "500ms", "7d" to milliseconds; throws ConfigError on anything else or on zero. */
export function parseDuration(key: string, value: unknown): number {
  const m = /^(\d+)\s*(ms|s|m|h|d)$/i.exec(text(value))
  const unit = m?.[2]?.toLowerCase()
  if (!m || !unit) throw new ConfigError(key, value, 'expected a duration like 30s, 30m, 24h or 7d')
  const ms = Number(m[1]) * (UNIT_MS[unit] ?? 0)
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new ConfigError(key, value, 'a duration must be greater than zero')
  return ms
}

function parseInteger(key: string, value: unknown, min: number, max: number): number {
  const t = text(value)
  if (!/^\d+$/.test(t)) throw new ConfigError(key, value, `expected a whole number from ${min} to ${max}`)
  const n = Number(t)
  if (n < min || n > max) throw new ConfigError(key, value, `expected a whole number from ${min} to ${max}`)
  return n
}

function parseChoice<T extends string>(key: string, value: unknown, choices: readonly T[], fallback: T): T {
  const t = text(value).toLowerCase()
  if (t === '') return fallback
  const found = choices.find((c) => c === t)
  if (!found) throw new ConfigError(key, value, `expected one of ${choices.join(', ')}`)
  return found
}

function parseBoolean(key: string, value: unknown, fallback: boolean): boolean {
  if (typeof value === 'boolean') return value
  const t = text(value).toLowerCase()
  if (t === '') return fallback
  if (['true', 'yes', 'on', '1'].includes(t)) return true
  if (['false', 'no', 'off', '0'].includes(t)) return false
  throw new ConfigError(key, value, 'expected true or false')
}

function parseList(value: unknown): string[] {
  return text(value)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

/** Parses "500/30m, 2000/24h" into rules; "" or "0" means no limit of that kind. */
export function parseRules(key: string, kind: LimitKind, value: unknown, buckets: number): Rule[] {
  const t = text(value)
  if (t === '' || t === '0') return []
  return t.split(',').map((part) => {
    const m = /^\s*(\d+)\s*\/\s*(\S+)\s*$/.exec(part)
    if (!m?.[1] || !m[2]) throw new ConfigError(key, value, `"${part.trim()}" is not N/window, e.g. 500/30m`)
    const max = Number(m[1])
    if (!Number.isSafeInteger(max) || max < 1)
      throw new ConfigError(key, value, `"${part.trim()}": N must be at least 1`)
    let windowMs: number
    try {
      windowMs = parseDuration(key, m[2])
    } catch {
      // Name the whole value the operator wrote, not just its window.
      throw new ConfigError(
        key,
        value,
        `"${part.trim()}": the window must be a duration greater than zero, like 30s, 30m, 24h or 7d`,
      )
    }
    if (windowMs < buckets)
      throw new ConfigError(key, value, `window ${m[2]} is shorter than ${buckets} buckets of 1 ms`)
    return { kind, max, windowMs, buckets, bucketMs: Math.ceil(windowMs / buckets), text: `${max}/${m[2]}` }
  })
}

function section(raw: RawIni, name: string): Section {
  return raw[name] ?? {}
}

/**
 * The rules of [limits] (base undefined) or of an [account:LOGIN] section over [limits] (base):
 * messages and recipients, then [signals] networks (the section's own, else [signals]').
 */
function rulesFor(prefix: string, limits: Section, signals: Section, base?: Section): Rule[] {
  const pick = (k: string): unknown => (limits[k] !== undefined ? limits[k] : base?.[k])
  const given = pick('buckets')
  const buckets = parseInteger(
    `${prefix}.buckets`,
    given === undefined || text(given) === '' ? DEFAULTS.limits.buckets : given,
    1,
    MAX_BUCKETS,
  )
  const messages = pick('messages') ?? DEFAULTS.limits.messages
  const recipients = pick('recipients') ?? DEFAULTS.limits.recipients
  const own = base !== undefined && limits.networks !== undefined
  const networks = own ? limits.networks : (signals.networks ?? DEFAULTS.signals.networks)
  return [
    ...parseRules(`${prefix}.messages`, 'messages', messages, buckets),
    ...parseRules(`${prefix}.recipients`, 'recipients', recipients, buckets),
    // A network is seen or not in a window: one "bucket", the window itself.
    ...parseRules(own ? `${prefix}.networks` : 'signals.networks', 'networks', networks, 1),
  ]
}

/**
 * invalid_recipients rules ("N/window", several comma-separated; empty or 0 = off) of [signals] or
 * an [account:LOGIN] section, with the buckets of that section's or [limits]'s `buckets`.
 */
function invalidRulesFor(prefix: string, value: unknown, sect: Section, limits: Section): Rule[] {
  const given = sect.buckets !== undefined ? sect.buckets : limits.buckets
  const buckets = parseInteger(
    `${prefix === 'signals' ? 'limits' : prefix}.buckets`,
    given === undefined || text(given) === '' ? DEFAULTS.limits.buckets : given,
    1,
    MAX_BUCKETS,
  )
  return parseRules(`${prefix}.invalid_recipients`, 'invalid_recipients', value, buckets)
}

/**
 * max_recipients_per_message of [limits] or an [account:LOGIN] section (unset there: the
 * [limits] value); 0 for empty or 0 (no cap). Throws ConfigError on anything but a whole number.
 */
function recipientCapFor(prefix: string, limits: Section, base?: Section): number {
  const key = 'max_recipients_per_message'
  const given = limits[key] !== undefined ? limits[key] : base?.[key]
  const value = given === undefined ? DEFAULTS.limits.max_recipients_per_message : given
  if (text(value) === '') return 0
  return parseInteger(`${prefix}.${key}`, value, 0, MAX_RECIPIENT_CAP)
}

function mailDomain(me: string): string {
  return me.trim() || 'localhost'
}

/**
 * Turns the raw ini object (as haraka-config returns it) into a frozen, typed Config.
 * `me` is this server's name (config/me), used for default addresses. Throws ConfigError.
 */
export function parseConfig(raw: RawIni, me = 'localhost'): Config {
  const warnings = unknownKeyWarnings(raw)
  const main = section(raw, 'main')
  const accounts = parseAccounts(raw, warnings)
  const norm = (s: string): string => canonicalAccount(s, accounts)
  const limits = section(raw, 'limits')
  const signals = section(raw, 'signals')
  const rules = rulesFor('limits', limits, signals)
  const accountRules = parseAccountRules(raw, limits, signals, norm)
  const accountMaxRecipients = new Map<string, number>()
  const authFailures = parseAuthFailures('signals', signals)
  const accountAuthFailures = new Map<string, AuthFailuresConfig | null>()
  const accountInvalidRecipients = new Map<string, readonly Rule[]>()
  for (const [name, sect] of Object.entries(raw)) {
    if (!name.startsWith('account:') || !sect) continue
    const account = norm(name.slice('account:'.length))
    accountMaxRecipients.set(account, recipientCapFor(`account:${name.slice(8)}`, sect, limits))
    if (sect.auth_failures !== undefined)
      accountAuthFailures.set(account, parseAuthFailures(name, { ...signals, auth_failures: sect.auth_failures }))
    if (sect.invalid_recipients !== undefined)
      accountInvalidRecipients.set(
        account,
        invalidRulesFor(`account:${name.slice(8)}`, sect.invalid_recipients, sect, limits),
      )
  }
  const { to, from, replyAddress, contact } = parseAlert(section(raw, 'alert'), me, warnings)
  const reactivateSect = section(raw, 'reactivate')
  const admins = parseLogins('reactivate.admins', reactivateSect.admins, norm)

  const config: Config = {
    mode: parseChoice('main.mode', main.mode, ['enforce', 'monitor'], DEFAULTS.main.mode),
    store: parseChoice('main.store', main.store, ['redis', 'memory'], DEFAULTS.main.store),
    onStoreError: parseChoice(
      'main.on_store_error',
      main.on_store_error,
      ['open', 'closed'],
      DEFAULTS.main.on_store_error,
    ),
    storeTimeoutMs: parseDuration('main.store_timeout', valueOr(main, 'main', 'store_timeout')),
    accounts,
    stateFile: text(valueOr(main, 'main', 'state_file')),
    rules,
    exempt: new Set(parseLogins('exempt.accounts', section(raw, 'exempt').accounts, norm)),
    accountRules,
    maxRecipients: recipientCapFor('limits', limits),
    accountMaxRecipients,
    alert: { to, from, replyAddress },
    contact,
    reactivate: {
      policy: parseChoice('reactivate.policy', reactivateSect.policy, ['admin', 'token'], DEFAULTS.reactivate.policy),
      admins: new Set(admins.length ? admins : to.map(norm)),
      tokenTtlMs: parseDuration('reactivate.token_ttl', valueOr(reactivateSect, 'reactivate', 'token_ttl')),
      probationMs: optionalDuration(
        'reactivate.probation',
        valueOr(reactivateSect, 'reactivate', 'probation'),
        reactivateSect.probation,
      ),
      probationFactor: parseFactor(
        'reactivate.probation_factor',
        valueOr(reactivateSect, 'reactivate', 'probation_factor'),
      ),
      maxReplyEnables: parseOneRule(
        'reactivate.max_reply_enables',
        reactivateSect.max_reply_enables === undefined
          ? DEFAULTS.reactivate.max_reply_enables
          : reactivateSect.max_reply_enables,
      ),
      autoEnableAfterMs:
        text(reactivateSect.auto_enable_after) === ''
          ? 0
          : parseDuration('reactivate.auto_enable_after', reactivateSect.auto_enable_after),
      requireNewPassword: parseBoolean(
        'reactivate.require_new_password',
        valueOr(reactivateSect, 'reactivate', 'require_new_password'),
        true,
      ),
    },
    held: {
      retryMs: parseDuration('held.retry', valueOr(section(raw, 'held'), 'held', 'retry')),
      maxHoldMs: parseDuration('held.max_hold', valueOr(section(raw, 'held'), 'held', 'max_hold')),
    },
    me: mailDomain(me),
    redis: parseRedis(section(raw, 'redis')),
    invalidRecipients: invalidRulesFor(
      'signals',
      signals.invalid_recipients === undefined ? DEFAULTS.signals.invalid_recipients : signals.invalid_recipients,
      {},
      limits,
    ),
    accountInvalidRecipients,
    authFailures,
    accountAuthFailures,
    exemptNetworks: parseNetworks('signals.exempt_networks', signals.exempt_networks),
    warnAt: parseFraction('warn.at', valueOr(section(raw, 'warn'), 'warn', 'at'), section(raw, 'warn').at),
    webhook: parseWebhook(section(raw, 'webhook'), warnings),
    notify: parseNotify(section(raw, 'notify')),
    warnings,
  }
  return deepFreeze(config)
}

/** A warning for each section and key hijack-guard.ini does not know (see DEFAULTS). */
function unknownKeyWarnings(raw: RawIni): string[] {
  const warnings: string[] = []
  for (const [name, sect] of Object.entries(raw)) {
    if (!sect || typeof sect !== 'object') continue
    if (name.startsWith('account:')) {
      for (const key of Object.keys(sect)) {
        if (![...(KNOWN_KEYS.limits ?? []), ...ACCOUNT_SIGNALS].includes(key))
          warnings.push(`unknown key [${name}] ${key} ignored`)
      }
      continue
    }
    const known = KNOWN_KEYS[name]
    if (!known) {
      warnings.push(`unknown section [${name}] ignored`)
      continue
    }
    for (const key of Object.keys(sect)) {
      if (!known.includes(key)) warnings.push(`unknown key [${name}] ${key} ignored`)
    }
  }
  return warnings
}

/** The [account:LOGIN] sections: per canonical account, its rules over [limits]. */
function parseAccountRules(
  raw: RawIni,
  limits: Section,
  signals: Section,
  norm: (login: string) => string,
): Map<string, Rule[]> {
  const accountRules = new Map<string, Rule[]>()
  for (const [name, sect] of Object.entries(raw)) {
    if (!name.startsWith('account:') || !sect) continue
    const account = norm(name.slice('account:'.length))
    const login = name.slice('account:'.length).trim()
    if (!LOGIN.test(login) || account === '')
      throw new ConfigError(
        `${name}`,
        login,
        'the section names no login (a login has no spaces or control characters)',
      )
    if (accountRules.has(account)) {
      // Which limits apply must not depend on the order of the sections.
      const first =
        [...Object.keys(raw)].find(
          (n) => n !== name && n.startsWith('account:') && norm(n.slice('account:'.length)) === account,
        ) ?? ''
      throw new ConfigError(
        `${name}`,
        login,
        `names the same account as [${first}] (${JSON.stringify(account)} under [accounts]); keep one section`,
      )
    }
    accountRules.set(account, rulesFor(`account:${name.slice(8)}`, sect, signals, limits))
  }
  return accountRules
}

/** [webhook]: null without a url; a url needs a secret; an http:// url off this host is warned about. */
function parseWebhook(sect: Section, warnings: string[]): WebhookConfig | null {
  const url = text(sect.url)
  if (url === '') return null
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new ConfigError('webhook.url', sect.url, 'expected an http:// or https:// URL')
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new ConfigError('webhook.url', sect.url, 'expected an http:// or https:// URL')
  const secret = text(sect.secret)
  if (secret === '')
    throw new ConfigError('webhook.secret', sect.secret, 'required when [webhook] url is set (it signs every event)')
  if (parsed.protocol === 'http:' && !isLoopbackHost(parsed.hostname))
    warnings.push(
      `[webhook] url ${parsed.origin} is http:// to another host: the signed event bodies (accounts, addresses) travel in clear; use https://`,
    )
  const names = parseList(valueOr(sect, 'webhook', 'events'))
  const events = new Set<WebhookEventName>()
  for (const name of names) {
    const known = WEBHOOK_EVENTS.find((e) => e === name.toLowerCase())
    if (!known)
      throw new ConfigError('webhook.events', sect.events, `"${name}" is not one of ${WEBHOOK_EVENTS.join(', ')}`)
    events.add(known)
  }
  return {
    url: parsed.href,
    secret,
    events,
    timeoutMs: parseDuration('webhook.timeout', valueOr(sect, 'webhook', 'timeout')),
  }
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host)
}

/** [notify]: user_address must name %s (the login) or %u (its local part) and make an address. */
function parseNotify(sect: Section): Config['notify'] {
  const user = parseBoolean('notify.user', valueOr(sect, 'notify', 'user'), false)
  const userAddress = text(valueOr(sect, 'notify', 'user_address'))
  if (!/%[su]/.test(userAddress))
    throw new ConfigError(
      'notify.user_address',
      sect.user_address,
      'expected %s (the login) or %u@domain (its local part)',
    )
  if (userAddress !== '%s' && !ADDRESS.test(userAddress.replace(/%[su]/g, 'user')))
    throw new ConfigError(
      'notify.user_address',
      sect.user_address,
      'expected %s or an address pattern like %u@example.com',
    )
  return { user, userAddress }
}

/** [alert]: who gets alerts, who they are from, the reply address and the contact in notices. */
function parseAlert(
  alertSect: Section,
  me: string,
  warnings: string[],
): Config['alert'] & { readonly contact: string } {
  const ownAddress = `hijack-guard@${mailDomain(me)}`
  const from = text(alertSect.from) || ownAddress
  checkAddress('alert.from', alertSect.from, from)
  let to = parseList(alertSect.to)
  for (const address of to) checkAddress('alert.to', alertSect.to, address)
  if (to.length === 0) {
    to = [`postmaster@${mailDomain(me)}`]
    warnings.push(`[alert] to is empty: alerts go to ${to[0]}`)
  }
  // Never [alert] from by default: from may be a real mailbox (security@...), and every message
  // to the reply address is consumed.
  const replyAddress = text(alertSect.reply_address) || ownAddress
  checkAddress('alert.reply_address', alertSect.reply_address, replyAddress)
  checkReplyAddress(alertSect, to, from, replyAddress)
  const contact = text(alertSect.contact) || to[0] || `postmaster@${mailDomain(me)}`
  checkAddress('alert.contact', alertSect.contact, contact)
  return { to, from, replyAddress, contact }
}

/** Throws ConfigError when the reply address is a mailbox someone reads (see below). */
function checkReplyAddress(alertSect: Section, to: readonly string[], from: string, replyAddress: string): void {
  const replyLocal = mailbox(replyAddress).split('@')[0] ?? ''
  const replyTaken =
    ['postmaster', 'abuse'].includes(replyLocal) ||
    to.some((t) => mailbox(t) === mailbox(replyAddress)) ||
    // An explicit from is a mailbox someone may read: the reply address must not swallow it.
    (text(alertSect.from) !== '' && text(alertSect.reply_address) !== '' && mailbox(from) === mailbox(replyAddress))
  if (replyTaken) {
    // Mail to the reply address (any +detail) is consumed, never delivered: it must be an
    // address of its own, or real mail to it would vanish.
    throw new ConfigError(
      'alert.reply_address',
      replyAddress,
      'the reply address takes every message sent to it; give it an address of its own (e.g. hijack-guard@your.domain), not postmaster, abuse, an [alert] to address or the [alert] from address',
    )
  }
}

/** The mailbox an address delivers to: lowercase, without a +detail. */
function mailbox(a: string): string {
  const at = a.lastIndexOf('@')
  return `${(a.slice(0, at).split('+')[0] ?? '').toLowerCase()}@${a.slice(at + 1).toLowerCase()}`
}

/**
 * [signals] auth_failures ("N/window"; unset = the default, empty or 0 = off) and its action, of
 * [signals] or (with [signals]' action) of an [account:LOGIN] section named `name`.
 */
function parseAuthFailures(name: string, sect: Section): AuthFailuresConfig | null {
  const given = sect.auth_failures === undefined ? DEFAULTS.signals.auth_failures : sect.auth_failures
  const rules = parseRules(`${name}.auth_failures`, 'messages', given, 1)
  const action = parseChoice<AuthFailuresAction>(
    'signals.auth_failures_action',
    sect.auth_failures_action,
    ['alert', 'block'],
    DEFAULTS.signals.auth_failures_action,
  )
  const [rule, extra] = rules
  if (!rule) return null
  if (extra) throw new ConfigError(`${name}.auth_failures`, given, 'expected one N/window, e.g. 20/1h')
  return { max: rule.max, windowMs: rule.windowMs, text: rule.text, action }
}

/** A duration, or 0 when the key is set empty (or to 0) on purpose; unset takes `fallback`'s default. */
function optionalDuration(key: string, fallback: unknown, given: unknown): number {
  const value = given !== undefined && (text(given) === '' || text(given) === '0') ? '' : fallback
  return text(value) === '' ? 0 : parseDuration(key, value)
}

/** A factor in (0, 1], e.g. 0.5. */
function parseFactor(key: string, value: unknown): number {
  const f = Number(text(value))
  if (!(f > 0 && f <= 1)) throw new ConfigError(key, value, 'expected a number above 0 and at most 1, e.g. 0.5')
  return f
}

/** One "N/window" (empty or 0: null). */
function parseOneRule(key: string, value: unknown): { max: number; windowMs: number; text: string } | null {
  const [rule, extra] = parseRules(key, 'messages', value, 1)
  if (extra) throw new ConfigError(key, value, 'expected one N/window, e.g. 3/30d')
  return rule ? { max: rule.max, windowMs: rule.windowMs, text: rule.text } : null
}

/**
 * The rules of an account on probation: each max multiplied by `factor` (rounded down, at least
 * 1), the same windows and buckets (so the counts go on), the text marked; networks rules as they
 * are. Made once per rule set.
 */
export function probationRules(rules: readonly Rule[], factor: number): readonly Rule[] {
  let byFactor = onProbation.get(rules)
  if (!byFactor) onProbation.set(rules, (byFactor = new Map<number, readonly Rule[]>()))
  let scaled = byFactor.get(factor)
  if (!scaled) {
    scaled = Object.freeze(
      rules.map((r) => {
        // Networks stay: halving 5 networks would disable an owner who reads mail at home and at work.
        if (r.kind === 'networks') return r
        const max = Math.max(1, Math.floor(r.max * factor))
        return Object.freeze({ ...r, max, text: `${max}/${r.text.split('/')[1] ?? ''} on probation` })
      }),
    )
    byFactor.set(factor, scaled)
  }
  return scaled
}

const onProbation = new WeakMap<readonly Rule[], Map<number, readonly Rule[]>>()

/** A comma-separated list of CIDRs (or single addresses), checked; each as written. */
function parseNetworks(key: string, value: unknown): string[] {
  return parseList(value).map((cidr) => {
    if (!isNetwork(cidr))
      throw new ConfigError(key, value, `"${cidr}" is not a network like 192.0.2.0/24 or 2001:db8::/32, or an address`)
    return cidr
  })
}

/**
 * [warn] at: "80%" (or a fraction such as 0.8) as a fraction in (0, 1]; empty = 0 (off). An
 * unset key takes the default (`fallback` is what valueOr gave), an empty one turns warnings off.
 */
function parseFraction(key: string, fallback: unknown, given: unknown): number {
  const value = given !== undefined && text(given) === '' ? '' : fallback
  const t = text(value)
  if (t === '' || t === '0' || t === '0%') return 0
  const m = /^(\d+(?:\.\d+)?)\s*(%?)$/.exec(t)
  const fraction = m ? Number(m[1]) / (m[2] ? 100 : 1) : NaN
  if (!(fraction > 0 && fraction <= 1))
    throw new ConfigError(key, value, 'expected a percentage from 1% to 100%, e.g. 80%')
  return fraction
}

/** [redis], config/redis.ini already merged under it (withRedisIni). */
function parseRedis(redisSect: Section): RedisConfig {
  const username = text(redisSect.username)
  // A password may contain " ;": taken verbatim, without inline-comment stripping.
  const password =
    typeof redisSect.password === 'string' || typeof redisSect.password === 'number'
      ? String(redisSect.password).trim()
      : ''
  return {
    host: text(valueOr(redisSect, 'redis', 'host')),
    port: parseInteger('redis.port', valueOr(redisSect, 'redis', 'port'), 1, 65535),
    db: parseInteger('redis.db', valueOr(redisSect, 'redis', 'db'), 0, 1_000_000),
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    journal: text(valueOr(redisSect, 'redis', 'journal')),
    journalCheckMs: parseDuration('redis.journal_check', valueOr(redisSect, 'redis', 'journal_check')),
  }
}

/** The rules that apply to an account: its [account:LOGIN] override, else [limits]. */
export function rulesForAccount(config: Config, account: string): readonly Rule[] {
  return config.accountRules.get(account) ?? config.rules
}

/** The auth_failures limit of an account: its [account:LOGIN] one, else [signals]; null = off. */
export function authFailuresFor(config: Config, account: string): AuthFailuresConfig | null {
  const own = config.accountAuthFailures.get(account)
  return own !== undefined ? own : config.authFailures
}

/** The invalid_recipients rules of an account: its [account:LOGIN] value, else [signals]; empty = off. */
export function invalidRulesForAccount(config: Config, account: string): readonly Rule[] {
  return config.accountInvalidRecipients.get(account) ?? config.invalidRecipients
}

/** The recipients one message of an account may have: its [account:LOGIN] cap, else [limits]; 0 = no cap. */
export function maxRecipientsFor(config: Config, account: string): number {
  return config.accountMaxRecipients.get(account) ?? config.maxRecipients
}

/** What the plugin and the CLI read config through: Haraka's config reader (haraka-config). */
export interface ConfigReader {
  get(name: string, type?: unknown, cb?: () => void): unknown
}

/**
 * Reads hijack-guard.ini (the package defaults with the Haraka directory's copy over them),
 * config/redis.ini and config/me, and parses them. `onChange` runs when hijack-guard.ini
 * changes. Throws ConfigError.
 */
export function readConfig(reader: ConfigReader, onChange?: () => void): Config {
  const raw = (onChange ? reader.get(CONFIG_FILE, 'ini', onChange) : reader.get(CONFIG_FILE, 'ini')) as RawIni
  const redisIni = reader.get('redis.ini', 'ini') as RawIni | undefined
  const meValue = reader.get('me')
  const me = typeof meValue === 'string' ? meValue : ''
  return parseConfig(withRedisIni(raw, redisIni), me)
}

/** Merges Haraka's config/redis.ini [server] under our [redis] section (ours wins). */
export function withRedisIni(raw: RawIni, redisIni: RawIni | undefined): RawIni {
  const server = redisIni?.server ?? {}
  const opts = redisIni?.opts ?? {}
  const base: Section = {}
  for (const k of ['host', 'port', 'db']) if (server[k] !== undefined) base[k] = server[k]
  for (const k of ['username', 'password']) if (opts[k] !== undefined) base[k] = opts[k]
  return { ...raw, redis: { ...base, ...(raw.redis ?? {}) } }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    // Freezing a Map or Set leaves its entries alone: freeze the values it holds as well.
    const children = value instanceof Map || value instanceof Set ? [...value.values()] : Object.values(value)
    for (const v of children) deepFreeze(v)
  }
  return value
}
