/** The plugin's own mail to people: the postmaster alert and the notices about replies. */
import { join, resolve } from 'node:path'
import {
  composeAlert,
  composeNotice,
  composeOwnerNotice,
  composeSprayAlert,
  composeWarning,
  ownerAddress,
  type PasswordNote,
} from '../alert'
import type { AuthFailuresConfig } from '../config'
import type { HarakaPlugin } from '../haraka'
import { randomId } from '../ids'
import { describeCount, describeLimit, errorText } from '../messages'
import { emitEvent } from './events'
import type { DisabledRecord, MessageSummary, WindowCount } from '../store'
import type { GuardState } from './state'

/** Queues the postmaster alert; a failure is logged (the incident stays in the store). */
export async function sendAlert(
  plugin: HarakaPlugin,
  state: GuardState,
  record: DisabledRecord,
  token: string | undefined,
  password: PasswordNote = 'off',
): Promise<void> {
  const { config } = state
  try {
    const mail = composeAlert({
      record,
      ...(token ? { token } : {}),
      monitor: token === undefined,
      from: config.alert.from,
      to: config.alert.to,
      replyAddress: config.alert.replyAddress,
      me: config.me,
      tokenTtlMs: config.reactivate.tokenTtlMs,
      cliCommand: cliCommand('enable', record.account),
      password,
      allowPasswordCommand: cliCommand('enable --allow-old-password', record.account),
      now: Date.now(),
    })
    await state.sendMail(mail)
    plugin.loginfo(
      `alert for ${JSON.stringify(record.account)} queued to ${config.alert.to.join(', ')} (incident ${record.incident})`,
    )
  } catch (err) {
    plugin.logerror(
      `alert for ${JSON.stringify(record.account)} NOT sent (incident ${record.incident}): ${errorText(err)}`,
    )
  }
}

/**
 * Queues the [notify] notice to the owner of an account disabled automatically (nothing when
 * [notify] user is off); an address that cannot be derived, or a failure, is logged.
 */
export async function sendOwnerNotice(plugin: HarakaPlugin, state: GuardState, record: DisabledRecord): Promise<void> {
  const { config } = state
  if (!config.notify.user) return
  const to = ownerAddress(config.notify.userAddress, record.account)
  if (to === null) {
    plugin.logwarn(
      `owner notice for ${JSON.stringify(record.account)} not sent: [notify] user_address ${JSON.stringify(config.notify.userAddress)} makes no address of it`,
    )
    return
  }
  try {
    await state.sendMail(
      composeOwnerNotice({
        account: record.account,
        from: config.alert.from,
        to,
        contact: config.contact,
        me: config.me,
        now: record.at,
        id: randomId(),
      }),
    )
    plugin.loginfo(`owner notice for ${JSON.stringify(record.account)} queued to ${to} (incident ${record.incident})`)
  } catch (err) {
    plugin.logerror(`owner notice for ${JSON.stringify(record.account)} NOT sent to ${to}: ${errorText(err)}`)
  }
}

/** What an early warning reports (see composeWarning). */
export interface WarningReport {
  readonly account: string
  readonly warn: WindowCount
  readonly counts: readonly WindowCount[]
  readonly evidence: readonly MessageSummary[]
  readonly networks?: readonly string[]
  /** Store-clock ms when the rule reached the warning total. */
  readonly at: number
}

/**
 * Queues the [warn] warning for an account that reached the warning fraction of a limit, and sends
 * its webhook event; a failure is logged.
 */
export async function sendWarning(plugin: HarakaPlugin, state: GuardState, report: WarningReport): Promise<void> {
  const { config } = state
  emitEvent(plugin, state, {
    event: 'warning',
    account: report.account,
    reason: `reached ${describeCount(report.warn)} of ${describeLimit(report.warn)}`,
    trigger: report.warn.kind,
    counts: report.counts.map((c) => ({ kind: c.kind, count: c.count, limit: c.text })),
    via: 'limit',
    atMs: report.at,
  })
  try {
    const mail = composeWarning({
      ...report,
      fraction: config.warnAt,
      from: config.alert.from,
      to: config.alert.to,
      me: config.me,
      now: report.at,
      id: randomId(),
      showCommand: cliCommand('show', report.account),
      disableCommand: cliCommand('disable', report.account),
    })
    await state.sendMail(mail)
    plugin.loginfo(`warning for ${JSON.stringify(report.account)} queued to ${config.alert.to.join(', ')}`)
  } catch (err) {
    plugin.logerror(`warning for ${JSON.stringify(report.account)} NOT sent: ${errorText(err)}`)
  }
}

/** What a password-spraying alert reports (see composeSprayAlert). */
export interface SprayReport {
  readonly account: string
  readonly count: number
  readonly sources: readonly string[]
  readonly blocked: boolean
  /** Local-clock ms when the block ends (the window holds fewer failures than the limit). */
  readonly until: number
}

/** Queues the password-spraying alert for an account that reached [signals] auth_failures; a failure is logged. */
export async function sendSprayAlert(
  plugin: HarakaPlugin,
  state: GuardState,
  limit: AuthFailuresConfig,
  report: SprayReport,
): Promise<void> {
  const { config } = state
  try {
    const mail = composeSprayAlert({
      ...report,
      max: limit.max,
      windowMs: limit.windowMs,
      monitor: config.mode === 'monitor',
      from: config.alert.from,
      to: config.alert.to,
      me: config.me,
      now: Date.now(),
      id: randomId(),
      cliCommand: cliCommand('disable', report.account),
    })
    await state.sendMail(mail)
    plugin.loginfo(
      `password spraying alert for ${JSON.stringify(report.account)} queued to ${config.alert.to.join(', ')}`,
    )
  } catch (err) {
    plugin.logerror(`password spraying alert for ${JSON.stringify(report.account)} NOT sent: ${errorText(err)}`)
  }
}

/**
 * The shell command that acts on an account, quoted for a POSIX shell. It names the CLI inside
 * this Haraka directory, so it works from any directory: `npx hijack-guard` elsewhere would ask
 * the public registry for a package of that name.
 */
export function cliCommand(command: string, account: string): string {
  const dir = resolve(process.env.HARAKA ?? process.cwd())
  const quote = (s: string): string => (/^[A-Za-z0-9@._+\/=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`)
  return `${quote(join(dir, 'node_modules', '.bin', 'hijack-guard'))} -c ${quote(dir)} ${command} ${quote(account)}`
}

/** Queues a short notice (a confirmation, or why a reply was refused); a failure is logged. */
export async function notify(
  plugin: HarakaPlugin,
  state: GuardState,
  to: string,
  inReplyTo: string,
  subject: string,
  lines: string[],
): Promise<void> {
  const { config } = state
  try {
    const mail = composeNotice({
      from: config.alert.from,
      to,
      me: config.me,
      now: Date.now(),
      id: randomId(),
      subject,
      lines,
      ...(inReplyTo ? { inReplyTo } : {}),
    })
    await state.sendMail(mail)
  } catch (err) {
    plugin.logerror(`notice to ${to} not sent: ${errorText(err)}`)
  }
}
