/**
 * AUTH: the gate that refuses a disabled account before its password is checked, and the wrapper
 * that puts it in front of the password checks of every loaded auth plugin.
 */
import { canonicalAccount } from '../account'
import type { Connection, HarakaPlugin, PasswdCallback, PasswdCheck } from '../haraka'
import { answers, type AuthRefusal } from '../answers'
import { errorText } from '../messages'
import { withTimeout, type DisabledRecord } from '../store'
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
        const checkPassword = (): void => {
          try {
            original.call(this, connection, user, passwd, answer)
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
