/**
 * What each hook decides, given the config and the store. The hooks in index.ts only find the
 * state and call these; every store failure is turned into the configured policy here.
 */
import { join, resolve } from 'node:path'
import { canonicalAccount } from './account'
import { rulesForAccount, type Config } from './config'
import { DENY, DENYDISCONNECT, DENYSOFT, DSN, envelopeAddress, OK, type Address, type Connection, type HarakaPlugin, type Transaction, type Verdict } from './haraka'
import { describeCount, describeLimit, disabledReply, overLimitReply, shownAccount, storeDownReply, errorText } from './messages'
import { withTimeout, type DisabledRecord, type MessageSummary, type Store } from './store'
import { composeAlert, composeNotice, type MailSender } from './alert'
import { handleReply } from './reactivate'
import { isReplyRecipient, TOKEN_PATTERN, type MailAddress } from './reply'
import { randomId } from './ids'
import { createFailureLog, type FailureLog } from './failure-log'

export interface GuardState {
  readonly config: Config
  readonly store: Store
  /** Queues a message through Haraka's outbound (a seam: tests replace it). */
  readonly sendMail: MailSender
}

const MAX_DOMAINS = 5
const MAX_SUBJECT = 120

/**
 * The login of a session: what AUTH set, else (with [accounts] xclient_login) the login an
 * XCLIENT proxy passed; null for a session with neither.
 */
function sessionLogin(connection: Connection, config: Config): string | null {
  const login = connection.notes.auth_user
  if (typeof login === 'string') return login
  const proxied = config.accounts.xclientLogin ? connection.remote.login : undefined
  return typeof proxied === 'string' && proxied !== '' ? proxied : null
}

/** The canonical account of a session ([accounts]), or null for a session without a login. */
function sessionAccount(connection: Connection, config: Config): string | null {
  const login = sessionLogin(connection, config)
  return login === null ? null : canonicalAccount(login, config.accounts)
}

/** One rate limiter of "store unavailable" lines per plugin object (one per Haraka process). */
const storeDownLogs = new WeakMap<object, FailureLog>()

/**
 * Logs a store failure at ERROR, rate-limited: the first of an outage, then one count a minute.
 * Returns true when this one was logged.
 */
export function logStoreDown(plugin: HarakaPlugin, text: string, log: (line: string) => void): boolean {
  let limiter = storeDownLogs.get(plugin)
  if (!limiter) {
    limiter = createFailureLog({ what: 'store unavailable' })
    storeDownLogs.set(plugin, limiter)
  }
  return limiter.failure(text, log)
}

/** The verdict when the store failed: open lets mail flow, closed answers 451 4.3.0. */
export function storeFailure(plugin: HarakaPlugin, connection: Connection, state: GuardState, err: unknown, where: string): Verdict {
  const text = `store unavailable at ${where} (on_store_error=${state.config.onStoreError}): ${errorText(err)}`
  // Every failure is in the results as a msg (haraka-results logs an err at ERROR, a msg not);
  // the log gets the first of an outage and then a count a minute.
  connection.results.add(plugin, { msg: text })
  logStoreDown(plugin, text, (line) => connection.logerror(plugin, line))
  return storeErrorVerdict(state)
}

/** What on_store_error answers: nothing (open) or 451 4.3.0 (closed). */
export function storeErrorVerdict(state: Pick<GuardState, 'config'>): Verdict {
  if (state.config.onStoreError === 'open') return
  return [DENYSOFT, DSN.sys_unspecified(storeDownReply(state.config.contact), 451)]
}

/** The connection note of an AUTH that found the account enabled. */
const AUTH_CHECKED = 'hijack_guard_auth_checked'
interface AuthChecked {
  readonly account: string
  readonly at: number
}

/**
 * How long the AUTH lookup stands in for the first MAIL FROM's, unless this process has seen an
 * account disabled since. A disable elsewhere in that moment (another server, the CLI) is still
 * caught: the counting script refuses a disabled account's message at the end of DATA.
 */
const AUTH_CHECK_FRESH_MS = 2000

/** When this process last disabled an account or saw one disabled (ms, local clock). */
let lastDisableSeenAt = 0

/** MAIL FROM: refuse a disabled account with 550 5.7.1 and close the session. */
export async function checkMail(plugin: HarakaPlugin, connection: Connection, state: GuardState): Promise<Verdict> {
  const account = sessionAccount(connection, state.config)
  if (account === null) return
  const checked = connection.notes[AUTH_CHECKED] as AuthChecked | undefined
  if (checked) {
    delete connection.notes[AUTH_CHECKED]
    // The AUTH a moment ago looked this account up: one store round trip per message, not two.
    if (checked.account === account && Date.now() - checked.at < AUTH_CHECK_FRESH_MS && checked.at > lastDisableSeenAt) return
  }
  let record: DisabledRecord | null
  try {
    record = await state.store.getDisabled(account)
  } catch (err) {
    return storeFailure(plugin, connection, state, err, 'MAIL FROM')
  }
  if (!record) return
  connection.results.add(plugin, { fail: 'disabled', msg: `account ${shownAccount(account)} is disabled` })
  if (state.config.mode === 'monitor') {
    connection.logwarn(plugin, `monitor mode: account ${JSON.stringify(account)} is disabled; not refusing`)
    return
  }
  connection.lognotice(plugin, `refusing MAIL FROM of disabled account ${JSON.stringify(account)}`)
  return [DENYDISCONNECT, DSN.sec_unauthorized(disabledReply({ account, by: record.by }, state.config.contact), 550)]
}

/** What this message tells about its sender, for the evidence. */
export function summarize(connection: Connection, txn: Transaction): MessageSummary {
  const domains = [...new Set(txn.rcpt_to.map((a) => String(a.host ?? '').toLowerCase()))].slice(0, MAX_DOMAINS)
  let subject = ''
  try {
    subject = String(txn.header.get_decoded('Subject') ?? '').trim()
  } catch {
    subject = String(txn.header.get('Subject') ?? '').trim()
  }
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

/** queue_outbound: count the message; refuse (550 5.7.1) and disable when it goes over a limit. */
export async function countMessage(plugin: HarakaPlugin, connection: Connection, state: GuardState): Promise<Verdict> {
  const txn = connection.transaction
  const account = sessionAccount(connection, state.config)
  if (!txn || account === null) return
  const { config, store } = state
  if (config.exempt.has(account)) {
    txn.results.add(plugin, { skip: 'exempt' })
    return
  }
  const rules = rulesForAccount(config, account)
  if (rules.length === 0) return
  const summary = summarize(connection, txn)
  const token = randomId()
  const input = { account, recipients: txn.rcpt_to.length, rules, mode: config.mode, summary, token, tokenTtlMs: config.reactivate.tokenTtlMs }
  let result
  try {
    result = await store.record(input)
  } catch (err) {
    return storeFailure(plugin, connection, state, err, 'queue_outbound')
  }
  // Built only where it is logged: the common path (counted, under the limits) skips it.
  const counts = (): string => result.counts.map((c) => `${describeLimit(c)}: ${c.count}`).join(', ')
  if (result.status !== 'ok') lastDisableSeenAt = Date.now()
  switch (result.status) {
    case 'disabled':
      txn.results.add(plugin, { fail: 'disabled' })
      return [DENY, DSN.sec_unauthorized(disabledReply({ account, by: result.by }, config.contact), 550)]
    case 'refused':
      txn.results.add(plugin, { fail: `over ${describeLimit(result.over)}`, counts: counts() })
      if (result.flipped) {
        connection.logwarn(
          plugin,
          `ACCOUNT DISABLED ${JSON.stringify(account)}: reached ${describeLimit(result.over)} (${describeCount(result.over)}); ` +
            `counts ${counts()}; incident ${result.record.incident}; ${evidenceLine(result.record.evidence)}`,
        )
        // The refusal does not wait for the alert and the audit entry.
        void afterDisable(plugin, state, result.record, token)
      }
      return [DENY, DSN.sec_unauthorized(overLimitReply(account, result.over, config.contact), 550)]
    case 'ok': {
      const note: CountNote = { account, recipients: input.recipients, at: result.at, countedAt: Date.now() }
      txn.notes[NOTE] = note
      txn.results.add(plugin, { pass: 'counted' })
      if (result.over && result.flipped) {
        connection.logwarn(
          plugin,
          `monitor mode: account ${JSON.stringify(account)} went over ${describeLimit(result.over)} (${describeCount(result.over)}); ` +
            `not refused (mode=monitor); counts ${counts()}`,
        )
        const record = { account, reason: 'limit', by: 'limit', at: result.at, incident: randomId(), over: result.over, counts: result.counts, evidence: result.evidence ?? [summary] }
        void sendAlert(plugin, state, record, undefined)
      }
      return
    }
  }
}

/** The audit entry and the alert of an automatic disable; failures are logged, never thrown. */
async function afterDisable(plugin: HarakaPlugin, state: GuardState, record: DisabledRecord, token: string): Promise<void> {
  const reason = record.over ? `reached ${describeLimit(record.over)} (${describeCount(record.over)})` : record.reason
  await Promise.all([
    state.store.audit({ at: record.at, account: record.account, action: 'disable', actor: 'limit', how: 'limit', reason }).catch((err: unknown) =>
      plugin.logerror(`audit entry for ${JSON.stringify(record.account)} not written: ${errorText(err)}`),
    ),
    sendAlert(plugin, state, record, token),
  ])
}

/** Queues the postmaster alert; a failure is logged (the incident stays in the store). */
async function sendAlert(plugin: HarakaPlugin, state: GuardState, record: DisabledRecord, token: string | undefined): Promise<void> {
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
      now: Date.now(),
    })
    await state.sendMail(mail)
    plugin.loginfo(`alert for ${JSON.stringify(record.account)} queued to ${config.alert.to.join(', ')} (incident ${record.incident})`)
  } catch (err) {
    plugin.logerror(`alert for ${JSON.stringify(record.account)} NOT sent (incident ${record.incident}): ${errorText(err)}`)
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

/** "ips 1.2.3.4; helos x; domains a, b; subjects ..." for log lines. */
function evidenceLine(evidence: readonly MessageSummary[]): string {
  const uniq = (xs: string[]): string => [...new Set(xs.filter((x) => x !== ''))].join(', ') || '-'
  return [
    `ips ${uniq(evidence.map((e) => e.ip))}`,
    `helos ${uniq(evidence.map((e) => e.helo))}`,
    `domains ${uniq(evidence.flatMap((e) => [...e.domains]))}`,
    `subjects ${uniq(evidence.map((e) => JSON.stringify(e.subject)))}`,
  ].join('; ')
}

/**
 * AUTH, before the password is checked: the 535 text for an account that is disabled, or null
 * to let the auth plugin check the password. The lookup gives up after store_timeout; a store
 * failure answers null too (MAIL FROM applies on_store_error).
 */
export async function authRefusal(plugin: HarakaPlugin, connection: Connection, login: string, state: GuardState): Promise<string | null> {
  if (state.config.mode === 'monitor') return null
  const account = canonicalAccount(login, state.config.accounts)
  let record: DisabledRecord | null
  try {
    record = await withTimeout(state.store.getDisabled(account), state.config.storeTimeoutMs, 'AUTH lookup')
  } catch (err) {
    logStoreDown(plugin, `store unavailable at AUTH, MAIL FROM will decide: ${errorText(err)}`, (line) => connection.logerror(plugin, line))
    return null
  }
  if (!record) {
    const checked: AuthChecked = { account, at: Date.now() }
    connection.notes[AUTH_CHECKED] = checked
    return null
  }
  connection.lognotice(plugin, `refusing AUTH of disabled account ${JSON.stringify(account)} (password not checked)`)
  return `5.7.8 ${disabledReply({ account, by: record.by }, state.config.contact)}`
}

/** The transaction note that marks a reply to an alert: its one reply-address recipient, as a list. */
const REPLY_NOTE = 'hijack_guard_reply'

const SEPARATE = (address: string): string => `send the reply to ${address} in a message of its own`
const ONE_REPLY = 'one reply-address recipient per message'

/**
 * RCPT TO: accept the reply address (with any +detail) from every sender, since a postmaster
 * may answer from anywhere. A reply is one recipient in a transaction of its own: a second
 * reply-address recipient, or any other recipient beside it, gets 452 4.5.3. Constant time per
 * RCPT, however many the client sends: the accepted reply is a transaction note, and the other
 * recipients are counted by rcpt_to's length (Haraka appends this recipient before the rcpt
 * hooks run and removes every recipient a hook refuses), never by scanning it.
 */
export function checkRcpt(connection: Connection, state: GuardState, rcpt: Address): Verdict {
  const txn = connection.transaction
  if (!txn) return
  const replyAddress = state.config.alert.replyAddress
  const accepted = txn.notes[REPLY_NOTE] !== undefined
  const address: MailAddress = { local: String(rcpt.user ?? ''), domain: String(rcpt.host ?? '') }
  if (isReplyRecipient(address, replyAddress)) {
    if (accepted) return [DENYSOFT, DSN.create(452, ONE_REPLY, 5, 3)]
    if (txn.rcpt_to.length > 1) return [DENYSOFT, DSN.create(452, SEPARATE(replyAddress), 5, 3)]
    const recipients: MailAddress[] = [address]
    txn.notes[REPLY_NOTE] = recipients
    return [OK, DSN.create(250, 'reply address of hijack-guard', 1, 5)]
  }
  if (accepted) return [DENYSOFT, DSN.create(452, SEPARATE(replyAddress), 5, 3)]
}

/**
 * queue / queue_outbound: a reply to an alert is consumed here (250, never delivered, never
 * counted) and decided by handleReply. Answers null for any other message.
 */
export async function consumeReply(plugin: HarakaPlugin, connection: Connection, state: GuardState): Promise<Verdict | null> {
  const txn = connection.transaction
  const recipients = txn?.notes[REPLY_NOTE] as MailAddress[] | undefined
  if (!txn || !recipients) return null
  try {
    return await decideReply(plugin, connection, state, txn, recipients)
  } catch (err) {
    // Whatever went wrong, a reply is never delivered anywhere.
    connection.logcrit(plugin, `reply to alert consumed unprocessed after an unexpected error: ${(err as Error)?.stack ?? String(err)}`)
    return [OK, DSN.create(250, 'Reply received by hijack-guard', 0, 0)]
  }
}

async function decideReply(plugin: HarakaPlugin, connection: Connection, state: GuardState, txn: Transaction, recipients: MailAddress[]): Promise<Verdict> {
  const { config, store } = state
  const mailFrom = envelopeAddress(txn.mail_from)
  const header = (name: string): string => {
    try {
      return String(txn.header.get_decoded(name) ?? '')
    } catch {
      return String(txn.header.get(name) ?? '')
    }
  }
  const login = sessionLogin(connection, config)
  let outcome
  try {
    outcome = await handleReply({ authUser: login, mailFrom, recipients, header }, config, store)
  } catch (err) {
    // A reply must not be lost to a store outage: the sender's server will try again.
    connection.results.add(plugin, { err: `reply not processed, store unavailable: ${errorText(err)}` })
    return [DENYSOFT, DSN.sys_unspecified('Reply not processed yet; please try again later', 451)]
  }
  const messageId = header('Message-ID').trim()
  if (outcome.result === 'reactivated') {
    connection.lognotice(plugin, `ACCOUNT RE-ENABLED ${JSON.stringify(outcome.account)} by reply from ${outcome.actor}`)
    txn.results.add(plugin, { pass: 'reactivated' })
    await store
      .audit({ at: Date.now(), account: outcome.account, action: 'enable', actor: outcome.actor, how: 'reply' })
      .catch((err: unknown) => connection.logerror(plugin, `audit entry not written: ${errorText(err)}`))
    const to = login !== null && mailFrom ? [mailFrom] : config.alert.to
    for (const address of to) {
      void notify(plugin, state, address, messageId, `Account ${shownAccount(outcome.account)} re-enabled`, [
        `The account ${shownAccount(outcome.account)} works again: its disabled flag and its counters were cleared`,
        `by a reply from ${outcome.actor}.`,
        '',
        'If its password was not changed yet, change it now.',
      ])
    }
  } else {
    if (outcome.reason.includes('null sender')) {
      // A bounce to the reply address: an alert or a notice did not arrive somewhere.
      const subject = header('Subject').trim().replace(new RegExp(TOKEN_PATTERN.source, 'gi'), 'hg-...')
      connection.logwarn(plugin, `a bounce reached the reply address: an alert or notice may not have been delivered (subject ${JSON.stringify(subject)})`)
    }
    connection.lognotice(plugin, `reply to alert not accepted from ${outcome.actor}${outcome.account !== undefined ? ` for ${JSON.stringify(outcome.account)}` : ''}: ${outcome.reason}`)
    txn.results.add(plugin, { fail: `reply: ${outcome.reason}` })
    if (outcome.account !== undefined) {
      await store
        .audit({ at: Date.now(), account: outcome.account, action: 'reactivate-failed', actor: outcome.actor, how: 'reply', reason: outcome.reason })
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
  return [OK, DSN.create(250, 'Reply received by hijack-guard', 0, 0)]
}

async function notify(plugin: HarakaPlugin, state: GuardState, to: string, inReplyTo: string, subject: string, lines: string[]): Promise<void> {
  const { config } = state
  try {
    const mail = composeNotice({ from: config.alert.from, to, me: config.me, now: Date.now(), id: randomId(), subject, lines, ...(inReplyTo ? { inReplyTo } : {}) })
    await state.sendMail(mail)
  } catch (err) {
    plugin.logerror(`notice to ${to} not sent: ${errorText(err)}`)
  }
}
