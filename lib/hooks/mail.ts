/** MAIL FROM: the authoritative gate that refuses a disabled account and closes the session. */
import { answers } from '../answers'
import { type Connection, type HarakaPlugin, type Verdict } from '../haraka'
import { shownAccount } from '../messages'
import type { DisabledRecord } from '../store'
import { sessionAccount, storeFailure, type GuardState } from './state'

/** The connection note of an AUTH that found the account enabled. */
export const AUTH_CHECKED = 'hijack_guard_auth_checked'
export interface AuthChecked {
  readonly account: string
  readonly at: number
}

/**
 * How long the AUTH lookup stands in for the first MAIL FROM's, unless this process has seen an
 * account disabled since. A disable elsewhere in that moment (another server, the CLI) is still
 * caught: the counting script refuses a disabled account's message at the end of DATA.
 */
const AUTH_CHECK_FRESH_MS = 2000

/** MAIL FROM: refuse a disabled account with 550 5.7.1 and close the session. */
export async function checkMail(plugin: HarakaPlugin, connection: Connection, state: GuardState): Promise<Verdict> {
  const account = sessionAccount(connection, state.config)
  if (account === null) return
  const checked = connection.notes[AUTH_CHECKED] as AuthChecked | undefined
  if (checked) {
    delete connection.notes[AUTH_CHECKED]
    // The AUTH a moment ago looked this account up: one store round trip per message, not two.
    if (
      checked.account === account &&
      Date.now() - checked.at < AUTH_CHECK_FRESH_MS &&
      checked.at > state.process.lastDisableSeenAt
    )
      return
  }
  let record: DisabledRecord | null
  try {
    record = await state.store.getDisabled(account)
  } catch (err) {
    return storeFailure(plugin, connection, state, err, 'MAIL FROM')
  }
  if (!record) return
  connection.results.add(plugin, { fail: 'disabled', msg: `account ${shownAccount(account)} is disabled` })
  if (state.config.mode === 'monitor') {
    connection.logwarn(plugin, `monitor mode: account ${JSON.stringify(account)} is disabled; not refusing`)
    return
  }
  connection.lognotice(plugin, `refusing MAIL FROM of disabled account ${JSON.stringify(account)}`)
  return answers.disabledAtMail({ account, by: record.by }, state.config.contact)
}
