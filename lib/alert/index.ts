/**
 * The mail the plugin writes: the postmaster alert and the short answers to a reply. Composing
 * is pure (tested on its own); sending is a seam (`MailSender`) the plugin fills with Haraka's
 * outbound queue.
 */
import { formatDuration, quantity, shownAccount } from '../messages'
import { CONTROL, replaceControlChars, rfc5322Date, utc } from '../text'
import { replyAddressFor, tokenLabel } from '../reactivate/reply'
import type { DisabledRecord, MessageSummary, WindowCount } from '../store'

/** A complete message ready for the outbound queue. */
export interface OutgoingMail {
  readonly from: string
  readonly to: readonly string[]
  /** The whole RFC 5322 message, CRLF line ends, ending with a line end. */
  readonly message: string
}

/** Queues a message; resolves when it is queued, rejects when it cannot be. */
export type MailSender = (mail: OutgoingMail) => Promise<void>

export interface AlertInput {
  readonly record: DisabledRecord
  /** The incident token (32 hex), or undefined for a monitor-mode report. */
  readonly token?: string
  readonly monitor: boolean
  readonly from: string
  readonly to: readonly string[]
  readonly replyAddress: string
  /** This server's name (config/me), for Message-ID and the signature. */
  readonly me: string
  readonly tokenTtlMs: number
  /** Command that re-enables the account from a shell, shown in the alert. */
  readonly cliCommand: string
  /** What became of the tripping session's password (see PasswordNote); default 'off'. */
  readonly password?: PasswordNote
  /** Command that re-enables and lets the old password in again. */
  readonly allowPasswordCommand?: string
  /** Milliseconds since the epoch; the Date header. */
  readonly now: number
}

/**
 * [reactivate] require_new_password, for the alert: 'kept' (its hash is kept and it stays
 * refused after the enable until changed), 'hidden' (the session's AUTH mechanism hid it) or
 * 'off' (not asked to, or it could not be kept).
 */
export type PasswordNote = 'kept' | 'hidden' | 'off'

const MAX_LIST = 10

/** RFC 2047 B-encoding for a header value that is not plain ASCII. */
export function encodeHeader(value: string): string {
  const clean = replaceControlChars(value, ' ')
  if (/^[\x20-\x7e]*$/.test(clean)) return clean
  const words: string[] = []
  let chunk = ''
  for (const ch of clean) {
    if (Buffer.byteLength(chunk + ch) > 45) {
      words.push(chunk)
      chunk = ''
    }
    chunk += ch
  }
  if (chunk) words.push(chunk)
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w, 'utf8').toString('base64')}?=`).join('\r\n ')
}

function uniq(values: readonly string[]): string[] {
  return [...new Set(values.filter((v) => v !== ''))]
}

/** "  Label:  a, b, c", wrapped at about 76 characters with aligned continuation lines. */
function listLines(label: string, values: readonly string[]): string[] {
  const shown = values.slice(0, MAX_LIST)
  const items = shown.length ? shown.map((v, i) => (i < shown.length - 1 ? `${v},` : v)) : ['-']
  if (values.length > shown.length) items.push(`(+${values.length - shown.length} more)`)
  const indent = ' '.repeat(21)
  const lines: string[] = []
  let line = `  ${label.padEnd(19)}`
  for (const item of items) {
    if (line.trim() !== label && line.length + 1 + item.length > 76) {
      lines.push(line)
      line = indent
    }
    line += line.endsWith(' ') ? item : ` ${item}`
  }
  lines.push(line)
  return lines
}

/**
 * The evidence paragraph: distinct IPs, HELO names, recipient domains and subjects; `of` names
 * what the summaries are of (a 'refused recipient' summary holds the refusal where a subject goes).
 */
export function evidenceLines(evidence: readonly MessageSummary[], of = 'message'): string[] {
  return [
    `Evidence from its last ${evidence.length} ${of}${evidence.length === 1 ? '' : 's'}:`,
    ...listLines('Source IPs:', uniq(evidence.map((e) => e.ip))),
    ...listLines('HELO names:', uniq(evidence.map((e) => e.helo))),
    ...listLines('Recipient domains:', uniq(evidence.flatMap((e) => [...e.domains]))),
    ...listLines(
      of === 'message' ? 'Subjects:' : 'Refusals:',
      uniq(evidence.map((e) => e.subject)).map((s) => JSON.stringify(s)),
    ),
  ]
}

function countLine(c: WindowCount, over: WindowCount | undefined): string {
  const mark =
    over && c.kind === over.kind && c.windowMs === over.windowMs && c.max === over.max ? '   <- limit reached' : ''
  return `  ${c.kind.padEnd(11)}${String(c.count).padStart(6)} of ${c.max} in ${formatDuration(c.windowMs)}${mark}`
}

/** "reached 500 messages in 30 minutes", or the operator's reason for a manual disable. */
export function alertReason(record: DisabledRecord): string {
  if (record.over) {
    const { max, kind, windowMs } = record.over
    // [signals] invalid_recipients: say what was counted, a person would not guess it from the name.
    const what = kind === 'invalid_recipients' ? ' (refused for good at RCPT or hard-bounced)' : ''
    return `reached ${quantity(max, kind)}${what} in ${formatDuration(windowMs)}`
  }
  return record.reason && record.reason !== 'limit' ? record.reason : 'disabled'
}

/** The headers every mail of the plugin starts with: from the plugin, automatic (no auto-replies). */
function ownHeaders(
  input: { readonly from: string; readonly now: number },
  to: string,
  subject: string,
  messageId: string,
  autoSubmitted: 'auto-generated' | 'auto-replied',
): Array<[string, string]> {
  return [
    ['From', `Hijack Guard <${input.from}>`],
    ['To', to],
    ['Subject', encodeHeader(subject)],
    ['Date', rfc5322Date(input.now)],
    ['Message-ID', messageId],
    ['Auto-Submitted', autoSubmitted],
    ['X-Auto-Response-Suppress', 'All'],
  ]
}

function headerBlock(headers: ReadonlyArray<[string, string]>): string {
  return headers.map(([k, v]) => `${k}: ${v}`).join('\r\n')
}

function build(headers: ReadonlyArray<[string, string]>, body: readonly string[]): string {
  const common: Array<[string, string]> = [
    ['MIME-Version', '1.0'],
    ['Content-Type', 'text/plain; charset=UTF-8'],
    ['Content-Transfer-Encoding', '8bit'],
  ]
  return `${headerBlock([...headers, ...common])}\r\n\r\n${body.join('\r\n')}\r\n`
}

/**
 * The postmaster alert for a disabled account (or, in monitor mode, for an account that would
 * have been disabled). Its Reply-To, Message-ID and subject carry the token.
 */
export function composeAlert(input: AlertInput): OutgoingMail {
  const { record, token } = input
  const account = shownAccount(record.account)
  const reason = alertReason(record)
  const label = token ? ` [${tokenLabel(token)}]` : ''
  const subject = input.monitor
    ? `Monitor: account ${account} would be disabled: ${reason}`
    : `Account ${account} disabled: ${reason}${label}`
  const messageId = `<${token ? tokenLabel(token) : `monitor-${record.incident}`}.${record.incident.slice(0, 8)}@${input.me}>`
  const headers = ownHeaders(input, input.to.join(', '), subject, messageId, 'auto-generated')
  if (token) headers.push(['Reply-To', replyAddressFor(input.replyAddress, token)])

  const body: string[] = []
  if (input.monitor) {
    body.push(
      `The account ${account} ${reason} at ${utc(record.at)}.`,
      'hijack-guard runs in monitor mode, so nothing was refused and the account still works.',
      'In enforce mode it would now be disabled.',
    )
  } else {
    body.push(
      `The account ${account} was disabled at ${utc(record.at)}`,
      `because it ${reason}. Its mail is refused until it is re-enabled.`,
    )
  }
  if (record.counts.length) {
    body.push('', 'Counts at that moment:', ...record.counts.map((c) => countLine(c, record.over)))
  }
  // An invalid_recipients record holds summaries of refused recipients, not of messages.
  const of = record.over?.kind === 'invalid_recipients' ? 'refused recipient' : 'message'
  if (record.networks?.length) body.push('', ...networkLines(record.networks))
  if (record.evidence.length) body.push('', ...evidenceLines(record.evidence, of))
  if (!input.monitor) {
    body.push(
      '',
      'What to do:',
      '  1. Assume the password is stolen: change it, and check the account for',
      '     forwarding rules, app passwords or devices the attacker may have added.',
      '  2. Re-enable the account: reply to this message from an administrator',
      '     account (logged in to this mail server); what the reply says does not matter.',
      '     Or run on the mail server:',
      `       ${input.cliCommand}`,
      '',
      'If you do nothing, the account stays disabled.',
    )
    if (token)
      body.push(
        `Replying works once, until ${utc(record.at + input.tokenTtlMs)} (${formatDuration(input.tokenTtlMs)}); after that use the command.`,
      )
    body.push(...passwordLines(input.password ?? 'off', input.allowPasswordCommand ?? ''))
  }
  body.push('', `Incident ${record.incident}`, '-- ', `hijack-guard on ${input.me}`)
  return { from: input.from, to: input.to, message: build(headers, body) }
}

/** What the alert says about the password of the session that tripped the disable. */
function passwordLines(note: PasswordNote, allowCommand: string): string[] {
  if (note === 'kept')
    return [
      '',
      'The password this session logged in with stays refused after the re-enable',
      '(535 "must be changed") until it has been changed: the first login with another',
      'password clears it. Only a salted scrypt hash of it is kept. To let it in again:',
      `       ${allowCommand}`,
    ]
  if (note === 'hidden')
    return [
      '',
      'This session logged in without showing its password (CRAM-MD5 or a proxy login),',
      'so it cannot be refused after the re-enable: make sure it is changed first.',
    ]
  return []
}

/** The client networks an account sent from in a window, newest first. */
function networkLines(networks: readonly string[]): string[] {
  return listLines(
    'Client networks it sent from in that window (newest first):',
    networks.map((n) => replaceControlChars(n, '?')),
  )
}

export interface WarningInput {
  readonly account: string
  /** The rule that reached the warning fraction, with the total. */
  readonly warn: WindowCount
  /** Every rule's total after the message. */
  readonly counts: readonly WindowCount[]
  readonly evidence: readonly MessageSummary[]
  /** For a networks rule: the networks in its window, newest first. */
  readonly networks?: readonly string[]
  /** [warn] at, as a fraction. */
  readonly fraction: number
  readonly from: string
  readonly to: readonly string[]
  readonly me: string
  /** Milliseconds since the epoch: when it was reached, and the Date header. */
  readonly now: number
  /** A unique id for the Message-ID. */
  readonly id: string
  /** Commands to look closer at the account and to disable it, shown in the warning. */
  readonly showCommand: string
  readonly disableCommand: string
}

/**
 * The early warning ([warn] at): an account reached a fraction of one of its limits. It disables
 * nothing, so it carries no token and no Reply-To; one goes out per window per account.
 */
export function composeWarning(input: WarningInput): OutgoingMail {
  const account = shownAccount(input.account)
  const { warn } = input
  const percent = Math.round(input.fraction * 100)
  const subject = `Warning: account ${account} at ${percent}% of its limit of ${quantity(warn.max, warn.kind)} in ${formatDuration(warn.windowMs)}`
  const headers = ownHeaders(input, input.to.join(', '), subject, `<warning-${input.id}@${input.me}>`, 'auto-generated')
  const body = [
    `The account ${account} reached ${quantity(warn.count, warn.kind)} in ${formatDuration(warn.windowMs)}`,
    `at ${utc(input.now)}: ${percent}% of its limit of ${warn.max}. It is not disabled; at the limit it will be.`,
    '',
    'Counts now:',
    ...input.counts.map((c) => countLine(c, warn)),
  ]
  if (input.networks?.length) body.push('', ...networkLines(input.networks))
  if (input.evidence.length) body.push('', ...evidenceLines(input.evidence))
  body.push(
    '',
    'What to do:',
    '  - If this is the owner at work (a mailing, a busy day), nothing.',
    '  - To look closer (counts, evidence, audit trail), run on the mail server:',
    `       ${input.showCommand}`,
    '  - If it looks like someone else, disable the account now:',
    `       ${input.disableCommand}`,
    '',
    'One warning is sent per window per account.',
    '-- ',
    `hijack-guard on ${input.me}`,
  )
  return { from: input.from, to: input.to, message: build(headers, body) }
}

export interface NoticeInput {
  readonly from: string
  readonly to: string
  readonly me: string
  readonly now: number
  /** A unique id for the Message-ID (e.g. randomId()). */
  readonly id: string
  /** The Message-ID of the reply being answered, for threading. */
  readonly inReplyTo?: string
  readonly subject: string
  readonly lines: readonly string[]
}

/** A short automatic note to an administrator (reactivation confirmed, or why it was not). */
export function composeNotice(input: NoticeInput): OutgoingMail {
  const headers = ownHeaders(input, input.to, input.subject, `<notice-${input.id}@${input.me}>`, 'auto-replied')
  if (input.inReplyTo) headers.push(['In-Reply-To', input.inReplyTo])
  return {
    from: input.from,
    to: [input.to],
    message: build(headers, [...input.lines, '', '-- ', `hijack-guard on ${input.me}`]),
  }
}

const OWNER_ADDRESS = new RegExp(`^[^@\\s<>,;"${CONTROL}]+@[^@\\s<>,;"${CONTROL}]+\\.[^@\\s<>,;"${CONTROL}]+$`)

/**
 * The owner's address from [notify] user_address: `%s` is the canonical account, `%u` its local
 * part (before the last @). Null when the result is not an address like user@example.com.
 */
export function ownerAddress(template: string, account: string): string | null {
  const at = account.lastIndexOf('@')
  const local = at < 0 ? account : account.slice(0, at)
  const address = template.replace(/%[su]/g, (m) => (m === '%s' ? account : local))
  return OWNER_ADDRESS.test(address) ? address : null
}

export interface OwnerNoticeInput {
  readonly account: string
  readonly from: string
  readonly to: string
  /** Whom the owner should contact ([alert] contact). */
  readonly contact: string
  readonly me: string
  readonly now: number
  readonly id: string
}

/**
 * The notice to an account's owner after an automatic disable: what happened, whom to contact,
 * change the password. No token, no Reply-To, no command: nothing in it can re-enable the account
 * (whoever hijacked the account may read this mailbox).
 */
export function composeOwnerNotice(input: OwnerNoticeInput): OutgoingMail {
  const account = shownAccount(input.account)
  const headers = ownHeaders(
    input,
    input.to,
    `Your mail account ${account} was disabled`,
    `<owner-${input.id}@${input.me}>`,
    'auto-generated',
  )
  return {
    from: input.from,
    to: [input.to],
    message: build(headers, [
      `Your mail account ${account} was disabled at ${utc(input.now)} because it sent mail in`,
      'an unusual way (more than its limits allow). This often means its password is known to',
      'someone else. Mail from the account is refused until an administrator enables it again.',
      '',
      '- Change the password of the account now.',
      `- Contact ${input.contact} to have the account enabled again.`,
      '',
      'This message is automatic; replies to it are not read.',
      '',
      '-- ',
      `hijack-guard on ${input.me}`,
    ]),
  }
}

export interface SprayAlertInput {
  readonly account: string
  /** Failed AUTHs in the window when the limit was reached, and the limit. */
  readonly count: number
  readonly max: number
  readonly windowMs: number
  /** The client addresses seen failing (capped by the store). */
  readonly sources: readonly string[]
  /** Whether further AUTH of the login is answered 454 until `until` (store-clock ms). */
  readonly blocked: boolean
  readonly until: number
  readonly monitor: boolean
  readonly from: string
  readonly to: readonly string[]
  readonly me: string
  /** Milliseconds since the epoch; the Date header. */
  readonly now: number
  /** A unique id for the Message-ID. */
  readonly id: string
  /** Command that disables the account from a shell, shown in the alert. */
  readonly cliCommand: string
}

/**
 * The password-spraying alert: a login reached [signals] auth_failures. It disables nothing,
 * so it carries no token and no Reply-To.
 */
export function composeSprayAlert(input: SprayAlertInput): OutgoingMail {
  const account = shownAccount(input.account)
  const subject = `${input.monitor ? 'Monitor: ' : ''}Password spraying against ${account}: ${input.count} failed logins in ${formatDuration(input.windowMs)}`
  const headers = ownHeaders(input, input.to.join(', '), subject, `<spray-${input.id}@${input.me}>`, 'auto-generated')
  const body = [
    `Password spraying alert: the login ${account} failed to authenticate ${input.count} times`,
    `within ${formatDuration(input.windowMs)} (limit ${input.max}), counted from every client address.`,
    '',
    ...listLines(
      'Source addresses:',
      input.sources.map((s) => replaceControlChars(s, '?')),
    ),
    '',
    input.blocked
      ? `Every further AUTH of this login is answered 454 4.7.0 without checking the password, until ${utc(input.until)}.`
      : 'AUTH of this login is still checked as usual (auth_failures_action = alert).',
    '',
    'What to do:',
    '  1. If the owner did not mistype a password that often, someone is guessing it:',
    '     make sure it is long and unique, and watch for a login that succeeds.',
    '  2. To stop the account from sending meanwhile, run on the mail server:',
    `       ${input.cliCommand}`,
    '',
    'The account is not disabled. One such alert is sent per window per login.',
    '-- ',
    `hijack-guard on ${input.me}`,
  ]
  return { from: input.from, to: input.to, message: build(headers, body) }
}
