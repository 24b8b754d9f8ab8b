/**
 * Recognising a reply to an alert: pure functions over addresses and header values.
 * The security decisions that need the store are in lib/reactivate/index.ts.
 */

/** An incident token as it appears in addresses, Message-IDs and subjects: "hg-" + 32 hex. */
export const TOKEN_PATTERN = /\bhg-([0-9a-f]{32})\b/i

/** "hg-<token>" for a token of 32 hex characters. */
export function tokenLabel(token: string): string {
  return `hg-${token}`
}

/** The token inside a text, lower-cased, or null. */
export function findTokenIn(text: string | undefined | null): string | null {
  const m = TOKEN_PATTERN.exec(String(text ?? ''))
  return m?.[1] ? m[1].toLowerCase() : null
}

export interface MailAddress {
  readonly local: string
  readonly domain: string
}

/** Splits "local@domain" at the last "@"; null for an address without one. */
export function splitAddress(address: string): MailAddress | null {
  const a = address.trim().replace(/^<|>$/g, '')
  const at = a.lastIndexOf('@')
  if (at <= 0 || at === a.length - 1) return null
  return { local: a.slice(0, at), domain: a.slice(at + 1).toLowerCase() }
}

/** The address the alert's Reply-To carries: "local+hg-TOKEN@domain". */
export function replyAddressFor(replyAddress: string, token: string): string {
  const a = splitAddress(replyAddress)
  if (!a) throw new Error(`not an address: ${replyAddress}`)
  const base = a.local.split('+')[0]
  return `${base}+${tokenLabel(token)}@${a.domain}`
}

/** The reply address as recipients are compared with it: its base local part and domain, lower-cased. */
export interface ReplyMailbox {
  readonly base: string
  readonly domain: string
}

/** The reply address split once for isReplyMailbox; null for an address without "@". */
export function replyMailbox(replyAddress: string): ReplyMailbox | null {
  const a = splitAddress(replyAddress)
  return a ? { base: (a.local.split('+')[0] ?? '').toLowerCase(), domain: a.domain } : null
}

/**
 * True when local@domain is the reply mailbox, with or without a "+detail". A recipient in
 * another domain, nearly every one, is told apart by one comparison, without building strings.
 */
export function isReplyMailbox(local: string, domain: string, mailbox: ReplyMailbox): boolean {
  if (domain !== mailbox.domain && domain.toLowerCase() !== mailbox.domain) return false
  const plus = local.indexOf('+')
  return (plus === -1 ? local : local.slice(0, plus)).toLowerCase() === mailbox.base
}

/** True when `rcpt` is the reply address, with or without a "+detail". */
export function isReplyRecipient(rcpt: MailAddress, replyAddress: string): boolean {
  const mailbox = replyMailbox(replyAddress)
  return mailbox !== null && isReplyMailbox(rcpt.local, rcpt.domain, mailbox)
}

export interface ReplyParts {
  /** The recipients of the reply that are the reply address. */
  readonly recipients: readonly MailAddress[]
  readonly inReplyTo: string
  readonly references: string
  readonly subject: string
}

/**
 * The incident token of a reply: from the recipient's +detail, else In-Reply-To, else
 * References, else the subject — whichever survived the mail client. Null when none did.
 */
export function findToken(parts: ReplyParts): string | null {
  for (const r of parts.recipients) {
    const t = findTokenIn(r.local)
    if (t) return t
  }
  return findTokenIn(parts.inReplyTo) ?? findTokenIn(parts.references) ?? findTokenIn(parts.subject)
}

/** Header values as the plugin reads them: every value of a header, decoded. */
export type HeaderLookup = (name: string) => string

/** autoReplyReason's answer for a bounce (the null sender). */
export const NULL_SENDER = 'null sender'

/**
 * Why a message is an automatic reply (RFC 3834 Auto-Submitted, the common X-Autoreply /
 * X-Autorespond / Precedence markers, a null sender), or null for a message a person sent.
 */
export function autoReplyReason(header: HeaderLookup, mailFrom: string): string | null {
  if (mailFrom.trim() === '' || mailFrom.trim() === '<>') return NULL_SENDER
  const autoSubmitted = header('Auto-Submitted').trim().toLowerCase()
  if (autoSubmitted !== '' && !/^no\b/.test(autoSubmitted)) return `Auto-Submitted: ${autoSubmitted}`
  if (header('X-Autoreply').trim() !== '') return 'X-Autoreply header'
  if (header('X-Autorespond').trim() !== '') return 'X-Autorespond header'
  const precedence = header('Precedence').trim().toLowerCase()
  if (/^(auto_reply|bulk|junk|list)\b/.test(precedence)) return `Precedence: ${precedence}`
  return null
}
