/**
 * What each hook decides, given the config and the store. The hooks in index.ts only find the
 * state and call these; every store failure is turned into the configured policy here.
 */
import { normalizeAccount } from './account'
import { rulesForAccount, type Config } from './config'
import { DENY, DENYDISCONNECT, DENYSOFT, DSN, type Connection, type HarakaPlugin, type Transaction, type Verdict } from './haraka'
import { describeCount, describeLimit, disabledReply, overLimitReply, shownAccount, storeDownReply } from './messages'
import type { DisabledRecord, MessageSummary, Store } from './store'

export interface GuardState {
  readonly config: Config
  readonly store: Store
}

const MAX_DOMAINS = 5
const MAX_SUBJECT = 120

/** The account of an authenticated session, or null for a session that did not AUTH. */
export function sessionAccount(connection: Connection, config: Config): string | null {
  const login = connection.notes.auth_user
  if (typeof login !== 'string') return null
  return normalizeAccount(login, config.lowercaseAccounts)
}

/** The verdict when the store failed: open lets mail flow, closed answers 451 4.3.0. */
function storeFailure(plugin: HarakaPlugin, connection: Connection, state: GuardState, err: unknown, where: string): Verdict {
  const msg = `store unavailable at ${where} (on_store_error=${state.config.onStoreError}): ${(err as Error)?.message ?? String(err)}`
  connection.logerror(plugin, msg)
  connection.results.add(plugin, { err: msg })
  if (state.config.onStoreError === 'open') return
  return [DENYSOFT, DSN.sys_unspecified(storeDownReply(state.config.contact), 451)]
}

/** MAIL FROM: refuse a disabled account with 550 5.7.1 and close the session. */
export async function checkMail(plugin: HarakaPlugin, connection: Connection, state: GuardState): Promise<Verdict> {
  const account = sessionAccount(connection, state.config)
  if (account === null) return
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
  return [DENYDISCONNECT, DSN.sec_unauthorized(disabledReply(account, state.config.contact), 550)]
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
  const input = { account, recipients: txn.rcpt_to.length, rules, mode: config.mode, summary: summarize(connection, txn) }
  let result
  try {
    result = await store.record(input)
  } catch (err) {
    return storeFailure(plugin, connection, state, err, 'queue_outbound')
  }
  const counts = result.counts.map((c) => `${describeLimit(c)}: ${c.count}`).join(', ')
  switch (result.status) {
    case 'disabled':
      txn.results.add(plugin, { fail: 'disabled' })
      return [DENY, DSN.sec_unauthorized(disabledReply(account, config.contact), 550)]
    case 'refused':
      txn.results.add(plugin, { fail: `over ${describeLimit(result.over)}`, counts })
      if (result.flipped) {
        connection.logwarn(
          plugin,
          `ACCOUNT DISABLED ${JSON.stringify(account)}: reached ${describeLimit(result.over)} (${describeCount(result.over)}); ` +
            `counts ${counts}; incident ${result.record.incident}; ${evidenceLine(result.record.evidence)}`,
        )
      }
      return [DENY, DSN.sec_unauthorized(overLimitReply(account, result.over, config.contact), 550)]
    case 'ok':
      txn.results.add(plugin, { pass: 'counted', counts })
      if (result.over && result.flipped) {
        connection.logwarn(
          plugin,
          `monitor mode: account ${JSON.stringify(account)} went over ${describeLimit(result.over)} (${describeCount(result.over)}); ` +
            `not refused (mode=monitor); counts ${counts}`,
        )
      }
      return
  }
}

/** "ips 1.2.3.4; helos x; domains a, b; subjects ..." for log lines. */
export function evidenceLine(evidence: readonly MessageSummary[]): string {
  const uniq = (xs: string[]): string => [...new Set(xs.filter((x) => x !== ''))].join(', ') || '-'
  return [
    `ips ${uniq(evidence.map((e) => e.ip))}`,
    `helos ${uniq(evidence.map((e) => e.helo))}`,
    `domains ${uniq(evidence.flatMap((e) => [...e.domains]))}`,
    `subjects ${uniq(evidence.map((e) => JSON.stringify(e.subject)))}`,
  ].join('; ')
}

/**
 * AUTH: the 535 text for an account that is disabled, or null to let the login through.
 * A store failure lets it through: MAIL FROM applies on_store_error.
 */
export async function authRefusal(plugin: HarakaPlugin, connection: Connection, login: string, state: GuardState): Promise<string | null> {
  if (state.config.mode === 'monitor') return null
  const account = normalizeAccount(login, state.config.lowercaseAccounts)
  try {
    if (!(await state.store.getDisabled(account))) return null
  } catch (err) {
    connection.logerror(plugin, `store unavailable at AUTH, MAIL FROM will decide: ${(err as Error)?.message ?? String(err)}`)
    return null
  }
  connection.lognotice(plugin, `refusing AUTH of disabled account ${JSON.stringify(account)}`)
  return `5.7.8 ${disabledReply(account, state.config.contact)}`
}
