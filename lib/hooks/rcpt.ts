/**
 * RCPT TO of an authenticated session: [limits] max_recipients_per_message. The recipient over
 * the cap is refused (550 5.5.3) and never joins the message; the refused recipients still count
 * against the account's recipient limits when the message reaches queue_outbound (an attempt).
 */
import { maxRecipientsFor, type Config } from '../config'
import { answers } from '../answers'
import type { Connection, HarakaPlugin, Transaction, Verdict } from '../haraka'
import { sessionAccount } from './state'

/** The transaction note of a message that went over its cap: RcptCapNote. */
const CAP_NOTE = 'hijack_guard_rcpt_cap'

interface RcptCapNote {
  readonly cap: number
  /** RCPTs refused over the cap (enforce); counted with the message at queue_outbound. */
  refused: number
}

/**
 * RCPT TO: refuse (550 5.5.3) a recipient that would take an authenticated session's message
 * over its account's cap; in monitor mode, log and accept. Constant time: rcpt_to already holds
 * this recipient (Haraka appends it before the rcpt hooks and removes it when one refuses), so
 * its length is the message's recipient count; the list is never scanned. Logs once per message.
 */
export function checkRecipientCap(plugin: HarakaPlugin, connection: Connection, config: Config): Verdict {
  const txn = connection.transaction
  if (!txn) return
  const account = sessionAccount(connection, config)
  if (account === null) return
  const cap = maxRecipientsFor(config, account)
  if (cap === 0 || txn.rcpt_to.length <= cap || config.exempt.has(account)) return
  let note = txn.notes[CAP_NOTE] as RcptCapNote | undefined
  const first = note === undefined
  if (!note) {
    note = { cap, refused: 0 }
    txn.notes[CAP_NOTE] = note
  }
  if (config.mode === 'monitor') {
    if (first) {
      txn.results.add(plugin, { msg: `over max_recipients_per_message ${cap} (monitor)` })
      connection.logwarn(
        plugin,
        `monitor mode: account ${JSON.stringify(account)} sent more than ${cap} recipients in one message; not refused (mode=monitor)`,
      )
    }
    return
  }
  note.refused++
  if (first) {
    txn.results.add(plugin, { fail: `over max_recipients_per_message ${cap}` })
    connection.lognotice(
      plugin,
      `account ${JSON.stringify(account)}: recipients over max_recipients_per_message ${cap} refused with 550 5.5.3`,
    )
  }
  return answers.tooManyRecipients(cap, config.contact)
}

/** The RCPTs refused over the cap in this transaction (0 for none): they count as recipients attempted. */
export function refusedOverCap(txn: Transaction): number {
  const note = txn.notes[CAP_NOTE] as RcptCapNote | undefined
  return note?.refused ?? 0
}
