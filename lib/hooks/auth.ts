/**
 * AUTH: the gate that refuses a disabled account before its password is checked, and the wrapper
 * that puts it in front of the password checks of every loaded auth plugin.
 */
import { canonicalAccount } from '../account'
import { authFailuresFor } from '../config'
import type { Connection, HarakaPlugin, PasswdCallback, PasswdCheck } from '../haraka'
import { answers, type AuthRefusal } from '../answers'
import { errorText } from '../messages'
import { samePassword } from '../password'
import { withTimeout, type AuditEntry, type DisabledRecord } from '../store'
import { networkOf } from '../network'
import { emitPasswordRefused } from './events'
import { sendSprayAlert } from './mailer'
import { logStoreDown, type GuardState } from './state'

/**
 * AUTH, before the password is checked: the 535 answer for an account that is disabled, or null
 * to let the auth plugin check the password. The lookup gives up after store_timeout; a store
 * failure answers null too (MAIL FROM applies on_store_error).
 */
export async function authRefusal(
  plugin: HarakaPlugin,
  connection: Connection,
  login: string,
  state: GuardState,
): Promise<AuthRefusal | null> {
  if (state.config.mode === 'monitor') return null
  const account = canonicalAccount(login, state.config.accounts)
  // Password spraying, action = block: answered from this process's memory, no store call.
  const blockedUntil = state.process.authBlocks.get(account)
  if (blockedUntil !== undefined) {
    if (blockedUntil > Date.now()) {
      connection.lognotice(
        plugin,
        `refusing AUTH of ${JSON.stringify(account)}: too many failed logins (password not checked)`,
      )
      return answers.authBlocked(state.config.contact)
    }
    state.process.authBlocks.delete(account)
  }
  let record: DisabledRecord | null
  try {
    record = await withTimeout(state.store.getDisabled(account), state.config.storeTimeoutMs, 'AUTH lookup')
  } catch (err) {
    logStoreDown(state, `store unavailable at AUTH, MAIL FROM will decide: ${errorText(err)}`, (line) =>
      connection.logerror(plugin, line),
    )
    return null
  }
  if (!record) return null
  connection.lognotice(plugin, `refusing AUTH of disabled account ${JSON.stringify(account)} (password not checked)`)
  return answers.disabledAtAuth({ account, by: record.by }, state.config.contact)
}

const WRAPPED = Symbol.for('hijack-guard.wrapped')
const CHECKS = ['check_plain_passwd', 'check_cram_md5_passwd'] as const

/** Decides before the password check: the 535 answer to give instead, or null to check the password. */
export type AuthGate = (connection: Connection, user: string) => Promise<AuthRefusal | null>

/**
 * Told the outcome of every password check the gate let through (never of a gate refusal), with
 * the password when the mechanism shows it (PLAIN, LOGIN; null for CRAM-MD5). A failure is
 * answered once the returned promise settles (so a block is in place before the client hears the
 * answer); a success once it settles too, as the AuthRefusal it resolves with, if any (the
 * incident's password), or as the success.
 */
export type AuthOutcome = (
  connection: Connection,
  user: string,
  valid: boolean,
  password: string | null,
) => Promise<AuthRefusal | null>

/** How many accounts a process remembers failed AUTHs or blocks for (then the oldest is forgotten). */
export const AUTH_MEMORY_CAP = 10_000

/**
 * Sets `key` as the newest entry. Beyond AUTH_MEMORY_CAP the entries whose time has passed go
 * first, then the oldest one: a flood of failed AUTHs for other logins never wipes every block at
 * once (it used to clear the whole map), and a block stays while fewer than the cap are newer.
 */
function remember<T>(map: Map<string, T>, key: string, value: T, until: (v: T) => number): void {
  map.delete(key)
  map.set(key, value)
  if (map.size <= AUTH_MEMORY_CAP) return
  const now = Date.now()
  for (const [k, v] of map) if (until(v) <= now) map.delete(k)
  const oldest = map.keys().next()
  if (map.size > AUTH_MEMORY_CAP && !oldest.done) map.delete(oldest.value)
}

/**
 * After a password check the backend accepted or refused: see acceptedAuth and failedAuth. Never
 * throws; a store failure is logged (rate-limited) and AUTH goes on as usual.
 */
export async function authOutcome(
  plugin: HarakaPlugin,
  connection: Connection,
  login: string,
  valid: boolean,
  password: string | null,
  state: GuardState,
): Promise<AuthRefusal | null> {
  const account = canonicalAccount(login, state.config.accounts)
  if (!valid) {
    await failedAuth(plugin, connection, account, state)
    return null
  }
  state.process.sessionPasswords.set(connection, password)
  const refusal = await oldPasswordRefusal(plugin, connection, account, password, state)
  if (!refusal) await authAfterFailures(plugin, connection, account, state)
  return refusal
}

/**
 * [reactivate] require_new_password: the answer for a login the backend accepted with the
 * password that was in use when the account was disabled (535 5.7.8), or null. The first other
 * password accepted clears what was kept (it was changed). Costs no round trip for an account
 * with nothing kept once this process has looked (the store caches it like the disable record);
 * a store failure lets the login through, logged.
 */
async function oldPasswordRefusal(
  plugin: HarakaPlugin,
  connection: Connection,
  account: string,
  password: string | null,
  state: GuardState,
): Promise<AuthRefusal | null> {
  const { config, store } = state
  if (!config.reactivate.requireNewPassword) return null
  try {
    const hashes = await withTimeout(store.oldPasswords(account), config.storeTimeoutMs, 'AUTH password check')
    if (hashes.length === 0) return null
    if (password === null) {
      connection.logwarn(
        plugin,
        `${JSON.stringify(account)} logged in with a mechanism that hides the password while a password change is pending: not checked`,
      )
      return null
    }
    for (const hash of hashes) {
      if (!(await samePassword(hash, password))) continue
      connection.lognotice(
        plugin,
        `refusing AUTH of ${JSON.stringify(account)}: the password of incident ${hash.incident} must be changed`,
      )
      void audit(plugin, state, account, 'password-refused', `the password of incident ${hash.incident}`)
      emitPasswordRefused(plugin, state, {
        account,
        incident: hash.incident,
        ...(connection.remote.ip ? { ip: connection.remote.ip } : {}),
      })
      return answers.oldPassword(account, config.contact)
    }
    await withTimeout(store.forgetPasswords(account), config.storeTimeoutMs, 'AUTH password change')
    connection.loginfo(plugin, `${JSON.stringify(account)} logged in with a new password: the old one is forgotten`)
    void audit(plugin, state, account, 'password-changed', 'a new password was accepted at AUTH')
    return null
  } catch (err) {
    logStoreDown(state, `store unavailable, AUTH password check skipped: ${errorText(err)}`, (line) =>
      connection.logerror(plugin, line),
    )
    return null
  }
}

/** Writes an audit entry by the AUTH path; a failure is logged. */
async function audit(
  plugin: HarakaPlugin,
  state: GuardState,
  account: string,
  action: AuditEntry['action'],
  reason: string,
): Promise<void> {
  try {
    await withTimeout(
      state.store.audit({ at: Date.now(), account, action, actor: 'auth', how: 'auth', reason }),
      state.config.storeTimeoutMs,
      'audit',
    )
  } catch (err) {
    plugin.logerror(`audit entry for ${JSON.stringify(account)} not written: ${errorText(err)}`)
  }
}

/**
 * A successful AUTH costs no store call for spraying: it is checked against the failures this
 * process counted, and one after failures from other networks is logged at WARN and written to
 * the audit trail as evidence.
 */
async function authAfterFailures(
  plugin: HarakaPlugin,
  connection: Connection,
  account: string,
  state: GuardState,
): Promise<void> {
  const { config, process: proc } = state
  const limit = authFailuresFor(config, account)
  if (!limit) return
  const ip = connection.remote.ip ?? ''
  const now = Date.now()
  const seen = proc.authFailures.get(account)
  if (!seen || seen.until <= now) return
  const mine = networkOf(ip)
  const others = seen.sources.filter((s) => networkOf(s) !== mine)
  if (others.length === 0) return
  const reason = `AUTH from ${ip} after ${seen.count} failed AUTHs in ${limit.text} from other networks: ${others.join(', ')}`
  connection.logwarn(plugin, `possible password spraying success for ${JSON.stringify(account)}: ${reason}`)
  try {
    await withTimeout(
      state.store.audit({ at: now, account, action: 'auth-after-failures', actor: 'signals', how: 'auth', reason }),
      config.storeTimeoutMs,
      'AUTH evidence',
    )
  } catch (err) {
    logStoreDown(state, `store unavailable, AUTH evidence not written: ${errorText(err)}`, (line) =>
      connection.logerror(plugin, line),
    )
  }
}

/**
 * A failed AUTH is counted in the store ([signals] auth_failures, one store call), and may alert
 * and block. [exempt] accounts are counted and alerted, never blocked.
 */
async function failedAuth(
  plugin: HarakaPlugin,
  connection: Connection,
  account: string,
  state: GuardState,
): Promise<void> {
  const { config, process: proc } = state
  const limit = authFailuresFor(config, account)
  if (!limit) return
  const ip = connection.remote.ip ?? ''
  const now = Date.now()
  let result
  try {
    result = await withTimeout(
      state.store.authFailure({ account, source: ip, max: limit.max, windowMs: limit.windowMs }),
      config.storeTimeoutMs,
      'AUTH failure',
    )
  } catch (err) {
    logStoreDown(state, `store unavailable, failed AUTH not counted: ${errorText(err)}`, (line) =>
      connection.logerror(plugin, line),
    )
    return
  }
  const until = now + Math.max(0, result.until - result.at)
  remember(
    proc.authFailures,
    account,
    { sources: result.sources, count: result.count, until: now + limit.windowMs },
    (v) => v.until,
  )
  const block = result.reached && limit.action === 'block' && config.mode === 'enforce' && !config.exempt.has(account)
  if (block) {
    remember(proc.authBlocks, account, until, (v) => v)
  }
  if (!result.alert) return
  connection.logwarn(
    plugin,
    `password spraying: ${JSON.stringify(account)} reached ${limit.text} failed AUTHs (${result.count}) from ${result.sources.join(', ')}${block ? '; AUTH blocked' : ''}`,
  )
  await sendSprayAlert(plugin, state, limit, {
    account,
    count: result.count,
    sources: result.sources,
    blocked: block,
    until,
  })
}

/**
 * Wraps the password checks of every loaded auth plugin (auth_base descendants: flat_file,
 * auth_proxy, auth-ldap, ...) so that the gate runs first: a disabled account is answered 535
 * with the gate's text whatever the password, and the password is never checked, so the answer
 * tells nobody whether a stolen password is right. When the gate answers null, or fails, the
 * original check decides. Returns the names of the plugins wrapped.
 */
export function wrapAuthPlugins(
  self: HarakaPlugin,
  plugins: Record<string, Record<string, unknown>>,
  gate: AuthGate,
  outcome?: AuthOutcome,
): string[] {
  const wrapped: string[] = []
  for (const [name, p] of Object.entries(plugins)) {
    if (!p || p === (self as unknown)) continue
    for (const method of CHECKS) {
      const original = p[method] as (PasswdCheck & { [WRAPPED]?: boolean }) | undefined
      if (typeof original !== 'function' || original[WRAPPED]) continue
      const check: PasswdCheck & { [WRAPPED]?: boolean } = function (this: unknown, connection, user, passwd, cb) {
        let answered = false
        const answer: PasswdCallback = (valid, opts) => {
          if (answered) return
          answered = true
          cb(valid, opts)
        }
        // Runs inside a promise callback: a throw there would be an unhandled rejection, which
        // kills Haraka, so a throwing check is a failed login.
        const checked: PasswdCallback = (valid, opts) => {
          if (answered || !outcome) return answer(valid, opts)
          let told: Promise<AuthRefusal | null>
          try {
            // check_cram_md5_passwd is given the client's digest, not the password.
            told = outcome(
              connection,
              String(user),
              Boolean(valid),
              method === 'check_plain_passwd' ? String(passwd) : null,
            )
          } catch (err) {
            told = Promise.reject(err instanceof Error ? err : new Error(String(err)))
          }
          void told
            .catch((err: unknown) => {
              self.logerror(`AUTH outcome failed: ${errorText(err)}`)
              return null
            })
            .then((refusal) => (refusal ? answer(false, refusal) : answer(valid, opts)))
        }
        const checkPassword = (): void => {
          try {
            original.call(this, connection, user, passwd, checked)
          } catch (err) {
            self.logerror(`password check of ${name} failed: ${errorText(err)}`)
            answer(false)
          }
        }
        gate(connection, String(user))
          .then(
            (refusal) => (refusal ? answer(false, refusal) : checkPassword()),
            (err: unknown) => {
              self.logerror(`AUTH gate failed, checking the password as usual: ${errorText(err)}`)
              checkPassword()
            },
          )
          .catch((err: unknown) => self.logerror(`AUTH answer failed: ${errorText(err)}`))
      }
      check[WRAPPED] = true
      p[method] = check
      if (!wrapped.includes(name)) wrapped.push(name)
    }
  }
  return wrapped
}
