import type { DisabledRecord, WindowCount } from './store'
import { replaceControlChars } from './text'

const UNITS: ReadonlyArray<[number, string]> = [
  [86_400_000, 'day'],
  [3_600_000, 'hour'],
  [60_000, 'minute'],
  [1000, 'second'],
]

/** "30 minutes", "1 hour", "90 seconds", "250 ms": the largest unit that divides evenly. */
export function formatDuration(ms: number): string {
  for (const [size, name] of UNITS) {
    if (ms % size === 0) {
      const n = ms / size
      return `${n} ${name}${n === 1 ? '' : 's'}`
    }
  }
  return `${ms} ms`
}

/** "20 messages in 1 minute": a window count as a person reads it. */
export function describeCount(c: WindowCount): string {
  return `${quantity(c.count, c.kind)} in ${formatDuration(c.windowMs)}`
}

/** "messages 500/30m". */
export function describeLimit(c: WindowCount): string {
  return `${c.kind} ${c.text}`
}

/** An account name fit for a log line or mail text: no control characters, at most 64 characters. */
export function shownAccount(account: string): string {
  return truncate(replaceControlChars(account, '?'), 64)
}

/** At most `max` characters (code points, never half a surrogate pair), "..." marking a cut. */
function truncate(text: string, max: number): string {
  const chars = Array.from(text)
  return chars.length > max ? `${chars.slice(0, max - 3).join('')}...` : text
}

/**
 * An account name fit for an SMTP reply, which RFC 5321 limits to printable US-ASCII: as
 * shownAccount, with every other character written as \uXXXX (e.g. "j\u00fcrgen").
 */
export function replyAccount(account: string): string {
  const escaped = replaceControlChars(account, '?').replace(/[^\x20-\x7e]/gu, (ch) =>
    Array.from({ length: ch.length }, (_, i) => `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`).join(''),
  )
  return escaped.length > 64 ? `${escaped.slice(0, 61).replace(/\\u?[0-9a-f]{0,3}$/, '')}...` : escaped
}

/** What a rule of each kind counts, as people read it (plural). */
const KIND_NAMES: Record<string, string> = { networks: 'client networks', invalid_recipients: 'invalid recipients' }

/** "1 message", "8 client networks", "100 invalid recipients". */
export function quantity(n: number, kind: string): string {
  const name = KIND_NAMES[kind] ?? kind
  return `${n} ${n === 1 ? name.replace(/s$/, '') : name}`
}

/** Text after "550 5.7.1" when a message would take the account over a limit. */
export function overLimitReply(account: string, over: WindowCount, contact: string): string {
  return `Account ${replyAccount(account)} reached its limit of ${quantity(over.max, over.kind)} in ${formatDuration(over.windowMs)} and has been disabled; contact ${contact}`
}

/** Text after "550 5.5.3" for a RCPT over [limits] max_recipients_per_message. */
export function tooManyRecipientsReply(max: number, contact: string): string {
  return `Too many recipients: at most ${max} per message for this account; send the rest in another message or contact ${contact}`
}

/**
 * Text after "550 5.7.1" at MAIL FROM, at the end of DATA, and after "535 5.7.8" at AUTH, for a
 * disabled account: why depends on who disabled it (`by`: 'limit' for the automatic disable,
 * anyone else is the postmaster by hand). The operator's free-text reason is never shown.
 */
export function disabledReply(record: Pick<DisabledRecord, 'account' | 'by'>, contact: string): string {
  const why = record.by === 'limit' ? ' after unusual sending' : record.by === '' ? '' : ' by the postmaster'
  return `Account ${replyAccount(record.account)} is disabled${why}; contact ${contact}`
}

/** Text after "451 4.3.0" when the store cannot answer and on_store_error = closed. */
export function storeDownReply(contact: string): string {
  return `Sending limits cannot be checked right now; try again later or contact ${contact}`
}

/** Text after "454 4.7.0" for AUTH of a login blocked for password spraying ([signals] auth_failures_action = block). */
export function authBlockedReply(contact: string): string {
  return `Too many failed logins for this account; try again later or contact ${contact}`
}

/** Text after "535 5.7.8" for the password that was in use when the account was disabled. */
export function oldPasswordReply(account: string, contact: string): string {
  return `Account ${replyAccount(account)}: this password was in use when the account was misused and must be changed before it can log in again; contact ${contact}`
}

/** The message of an error, or the thing thrown as text. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
