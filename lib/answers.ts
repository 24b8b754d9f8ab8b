/**
 * Every SMTP answer the plugin gives, code and text, in one place (the texts themselves are in
 * messages.ts). Each is a verdict a hook returns as it is; the AUTH answer is what an auth
 * plugin's callback takes.
 */
import { DENY, DENYDISCONNECT, DENYSOFT, DSN, OK, type Verdict } from './haraka'
import {
  authBlockedReply,
  disabledReply,
  oldPasswordReply,
  overLimitReply,
  storeDownReply,
  tooManyRecipientsReply,
} from './messages'
import type { DisabledRecord, WindowCount } from './store'

type Disabled = Pick<DisabledRecord, 'account' | 'by'>

/** What an auth plugin's callback takes to answer 535 (or 454) with the plugin's text. */
export interface AuthRefusal {
  readonly code: 535 | 454
  readonly message: string
}

export const answers = {
  /** End of DATA: this message would take the account over a limit: 550 5.7.1. */
  overLimit: (account: string, over: WindowCount, contact: string): Verdict => [
    DENY,
    DSN.sec_unauthorized(overLimitReply(account, over, contact), 550),
  ],
  /** RCPT over the account's max_recipients_per_message: 550 5.5.3, this recipient only. */
  tooManyRecipients: (max: number, contact: string): Verdict => [
    DENY,
    DSN.create(550, tooManyRecipientsReply(max, contact), 5, 3),
  ],
  /** End of DATA, for an account disabled meanwhile: 550 5.7.1. */
  disabledAtData: (record: Disabled, contact: string): Verdict => [
    DENY,
    DSN.sec_unauthorized(disabledReply(record, contact), 550),
  ],
  /** MAIL FROM of a disabled account: 550 5.7.1, and the session is closed. */
  disabledAtMail: (record: Disabled, contact: string): Verdict => [
    DENYDISCONNECT,
    DSN.sec_unauthorized(disabledReply(record, contact), 550),
  ],
  /** AUTH of a disabled account: the 535 and its text, as an auth plugin's callback takes them. */
  disabledAtAuth: (record: Disabled, contact: string): AuthRefusal => ({
    code: 535,
    message: `5.7.8 ${disabledReply(record, contact)}`,
  }),
  /** AUTH of a login over [signals] auth_failures with action = block: 454 4.7.0, the password not checked. */
  authBlocked: (contact: string): AuthRefusal => ({ code: 454, message: `4.7.0 ${authBlockedReply(contact)}` }),
  /** AUTH that the backend accepts with the password in use at the account's disable: 535 5.7.8. */
  oldPassword: (account: string, contact: string): AuthRefusal => ({
    code: 535,
    message: `5.7.8 ${oldPasswordReply(account, contact)}`,
  }),
  /** The store cannot answer and on_store_error = closed: 451 4.3.0 (Haraka's queue stage makes it 450). */
  storeDown: (contact: string): Verdict => [DENYSOFT, DSN.sys_unspecified(storeDownReply(contact), 451)],
  /** RCPT of the reply address: 250 2.1.5. */
  replyAddressAccepted: (): Verdict => [OK, DSN.create(250, 'reply address of hijack-guard', 1, 5)],
  /** A second reply-address recipient in one transaction: 452 4.5.3. */
  oneReplyOnly: (): Verdict => [DENYSOFT, DSN.create(452, 'one reply-address recipient per message', 5, 3)],
  /** The reply address beside another recipient: 452 4.5.3. */
  replyAlone: (replyAddress: string): Verdict => [
    DENYSOFT,
    DSN.create(452, `send the reply to ${replyAddress} in a message of its own`, 5, 3),
  ],
  /** A reply to an alert, consumed whatever was decided: 250. */
  replyReceived: (): Verdict => [OK, DSN.create(250, 'Reply received by hijack-guard', 0, 0)],
  /** A reply while the store cannot answer: 451 (450 at queue time), so the sender retries. */
  replyLater: (): Verdict => [DENYSOFT, DSN.sys_unspecified('Reply not processed yet; please try again later', 451)],
} as const
