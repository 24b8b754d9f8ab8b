/**
 * Replies to the alert: accepted at RCPT (one reply recipient, alone in its transaction),
 * consumed at queue time (250, never delivered, never counted) and decided by lib/reactivate.
 */
import { answers } from '../answers'
import {
  envelopeAddress,
  type Address,
  type Connection,
  type HarakaPlugin,
  type Transaction,
  type Verdict,
} from '../haraka'
import { handleReply } from '../reactivate'
import { isReplyMailbox, replyMailbox, TOKEN_PATTERN, type MailAddress, type ReplyMailbox } from '../reactivate/reply'
import { shownAccount, errorText } from '../messages'
import { decodedHeader } from '../text'
import { emitEvent } from './events'
import { beginProbation } from '../reactivate/probation'
import { cliCommand, notify } from './mailer'
import { sessionLogin, type GuardState } from './state'
import type { Config } from '../config'

/** The transaction note that marks a reply to an alert: its one reply-address recipient, as a list. */
const REPLY_NOTE = 'hijack_guard_reply'

/** The reply address split once, kept while the configured address stays the same. */
let mailboxOf: { address: string; mailbox: ReplyMailbox | null } = { address: '', mailbox: null }

function replyMailboxOf(address: string): ReplyMailbox | null {
  if (mailboxOf.address !== address) mailboxOf = { address, mailbox: replyMailbox(address) }
  return mailboxOf.mailbox
}

/**
 * RCPT TO: accept the reply address (with any +detail) from every sender, since a postmaster
 * may answer from anywhere. A reply is one recipient in a transaction of its own: a second
 * reply-address recipient, or any other recipient beside it, gets 452 4.5.3. Constant time per
 * RCPT, however many the client sends: the accepted reply is a transaction note, and the other
 * recipients are counted by rcpt_to's length (Haraka appends this recipient before the rcpt
 * hooks run and removes every recipient a hook refuses), never by scanning it. An ordinary
 * recipient costs a note lookup and a domain comparison, and allocates nothing.
 */
export function checkRcpt(connection: Connection, config: Config, rcpt: Address): Verdict {
  const txn = connection.transaction
  if (!txn) return
  const replyAddress = config.alert.replyAddress
  const accepted = txn.notes[REPLY_NOTE] !== undefined
  const mailbox = replyMailboxOf(replyAddress)
  const local = String(rcpt.user ?? '')
  const domain = String(rcpt.host ?? '')
  if (mailbox !== null && isReplyMailbox(local, domain, mailbox)) {
    if (accepted) return answers.oneReplyOnly()
    if (txn.rcpt_to.length > 1) return answers.replyAlone(replyAddress)
    const recipients: MailAddress[] = [{ local, domain }]
    txn.notes[REPLY_NOTE] = recipients
    return answers.replyAddressAccepted()
  }
  if (accepted) return answers.replyAlone(replyAddress)
}

/** True when the session's transaction is a reply to an alert (accepted at RCPT): only then is consumeReply called. */
export function isReplyToAlert(connection: Connection): boolean {
  return connection.transaction?.notes[REPLY_NOTE] !== undefined
}

/**
 * queue / queue_outbound, for a transaction isReplyToAlert: the reply is consumed here (250,
 * never delivered, never counted) and decided by handleReply.
 */
export async function consumeReply(plugin: HarakaPlugin, connection: Connection, state: GuardState): Promise<Verdict> {
  const txn = connection.transaction
  const recipients = txn?.notes[REPLY_NOTE] as MailAddress[] | undefined
  if (!txn || !recipients) return
  try {
    return await decideReply(plugin, connection, state, txn, recipients)
  } catch (err) {
    // Whatever went wrong, a reply is never delivered anywhere.
    connection.logcrit(
      plugin,
      `reply to alert consumed unprocessed after an unexpected error: ${(err as Error)?.stack ?? String(err)}`,
    )
    return answers.replyReceived()
  }
}

async function decideReply(
  plugin: HarakaPlugin,
  connection: Connection,
  state: GuardState,
  txn: Transaction,
  recipients: MailAddress[],
): Promise<Verdict> {
  const { config, store } = state
  const mailFrom = envelopeAddress(txn.mail_from)
  const header = (name: string): string => decodedHeader(txn.header, name)
  const login = sessionLogin(connection, config)
  let outcome
  try {
    outcome = await handleReply({ authUser: login, mailFrom, recipients, header }, config, store)
  } catch (err) {
    // A reply must not be lost to a store outage: the sender's server will try again.
    connection.results.add(plugin, { err: `reply not processed, store unavailable: ${errorText(err)}` })
    return answers.replyLater()
  }
  const messageId = header('Message-ID').trim()
  if (outcome.result === 'reactivated') {
    connection.lognotice(plugin, `ACCOUNT RE-ENABLED ${JSON.stringify(outcome.account)} by reply from ${outcome.actor}`)
    txn.results.add(plugin, { pass: 'reactivated' })
    emitEvent(plugin, state, { event: 'enabled', account: outcome.account, actor: outcome.actor, via: 'reply' })
    const probation = await beginProbation(store, config, outcome.account, Date.now()).catch((err: unknown) => {
      connection.logerror(plugin, `probation of ${JSON.stringify(outcome.account)} not started: ${errorText(err)}`)
      return ''
    })
    await store
      .audit({
        at: Date.now(),
        account: outcome.account,
        action: 'enable',
        actor: outcome.actor,
        how: 'reply',
        ...(probation ? { reason: probation } : {}),
      })
      .catch((err: unknown) => connection.logerror(plugin, `audit entry not written: ${errorText(err)}`))
    const to = login !== null && mailFrom ? [mailFrom] : config.alert.to
    const pending =
      config.reactivate.requireNewPassword &&
      (await store.oldPasswords(outcome.account).then(
        (hashes) => hashes.length > 0,
        () => false,
      ))
    const passwordLines = pending
      ? [
          'The password in use at the incident stays refused (535 "must be changed") until it',
          'has been changed: change it now. To let it in again, run on the mail server:',
          `  ${cliCommand('enable --allow-old-password', outcome.account)}`,
        ]
      : ['If its password was not changed yet, change it now.']
    for (const address of to) {
      void notify(plugin, state, address, messageId, `Account ${shownAccount(outcome.account)} re-enabled`, [
        `The account ${shownAccount(outcome.account)} works again: its disabled flag and its counters were cleared`,
        `by a reply from ${outcome.actor}.`,
        ...(probation ? ['', `It is on ${probation}: a second incident is caught sooner.`] : []),
        '',
        ...passwordLines,
      ])
    }
  } else {
    if (outcome.code === 'bounce') {
      // A bounce to the reply address: an alert or a notice did not arrive somewhere.
      const subject = header('Subject').trim().replace(new RegExp(TOKEN_PATTERN.source, 'gi'), 'hg-...')
      connection.logwarn(
        plugin,
        `a bounce reached the reply address: an alert or notice may not have been delivered (subject ${JSON.stringify(subject)})`,
      )
    }
    connection.lognotice(
      plugin,
      `reply to alert not accepted from ${outcome.actor}${outcome.account !== undefined ? ` for ${JSON.stringify(outcome.account)}` : ''}: ${outcome.reason}`,
    )
    txn.results.add(plugin, { fail: `reply: ${outcome.reason}` })
    if (outcome.account !== undefined) {
      await store
        .audit({
          at: Date.now(),
          account: outcome.account,
          action: 'reactivate-failed',
          actor: outcome.actor,
          how: 'reply',
          reason: outcome.reason,
        })
        .catch((err: unknown) => connection.logerror(plugin, `audit entry not written: ${errorText(err)}`))
    }
    if (outcome.tellSender) {
      void notify(plugin, state, mailFrom, messageId, 'Reply to hijack-guard alert not accepted', [
        'Your reply did not re-enable any account:',
        `  ${outcome.reason}.`,
        '',
        `To re-enable an account from the mail server: ${cliCommand('enable', outcome.account ?? 'ACCOUNT')}`,
      ])
    }
  }
  return answers.replyReceived()
}
