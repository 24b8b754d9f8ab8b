/**
 * What every hook receives: the config, the store, the mail seam and this process's own state;
 * the session's account; and how a store failure becomes the configured policy.
 */
import { canonicalAccount, type AccountsConfig } from '../account'
import type { Config } from '../config'
import type { MailSender } from '../alert'
import { createFailureLog, type FailureLog } from '../failure-log'
import { answers } from '../answers'
import { type Connection, type HarakaPlugin, type Verdict } from '../haraka'
import { errorText } from '../messages'
import type { Store } from '../store'
import { newHeldMail, type HeldMail } from './held'
import { newWebhookStats, type WebhookStats } from '../webhook'

/** What this Haraka process remembers between hooks (one per plugin object). */
export interface ProcessState {
  /** The rate limiter of "store unavailable" lines. */
  readonly storeDown: FailureLog
  /**
   * Failed AUTHs this process counted, per account: the sources the store reported and until
   * when (local clock). Read by a successful AUTH without a store call.
   */
  readonly authFailures: Map<
    string,
    { readonly sources: readonly string[]; readonly count: number; readonly until: number }
  >
  /** Accounts whose AUTH is answered 454 ([signals] auth_failures_action = block), until when (local clock). */
  readonly authBlocks: Map<string, number>
  /**
   * The password each authenticated session logged in with (null: its AUTH mechanism hides it),
   * in memory only, for as long as Haraka keeps the connection: hashed if its mail disables the
   * account ([reactivate] require_new_password).
   */
  readonly sessionPasswords: WeakMap<Connection, string | null>
  /** Held messages outbound waits on here, released at an enable notice (held.ts). */
  readonly held: HeldMail
  /** The rate limiter of "webhook event NOT delivered" lines. */
  readonly webhookFailures: FailureLog
  /** Webhook events this process delivered, gave up, has on their way. */
  readonly webhookStats: WebhookStats
}

/** A fresh ProcessState, for a plugin object that starts. */
export function newProcessState(): ProcessState {
  return {
    storeDown: createFailureLog({ what: 'store unavailable' }),
    authFailures: new Map(),
    authBlocks: new Map(),
    sessionPasswords: new WeakMap(),
    held: newHeldMail(),
    webhookFailures: createFailureLog({ what: 'webhook failures' }),
    webhookStats: newWebhookStats(),
  }
}

export interface GuardState {
  readonly config: Config
  readonly store: Store
  /** Queues a message through Haraka's outbound (a seam: tests replace it). */
  readonly sendMail: MailSender
  readonly process: ProcessState
}

/**
 * The login of a session: what AUTH set, else (with [accounts] xclient_login) the login an
 * XCLIENT proxy passed; null for a session with neither.
 */
export function sessionLogin(connection: Connection, config: Config): string | null {
  const login = connection.notes.auth_user
  if (typeof login === 'string') return login
  const proxied = config.accounts.xclientLogin ? connection.remote.login : undefined
  return typeof proxied === 'string' && proxied !== '' ? proxied : null
}

/** Canonical accounts of recent logins, per [accounts] config: every message of a session names the same login. */
const canonical = new WeakMap<AccountsConfig, Map<string, string>>()
const CANONICAL_CACHE_SIZE = 1000

/** The canonical account of a session ([accounts]), or null for a session without a login. */
export function sessionAccount(connection: Connection, config: Config): string | null {
  const login = sessionLogin(connection, config)
  if (login === null) return null
  let known = canonical.get(config.accounts)
  if (!known) {
    known = new Map()
    canonical.set(config.accounts, known)
  }
  let account = known.get(login)
  if (account === undefined) {
    if (known.size >= CANONICAL_CACHE_SIZE) known.clear()
    account = canonicalAccount(login, config.accounts)
    known.set(login, account)
  }
  return account
}

/**
 * Logs a store failure at ERROR, rate-limited: the first of an outage, then one count a minute.
 * Returns true when this one was logged.
 */
export function logStoreDown(state: Pick<GuardState, 'process'>, text: string, log: (line: string) => void): boolean {
  return state.process.storeDown.failure(text, log)
}

/** The verdict when the store failed: open lets mail flow, closed answers 451 4.3.0. */
export function storeFailure(
  plugin: HarakaPlugin,
  connection: Connection,
  state: GuardState,
  err: unknown,
  where: string,
): Verdict {
  const text = `store unavailable at ${where} (on_store_error=${state.config.onStoreError}): ${errorText(err)}`
  // Every failure is in the results as a msg (haraka-results logs an err at ERROR, a msg not);
  // the log gets the first of an outage and then a count a minute.
  connection.results.add(plugin, { msg: text })
  logStoreDown(state, text, (line) => connection.logerror(plugin, line))
  return storeErrorVerdict(state)
}

/** What on_store_error answers: nothing (open) or 451 4.3.0 (closed). */
export function storeErrorVerdict(state: Pick<GuardState, 'config'>): Verdict {
  if (state.config.onStoreError === 'open') return
  return answers.storeDown(state.config.contact)
}
