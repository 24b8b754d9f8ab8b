/**
 * Reactivation by reply: the security decision (docs/security.md). Every condition must hold;
 * the token is redeemed last, atomically, so a refused attempt never spends it.
 */
import { canonicalAccount } from '../account'
import type { Config } from '../config'
import { autoReplyReason, findToken, NULL_SENDER, type HeaderLookup, type MailAddress } from './reply'
import type { RedeemResult, Store } from '../store'

export interface ReplyMessage {
  /** The login of the session that submitted the reply, or null when it did not AUTH. */
  readonly authUser: string | null
  /** The envelope sender, '' for the null sender. */
  readonly mailFrom: string
  /** The recipients that are the reply address. */
  readonly recipients: readonly MailAddress[]
  readonly header: HeaderLookup
}

/** Why a reply did not re-enable an account: what control flow looks at (`reason` is for people). */
export type RefusalCode =
  | 'bounce'
  | 'automatic-reply'
  | 'not-authenticated'
  | 'not-admin'
  | 'no-token'
  | 'unknown-token'
  | 'self'
  | 'too-many-replies'
  | RedeemRefusal

type RedeemRefusal = Exclude<RedeemResult, 'ok'>

export type ReplyOutcome =
  | { readonly result: 'reactivated'; readonly account: string; readonly actor: string }
  | {
      readonly result: 'refused'
      readonly code: RefusalCode
      readonly reason: string
      /** The account the token names, when it names one. */
      readonly account?: string
      readonly actor: string
      /** True when the sender is an authenticated admin who should hear why. */
      readonly tellSender: boolean
    }

/** How many times the account was re-enabled by reply within `windowMs` before `now` (from the audit trail). */
export async function replyEnables(store: Store, account: string, windowMs: number, now: number): Promise<number> {
  const since = now - windowMs
  const entries = await store.auditLog({ account, limit: 1000 })
  return entries.filter((e) => e.action === 'enable' && e.how === 'reply' && e.at > since).length
}

/** Decides a reply and, when every condition holds, re-enables the account. */
export async function handleReply(reply: ReplyMessage, config: Config, store: Store): Promise<ReplyOutcome> {
  const login = reply.authUser === null ? null : canonicalAccount(reply.authUser, config.accounts)
  const isAdmin = login !== null && config.reactivate.admins.has(login)
  const actor = login ?? `unauthenticated:${reply.mailFrom || '<>'}`
  const refuse = (code: RefusalCode, reason: string, account?: string): ReplyOutcome => ({
    result: 'refused',
    code,
    reason,
    actor,
    tellSender: isAdmin && reply.mailFrom !== '',
    ...(account !== undefined ? { account } : {}),
  })

  // An automatic reply is never an answer, and never answered (no mail loops).
  const auto = autoReplyReason(reply.header, reply.mailFrom)
  if (auto) {
    const code = auto === NULL_SENDER ? 'bounce' : 'automatic-reply'
    return { result: 'refused', code, reason: `automatic reply (${auto})`, actor, tellSender: false }
  }

  const token = findToken({
    recipients: reply.recipients,
    inReplyTo: reply.header('In-Reply-To'),
    references: reply.header('References'),
    subject: reply.header('Subject'),
  })
  // Looked up (read only) before the policy checks so that a refused attempt names its account
  // in the audit trail.
  const account = token ? await store.tokenAccount(token) : null
  const about = account ?? undefined

  if (config.reactivate.policy === 'admin') {
    if (login === null)
      return refuse('not-authenticated', 'the reply was not sent by an authenticated session (policy = admin)', about)
    if (!isAdmin) return refuse('not-admin', `login ${JSON.stringify(login)} is not in [reactivate] admins`, about)
  }
  if (!token) return refuse('no-token', 'no incident token found in the recipient, In-Reply-To, References or Subject')
  if (account === null) return refuse('unknown-token', 'unknown or expired token')
  if (login !== null && login === account) return refuse('self', 'a disabled account cannot re-enable itself', account)

  const cap = config.reactivate.maxReplyEnables
  if (cap) {
    const byReply = await replyEnables(store, account, cap.windowMs, Date.now())
    if (byReply >= cap.max)
      return refuse(
        'too-many-replies',
        `${account} was re-enabled by reply ${byReply} times within ${cap.text} ([reactivate] max_reply_enables); use the command line`,
        account,
      )
  }
  const redeemed = await store.redeem(account, token)
  switch (redeemed) {
    case 'ok':
      return { result: 'reactivated', account, actor }
    case 'not-disabled':
      return refuse(
        redeemed,
        'the account is not disabled (the token was used already, or it was enabled another way)',
        account,
      )
    case 'mismatch':
      return refuse(
        redeemed,
        'the token is not the one of the current incident (used already, or superseded by a newer alert)',
        account,
      )
    case 'expired':
      return refuse(redeemed, `the token has expired (token_ttl); use the command line`, account)
  }
}
