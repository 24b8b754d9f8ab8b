/**
 * [signals] invalid_recipients: recipients refused for good, counted per account in the store
 * (Store.invalid), from two places:
 * - `deny`: Haraka runs its deny hooks whenever a plugin answers DENY (params: retval, msg, the
 *   plugin's name, its method, the hook's params, the hook's name), so a 5xx another plugin gives
 *   a RCPT of an authenticated session is seen here, with the refusing plugin's name. The plugin's
 *   own refusals (550 5.5.3 over max_recipients_per_message) are not counted again: those
 *   recipients are counted as attempted with the message (rcpt.ts).
 * - `bounce` (outbound): a hard bounce of a message the account queued; the account comes from the
 *   count note queue.ts left in the transaction notes, which outbound keeps in `todo.notes`.
 * Over the limit the account is disabled as for a volume limit (one alert; the next AUTH and
 * MAIL FROM are refused; its queued mail is held). Neither place can refuse anything more when the
 * store fails: the recipient is refused and the bounce goes out either way, and the failure is
 * logged (see docs/failure-policy.md).
 */
import { invalidRulesForAccount, type Config, type Rule } from '../config'
import { DENY, DENYDISCONNECT, type Address, type Connection, type HarakaPlugin } from '../haraka'
import { randomId } from '../ids'
import { probationOf } from '../reactivate/probation'
import { describeCount, describeLimit, errorText } from '../messages'
import type { MessageSummary, RecordInput } from '../store'
import { countNote, type QueuedMail } from './held'
import { sendWarning } from './mailer'
import { afterDisable, evidenceLine, sendMonitorReport } from './queue'
import { logStoreDown, sessionAccount, storeFailure, type GuardState } from './state'

/** What Haraka 3.3.4 passes to a deny hook: [retval, msg, plugin name, method, hook params, hook name]. */
export type DenyParams = readonly [unknown, unknown, unknown, unknown, unknown, unknown]

/** Permanently refused recipients of one account, ready to be counted. */
export interface InvalidRecipients {
  readonly account: string
  readonly recipients: number
  readonly rules: readonly Rule[]
  readonly summary: MessageSummary
  /** Where they were refused, for log lines: 'rcpt' or 'bounce'. */
  readonly where: 'rcpt' | 'bounce'
}

const MAX_DOMAINS = 5
const MAX_REFUSAL = 120

/** A string or number (or a list of them: a multi-line reply) as text; anything else as ''. */
function str(v: unknown): string {
  if (Array.isArray(v)) return v.map(str).join(' ')
  return typeof v === 'string' || typeof v === 'number' ? String(v) : ''
}

function clip(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim()
  return t.length > MAX_REFUSAL ? `${t.slice(0, MAX_REFUSAL - 3)}...` : t
}

/** The SMTP code and text of a deny's message: a DSN carries its own code, anything else is 550. */
function denyReply(msg: unknown): { code: number; text: string } {
  if (msg && typeof msg === 'object' && 'code' in msg) {
    const dsn = msg as { code?: unknown; reply?: unknown }
    return { code: Number(dsn.code) || 550, text: str(dsn.reply) }
  }
  return { code: 550, text: str(msg) }
}

/**
 * deny: the refused recipient to count when another plugin answered a RCPT of an authenticated,
 * counted session with a 5xx; null for anything else (no store call, no promise).
 */
export function refusedRecipient(
  plugin: HarakaPlugin,
  connection: Connection,
  config: Config,
  params: DenyParams,
): InvalidRecipients | null {
  const [retval, msg, by, , hookParams, hook] = params
  if (hook !== 'rcpt' && hook !== 'rcpt_ok') return null
  if (retval !== DENY && retval !== DENYDISCONNECT) return null
  if (by === plugin.name) return null
  const account = sessionAccount(connection, config)
  if (account === null || config.exempt.has(account)) return null
  const rules = invalidRulesForAccount(config, account)
  if (rules.length === 0) return null
  const reply = denyReply(msg)
  if (reply.code < 500 || reply.code > 599) return null
  // rcpt: [recipient, params]; rcpt_ok: the recipient.
  const rcpt = (Array.isArray(hookParams) ? hookParams[0] : hookParams) as Address | undefined
  return {
    account,
    recipients: 1,
    rules,
    summary: {
      ip: String(connection.remote.ip ?? ''),
      helo: String(connection.hello.host ?? ''),
      domains: rcpt?.host ? [String(rcpt.host).toLowerCase()] : [],
      subject: clip(`${reply.code} ${reply.text} (${str(by)})`),
    },
    where: 'rcpt',
  }
}

/** A recipient of a bounced message as Haraka's outbound leaves it (an Address with DSN fields). */
interface BouncedRcpt {
  readonly host?: unknown
  readonly dsn_smtp_code?: unknown
  readonly dsn_code?: unknown
  readonly dsn_smtp_response?: unknown
  readonly dsn_msg?: unknown
}

/** The code a recipient failed with: the next hop's reply, else Haraka's own DSN (No Such Domain, ...). */
function failedCode(r: BouncedRcpt): number {
  return Number(r.dsn_smtp_code ?? r.dsn_code) || 0
}

/**
 * bounce: the recipients of a bounced message of a counted account that failed with a 5xx; null
 * when there are none (mail not counted, a dropped message, an exempt account, a bounce after
 * temporary failures ran out, whose recipients keep their 4xx codes).
 */
export function bouncedRecipients(mail: QueuedMail, err: unknown, config: Config): InvalidRecipients | null {
  if (mail.hijackGuardDrop) return null
  const note = countNote(mail)
  if (!note || config.exempt.has(note.account)) return null
  const rules = invalidRulesForAccount(config, note.account)
  if (rules.length === 0) return null
  // A bounce after some recipients failed names them (err.bounced_rcpt, split off into this message);
  // a bounce of the whole message (5xx at MAIL or DATA, no such domain) fails every recipient of it.
  const named = (err as { bounced_rcpt?: unknown } | null)?.bounced_rcpt
  const list = Array.isArray(named) && named.length > 0 ? named : (mail.todo?.rcpt_to ?? [])
  const failed = (list as readonly BouncedRcpt[]).filter((r) => {
    const code = failedCode(r ?? {})
    return code >= 500 && code <= 599
  })
  const first = failed[0]
  if (!first) return null
  const domains = [...new Set(failed.map((r) => str(r.host).toLowerCase()))].slice(0, MAX_DOMAINS)
  return {
    account: note.account,
    recipients: failed.length,
    rules,
    summary: {
      ip: '',
      helo: '',
      domains,
      subject: clip(`${failedCode(first)} ${str(first.dsn_smtp_response ?? first.dsn_msg)} (bounce)`),
    },
    where: 'bounce',
  }
}

/**
 * Counts the refused recipients (Store.invalid); disables and alerts over the limit (enforce), or
 * reports once per window (monitor). Never rejects: a store failure is logged (and, at RCPT, put
 * in the connection's results) and changes nothing else.
 */
export async function countInvalid(
  plugin: HarakaPlugin,
  state: GuardState,
  found: InvalidRecipients,
  connection?: Connection,
): Promise<void> {
  try {
    await countAndReport(plugin, state, found, connection)
  } catch (err) {
    plugin.logerror(`invalid_recipients of ${JSON.stringify(found.account)} not counted: ${errorText(err)}`)
  }
}

async function countAndReport(
  plugin: HarakaPlugin,
  state: GuardState,
  found: InvalidRecipients,
  connection: Connection | undefined,
): Promise<void> {
  const { config, store } = state
  const token = randomId()
  const input: RecordInput = {
    account: found.account,
    recipients: found.recipients,
    rules: found.rules,
    mode: config.mode,
    summary: found.summary,
    token,
    tokenTtlMs: config.reactivate.tokenTtlMs,
    warnAt: config.warnAt,
    ...probationOf(config),
  }
  let result
  try {
    result = await store.invalid(input)
  } catch (err) {
    const where = `${found.where === 'rcpt' ? 'deny (rcpt)' : 'bounce'}, invalid_recipients not counted`
    if (connection) storeFailure(plugin, connection, state, err, where)
    else
      logStoreDown(state, `store unavailable at ${where}: ${errorText(err)}`, (line: string) => plugin.logerror(line))
    return
  }
  const account = JSON.stringify(found.account)
  const counts = (): string => result.counts.map((c) => `${describeLimit(c)}: ${c.count}`).join(', ')
  if (result.status === 'refused' && result.flipped) {
    plugin.logwarn(
      `ACCOUNT DISABLED ${account}: reached ${describeLimit(result.over)} (${describeCount(result.over)}) ` +
        `with ${found.recipients} more at ${found.where}; incident ${result.record.incident}; ${evidenceLine(result.record.evidence)}`,
    )
    // The RCPT's answer and the bounce do not wait for the alert and the audit entry.
    const password = connection ? (state.process.sessionPasswords.get(connection) ?? null) : undefined
    void afterDisable(plugin, state, result.record, token, password)
  } else if (result.status === 'ok' && result.warn) {
    // [warn] at: one warning per window per account, whichever of its limits got there first.
    plugin.logwarn(
      `warning: account ${account} reached ${describeCount(result.warn)} of ${describeLimit(result.warn)}; counts ${counts()}`,
    )
    void sendWarning(plugin, state, {
      account: found.account,
      warn: result.warn,
      counts: result.counts,
      evidence: result.evidence ?? [found.summary],
      at: result.at,
    })
  }
  if (result.status === 'ok' && result.over && result.flipped) {
    plugin.logwarn(
      `monitor mode: account ${account} went over ${describeLimit(result.over)} (${describeCount(result.over)}); ` +
        `not disabled (mode=monitor); counts ${counts()}`,
    )
    void sendMonitorReport(plugin, state, found.account, { ...result, over: result.over }, found.summary)
  }
}
