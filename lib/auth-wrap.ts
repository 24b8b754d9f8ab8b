import type { Connection, HarakaPlugin, PasswdCallback, PasswdCheck } from './haraka'
import { errorText } from './messages'

const WRAPPED = Symbol.for('hijack-guard.wrapped')
const CHECKS = ['check_plain_passwd', 'check_cram_md5_passwd'] as const

/** Decides after a correct password: the 535 text to answer instead, or null to accept. */
export type AuthGate = (connection: Connection, user: string) => Promise<string | null>

/**
 * Wraps the password checks of every loaded auth plugin (auth_base descendants: flat_file,
 * auth_proxy, auth-ldap, ...) so that a correct password for a disabled account is answered
 * 535 with the gate's text. A wrong password keeps its own answer, so a password guesser
 * learns nothing about the account's state. Returns the names of the plugins wrapped.
 */
export function wrapAuthPlugins(self: HarakaPlugin, plugins: Record<string, Record<string, unknown>>, gate: AuthGate): string[] {
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
        original.call(this, connection, user, passwd, (valid, opts) => {
          if (!valid) return answer(valid, opts)
          gate(connection, String(user)).then(
            (refusal) => (refusal ? answer(false, { code: 535, message: refusal }) : answer(valid, opts)),
            (err: unknown) => {
              self.logerror(`AUTH check failed, accepting the login: ${errorText(err)}`)
              answer(valid, opts)
            },
          )
        })
      }
      check[WRAPPED] = true
      p[method] = check
      if (!wrapped.includes(name)) wrapped.push(name)
    }
  }
  return wrapped
}
