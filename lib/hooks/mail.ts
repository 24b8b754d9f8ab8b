/** MAIL FROM: the authoritative gate that refuses a disabled account and closes the session. */
import { answers } from '../answers'
import { type Connection, type HarakaPlugin, type Verdict } from '../haraka'
import { shownAccount } from '../messages'
import type { DisabledRecord } from '../store'
import { sessionAccount, storeFailure, type GuardState } from './state'

/** MAIL FROM: refuse a disabled account with 550 5.7.1 and close the session. */
export async function checkMail(plugin: HarakaPlugin, connection: Connection, state: GuardState): Promise<Verdict> {
  const account = sessionAccount(connection, state.config)
  if (account === null) return
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
