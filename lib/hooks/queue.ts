/**
 * queue_outbound: every message an authenticated session completes is counted here, once,
 * atomically with the limit check; the message over a limit is refused and the account disabled.
 */
import { rulesForAccount, type Rule } from '../config'
import { answers } from '../answers'
import { type Connection, type HarakaPlugin, type Transaction, type Verdict } from '../haraka'
import { randomId } from '../ids'
import { describeCount, describeLimit, errorText } from '../messages'
import type { EventCount } from '../webhook'
import type { DisabledRecord, MessageSummary, WindowCount } from '../store'
import { decodedHeader } from '../text'
import { inNetworks, networkOf } from '../network'
import { hashPassword } from '../password'
import { probationOf } from '../reactivate/probation'
import type { PasswordNote } from '../alert'
import { emitEvent } from './events'
import { sendAlert, sendOwnerNotice, sendWarning } from './mailer'
import { refusedOverCap } from './rcpt'
import { sessionAccount, storeFailure, type GuardState } from './state'

const MAX_DOMAINS = 5
const MAX_SUBJECT = 120

/** What this message tells about its sender, for the evidence. */
export function summarize(connection: Connection, txn: Transaction): MessageSummary {
  // Distinct recipient domains, first seen first, at most MAX_DOMAINS: a loop over a list this
  // short beats a Set and its spread. Haraka's addresses hold their host lower-cased already, and
  // toLowerCase then hands back the same string.
  const domains: string[] = []
  for (const rcpt of txn.rcpt_to) {
    const domain = String(rcpt.host ?? '').toLowerCase()
    if (!domains.includes(domain)) domains.push(domain)
    if (domains.length === MAX_DOMAINS) break
  }
  // Haraka decoded every header (RFC 2047) when it parsed the message: get_decoded is a lookup.
  const subject = decodedHeader(txn.header, 'Subject').trim()
  return {
    ip: String(connection.remote.ip ?? ''),
    helo: String(connection.hello.host ?? ''),
    domains,
    subject: subject.length > MAX_SUBJECT ? `${subject.slice(0, MAX_SUBJECT - 3)}...` : subject,
  }
}

/** What the plugin notes on a transaction it counted (also read from outbound's todo.notes). */
export interface CountNote {
  readonly account: string
  readonly recipients: number
  /** Store-clock time of the count (the held-mail check compares it with drop-held marks). */
  readonly at: number
  /** This server's clock at the count (ms), for the hold check of queued mail. */
  readonly countedAt?: number
}

/** The transaction note key; outbound copies transaction notes into each queued message. */
export const NOTE = 'hijack_guard'

/**
 * queue_outbound: count the message; refuse (550 5.7.1) and disable when it goes over a limit.
 * A message that is not counted (no login, an exempt account, no limits) is answered without a
 * promise.
 */
export function countMessage(
  plugin: HarakaPlugin,
  connection: Connection,
  state: GuardState,
): Verdict | Promise<Verdict> {
  const txn = connection.transaction
  const account = sessionAccount(connection, state.config)
  if (!txn || account === null) return
  if (state.config.exempt.has(account)) {
    txn.results.add(plugin, { skip: 'exempt' })
    return
  }
  const rules = rulesForAccount(state.config, account)
  if (rules.length === 0) return
  return countAndCheck(plugin, connection, state, txn, account, rules)
}

/** The store call of countMessage and what its result means for the message. */
async function countAndCheck(
  plugin: HarakaPlugin,
  connection: Connection,
  state: GuardState,
  txn: Transaction,
  account: string,
  rules: readonly Rule[],
): Promise<Verdict> {
  const { config, store } = state
  const summary = summarize(connection, txn)
  const token = randomId()
  const input = {
    account,
    // The recipients refused over max_recipients_per_message were attempted: they count too.
    recipients: txn.rcpt_to.length + refusedOverCap(txn),
    rules,
    mode: config.mode,
    summary,
    token,
    tokenTtlMs: config.reactivate.tokenTtlMs,
    network: countedNetwork(connection.remote.ip, config.exemptNetworks),
    warnAt: config.warnAt,
    ...probationOf(config),
  }
  let result
  try {
    result = await store.record(input)
  } catch (err) {
    return storeFailure(plugin, connection, state, err, 'queue_outbound')
  }
  // Built only where it is logged: the common path (counted, under the limits) skips it.
  const counts = (): string => result.counts.map((c) => `${describeLimit(c)}: ${c.count}`).join(', ')
  switch (result.status) {
    case 'disabled':
      txn.results.add(plugin, { fail: 'disabled' })
      return answers.disabledAtData({ account, by: result.by }, config.contact)
    case 'refused':
      txn.results.add(plugin, { fail: `over ${describeLimit(result.over)}`, counts: counts() })
      if (result.flipped) {
        connection.logwarn(
          plugin,
          `ACCOUNT DISABLED ${JSON.stringify(account)}: reached ${describeLimit(result.over)} (${describeCount(result.over)}); ` +
            `counts ${counts()}; incident ${result.record.incident}; ${evidenceLine(result.record.evidence, result.record.networks)}`,
        )
        // The refusal does not wait for the alert and the audit entry.
        void afterDisable(plugin, state, result.record, token, state.process.sessionPasswords.get(connection) ?? null)
      }
      return answers.overLimit(account, result.over, config.contact)
    case 'ok': {
      const note: CountNote = { account, recipients: input.recipients, at: result.at, countedAt: Date.now() }
      txn.notes[NOTE] = note
      txn.results.add(plugin, { pass: 'counted' })
      if (result.warn) {
        connection.logwarn(
          plugin,
          `warning: account ${JSON.stringify(account)} reached ${describeCount(result.warn)} of ${describeLimit(result.warn)}; counts ${counts()}`,
        )
        void sendWarning(plugin, state, {
          account,
          warn: result.warn,
          counts: result.counts,
          evidence: result.evidence ?? [summary],
          ...(result.networks ? { networks: result.networks } : {}),
          at: result.at,
        })
      }
      if (result.over && result.flipped) {
        connection.logwarn(
          plugin,
          `monitor mode: account ${JSON.stringify(account)} went over ${describeLimit(result.over)} (${describeCount(result.over)}); ` +
            `not refused (mode=monitor); counts ${counts()}`,
        )
        void sendMonitorReport(plugin, state, account, { ...result, over: result.over }, summary)
      }
      return
    }
  }
}

/**
 * Monitor mode's report of a limit crossed (the alert without a token); `summary` stands in for
 * the evidence when the store gave none. A failure is logged, never thrown.
 */
export function sendMonitorReport(
  plugin: HarakaPlugin,
  state: GuardState,
  account: string,
  result: {
    at: number
    over: WindowCount
    counts: readonly WindowCount[]
    evidence?: readonly MessageSummary[]
    networks?: readonly string[]
  },
  summary: MessageSummary,
): Promise<void> {
  const record = {
    account,
    reason: 'limit',
    by: 'limit',
    at: result.at,
    incident: randomId(),
    over: result.over,
    counts: result.counts,
    evidence: result.evidence ?? [summary],
    ...(result.networks ? { networks: result.networks } : {}),
  }
  return sendAlert(plugin, state, record, undefined)
}

/**
 * The audit entry, the hash of the session's password ([reactivate] require_new_password) and
 * the alert of an automatic disable; failures are logged, never thrown. `password` is the
 * session's (null: its AUTH mechanism hid it; undefined: no session, e.g. a bounce).
 */
export async function afterDisable(
  plugin: HarakaPlugin,
  state: GuardState,
  record: DisabledRecord,
  token: string,
  password: string | null | undefined,
): Promise<void> {
  const reason = record.over ? `reached ${describeLimit(record.over)} (${describeCount(record.over)})` : record.reason
  // Only the process whose store call flipped the flag gets here: the event goes out once.
  emitEvent(plugin, state, {
    event: 'disabled',
    account: record.account,
    incident: record.incident,
    reason,
    trigger: record.over?.kind ?? record.by,
    counts: eventCounts(record.counts),
    via: 'limit',
    atMs: record.at,
  })
  const [, kept] = await Promise.all([
    state.store
      .audit({ at: record.at, account: record.account, action: 'disable', actor: 'limit', how: 'limit', reason })
      .catch((err: unknown) =>
        plugin.logerror(`audit entry for ${JSON.stringify(record.account)} not written: ${errorText(err)}`),
      ),
    keepPassword(plugin, state, record, password),
    sendOwnerNotice(plugin, state, record),
  ])
  await sendAlert(plugin, state, record, token, kept)
}

/**
 * Keeps the salted hash of the password of the session that tripped the disable; answers what
 * the alert says about it: 'kept', 'hidden' (the session's AUTH hid it) or 'off' (not asked to,
 * no session, or it could not be stored).
 */
async function keepPassword(
  plugin: HarakaPlugin,
  state: GuardState,
  record: DisabledRecord,
  password: string | null | undefined,
): Promise<PasswordNote> {
  if (!state.config.reactivate.requireNewPassword || password === undefined) return 'off'
  if (password === null) return 'hidden'
  try {
    await state.store.rememberPassword(record.account, await hashPassword(password, record.at, record.incident))
    return 'kept'
  } catch (err) {
    plugin.logerror(
      `the password of incident ${record.incident} (${JSON.stringify(record.account)}) was not kept: ${errorText(err)}`,
    )
    return 'off'
  }
}

/** The counts of a webhook payload: kind, count, and the limit as written (max/window). */
function eventCounts(counts: readonly WindowCount[]): EventCount[] {
  return counts.map((c) => ({ kind: c.kind, count: c.count, limit: c.text }))
}

/**
 * The client network a message counts from ([signals] networks): '' for an address in
 * [signals] exempt_networks or none at all.
 */
export function countedNetwork(ip: string | undefined, exempt: readonly string[]): string {
  return !ip || inNetworks(ip, exempt) ? '' : networkOf(ip)
}

/** "ips 1.2.3.4; helos x; domains a, b; subjects ...; networks ..." for log lines. */
export function evidenceLine(evidence: readonly MessageSummary[], networks?: readonly string[]): string {
  const uniq = (xs: string[]): string => [...new Set(xs.filter((x) => x !== ''))].join(', ') || '-'
  return [
    `ips ${uniq(evidence.map((e) => e.ip))}`,
    `helos ${uniq(evidence.map((e) => e.helo))}`,
    `domains ${uniq(evidence.flatMap((e) => [...e.domains]))}`,
    `subjects ${uniq(evidence.map((e) => JSON.stringify(e.subject)))}`,
    ...(networks?.length ? [`networks ${networks.join(', ')}`] : []),
  ].join('; ')
}
