/**
 * The CLI's commands, one table: usage, arguments, options, help text and handler together, so
 * that parsing, the usage checks and --help are derived from one place.
 */
import { userInfo } from 'node:os'
import { canonicalAccount } from '../account'
import { alertReason, evidenceLines } from '../alert'
import { rulesForAccount, type Config } from '../config'
import { formatDuration } from '../messages'
import { replyEnables } from '../reactivate'
import { beginProbation, rulesOnProbation } from '../reactivate/probation'
import type { AuditEntry, DisabledRecord, Store, WindowCount } from '../store'
import { utc } from '../text'
import type { WebhookEvent } from '../webhook'

/** Exit codes scripts can rely on. */
export const EXIT = {
  ok: 0,
  /** Nothing to do or nothing known: enable of an account that is not disabled, show of an unknown account. */
  noChange: 1,
  usage: 2,
  config: 3,
  store: 4,
} as const

/** A call that cannot be right; answered with exit 2 and a hint. */
export class UsageError extends Error {}

/** What a command's handler gets. */
export interface Context {
  readonly config: Config
  readonly store: Store
  readonly harakaDir: string
  /** The ACCOUNT arguments as given. */
  readonly args: readonly string[]
  readonly values: { readonly reason?: string; readonly limit?: string; readonly 'allow-old-password'?: boolean }
  /** Prints `data` (--json) or `text` after the store's name. */
  readonly print: (data: unknown, text: string) => void
  /** Sends a [webhook] event and waits until it was delivered or given up; never rejects. */
  readonly emit: (event: WebhookEvent) => Promise<void>
}

export type OptionName = 'reason' | 'limit' | 'allow-old-password'

export interface Command {
  /** The arguments as --help shows them, e.g. "ACCOUNT [--reason T]". */
  readonly usage: string
  /** --help's description, one or more lines. */
  readonly help: readonly string[]
  /** How many ACCOUNT arguments: at least, at most. */
  readonly accounts: readonly [number, number]
  /** Which of the command options it takes. */
  readonly options: readonly OptionName[]
  readonly run: (ctx: Context) => Promise<number>
}

function actor(): string {
  try {
    return `cli:${userInfo().username}`
  } catch {
    return `cli:${process.env.USER ?? 'unknown'}`
  }
}

function countText(c: WindowCount): string {
  return `${c.kind} ${c.count}/${c.max} in ${formatDuration(c.windowMs)}`
}

function recordJson(r: DisabledRecord, held: number | null): Record<string, unknown> {
  return {
    account: r.account,
    disabledAt: new Date(r.at).toISOString(),
    by: r.by,
    reason: alertReason(r),
    limit: r.over ? `${r.over.kind} ${r.over.text}` : null,
    counts: r.counts,
    incident: r.incident,
    held,
    ...(r.tokenExpiresAt ? { replyExpiresAt: new Date(r.tokenExpiresAt).toISOString() } : {}),
  }
}

function evidenceOf(evidence: DisabledRecord['evidence']): string[] {
  return evidence.length ? evidenceLines(evidence) : []
}

function auditLine(e: AuditEntry): string {
  return `${utc(e.at)}  ${e.action.padEnd(17)} ${JSON.stringify(e.account)} by ${e.actor} via ${e.how}${e.reason ? `: ${e.reason}` : ''}`
}

function oneAccount(args: readonly string[], config: Config): string {
  const account = canonicalAccount(args[0] ?? '', config.accounts)
  if (account === '') throw new UsageError(`${JSON.stringify(args[0] ?? '')} names no account`)
  return account
}

async function list(ctx: Context): Promise<number> {
  const { store, print } = ctx
  const records = await store.listDisabled()
  const rows = await Promise.all(records.map(async (r) => ({ r, held: await store.heldCount(r.account) })))
  const lines = rows.flatMap(({ r, held }) => [
    r.account,
    `  disabled ${utc(r.at)} by ${r.by}: ${alertReason(r)}`,
    ...(r.counts.length ? [`  counts ${r.counts.map(countText).join(', ')}`] : []),
    `  held mail ${held}; incident ${r.incident}`,
  ])
  print(
    rows.map(({ r, held }) => recordJson(r, held)),
    `${records.length} disabled account${records.length === 1 ? '' : 's'}${lines.length ? `\n${lines.join('\n')}` : ''}`,
  )
  return EXIT.ok
}

async function show(ctx: Context): Promise<number> {
  const { config, store, args, print } = ctx
  const account = oneAccount(args, config)
  const rules = await rulesOnProbation(store, config, account, rulesForAccount(config, account), Date.now())
  const cap = config.reactivate.maxReplyEnables
  const [record, counts, evidence, held, audit, passwords, probation, byReply] = await Promise.all([
    store.getDisabled(account),
    store.counts(account, rules),
    store.evidence(account),
    store.heldCount(account),
    store.auditLog({ account, limit: 10 }),
    store.oldPasswords(account),
    store.probationUntil(account, Date.now()),
    cap ? replyEnables(store, account, cap.windowMs, Date.now()) : Promise.resolve(0),
  ])
  const pending = config.reactivate.requireNewPassword && passwords.length > 0
  const liveKnown = store.kind === 'redis'
  const known =
    record !== null ||
    counts.some((c) => c.count > 0) ||
    evidence.length > 0 ||
    held > 0 ||
    audit.length > 0 ||
    passwords.length > 0
  const state = record ? 'disabled' : config.exempt.has(account) ? 'exempt' : 'active'
  const lines = [
    `Account   ${account}`,
    `State     ${state}${record ? ` since ${utc(record.at)} by ${record.by}: ${alertReason(record)}` : ''}`,
    ...(record
      ? [
          `Incident  ${record.incident}${record.tokenExpiresAt ? ` (reply to the alert until ${utc(record.tokenExpiresAt)})` : ''}`,
        ]
      : []),
    `Held mail ${held} message${held === 1 ? '' : 's'}`,
    `Probation ${probation ? `until ${utc(probation)}: limits x${config.reactivate.probationFactor}` : 'none'}`,
    `Replies   ${cap ? `re-enabled by reply ${byReply} of ${cap.max} times allowed in ${formatDuration(cap.windowMs)}${byReply >= cap.max ? ': the next needs the command line' : ''}` : 'no cap on re-enables by reply'}`,
    `Password  ${pending ? `change pending: the password in use at incident ${passwords[0]?.incident ?? ''} is refused until changed` : 'no change pending'}`,
    liveKnown
      ? 'Limits (live counts):'
      : 'Limits (live counts are kept inside the Haraka process with store = memory):',
    ...(liveKnown ? counts.map((c) => `  ${countText(c)}`) : rules.map((r) => `  ${r.kind} ${r.text}`)),
    ...(record?.counts.length ? ['At the incident:', ...record.counts.map((c) => `  ${countText(c)}`)] : []),
    ...evidenceOf(record?.evidence.length ? record.evidence : evidence),
    ...(audit.length ? ['Recent audit:', ...audit.map((e) => `  ${auditLine(e)}`)] : []),
  ]
  print(
    {
      account,
      state,
      disabled: record ? recordJson(record, held) : null,
      counts: liveKnown ? counts : null,
      held,
      passwordChangePending: pending,
      probationUntil: probation ? new Date(probation).toISOString() : null,
      replyEnables: cap ? { count: byReply, max: cap.max, windowMs: cap.windowMs } : null,
      evidence: record?.evidence.length ? record.evidence : evidence,
      audit,
    },
    known
      ? lines.join('\n')
      : `${lines.join('\n')}\nhijack-guard has no record of ${account}: not disabled, nothing counted in its windows, no audit entries`,
  )
  return known ? EXIT.ok : EXIT.noChange
}

async function enable(ctx: Context): Promise<number> {
  const { config, store, args, values, print } = ctx
  const retry = formatDuration(config.held.retryMs)
  const account = oneAccount(args, config)
  const held = await store.heldCount(account)
  const allow = values['allow-old-password'] === true
  // Nothing changes for an account that is not disabled (its counters stay).
  const was = (await store.getDisabled(account)) !== null && (await store.enable(account))
  const allowed = allow && (await store.forgetPasswords(account))
  if (allowed)
    await store.audit({
      at: Date.now(),
      account,
      action: 'password-allowed',
      actor: actor(),
      how: 'cli',
      reason: 'enable --allow-old-password',
    })
  const pending = !allow && config.reactivate.requireNewPassword && (await store.oldPasswords(account)).length > 0
  const passwordText = allowed
    ? '\nThe password in use at the incident may log in again.'
    : pending
      ? '\nThe password in use at the incident stays refused until it is changed (or: enable --allow-old-password).'
      : ''
  if (!was) {
    print(
      { account, action: 'enable', done: allowed, passwordAllowed: allowed },
      allowed
        ? `${account} is not disabled; its old password may log in again.`
        : `${account} is not disabled: nothing changed`,
    )
    return allowed ? EXIT.ok : EXIT.noChange
  }
  const who = actor()
  const probation = await beginProbation(store, config, account, Date.now())
  await store.audit({
    at: Date.now(),
    account,
    action: 'enable',
    actor: who,
    how: 'cli',
    ...(probation ? { reason: probation } : {}),
  })
  print(
    { account, action: 'enable', done: true, held, passwordChangePending: pending, passwordAllowed: allowed },
    `${account} enabled: flag and counters cleared.` +
      (held
        ? `\n${held} held message${held === 1 ? '' : 's'} go out within seconds: the running Haraka processes learn of the enable (at the latest at the next delivery attempt, within ${retry})`
        : '') +
      (probation ? `\nOn ${probation}.` : '') +
      passwordText,
  )
  await ctx.emit({ event: 'enabled', account, actor: who, via: 'cli' })
  return EXIT.ok
}

async function disable(ctx: Context): Promise<number> {
  const { config, store, args, values, print } = ctx
  const account = oneAccount(args, config)
  const reason = values.reason?.trim() || 'disabled by an operator'
  const who = actor()
  const incident = `manual-${Date.now().toString(36)}`
  if (!(await store.disable({ account, reason, by: who, incident }))) {
    print({ account, action: 'disable', done: false }, `${account} is disabled already: nothing changed`)
    return EXIT.noChange
  }
  await store.audit({ at: Date.now(), account, action: 'disable', actor: who, how: 'cli', reason })
  print(
    { account, action: 'disable', done: true },
    `${account} disabled: AUTH gets 535 5.7.8 and MAIL FROM 550 5.7.1 until it is enabled`,
  )
  await ctx.emit({ event: 'disabled', account, incident, reason, trigger: 'manual', actor: who, via: 'cli' })
  return EXIT.ok
}

async function reset(ctx: Context): Promise<number> {
  const { config, store, args, print } = ctx
  const account = oneAccount(args, config)
  await store.reset(account)
  await store.audit({ at: Date.now(), account, action: 'reset', actor: actor(), how: 'cli' })
  const stillDisabled = (await store.getDisabled(account)) !== null
  print(
    { account, action: 'reset', done: true, disabled: stillDisabled },
    `${account}: counters cleared${stillDisabled ? ' (it stays disabled)' : ''}`,
  )
  return EXIT.ok
}

async function audit(ctx: Context): Promise<number> {
  const { config, store, args, values, print } = ctx
  const limit = values.limit === undefined ? 50 : Number(values.limit)
  const account = args[0] === undefined ? undefined : canonicalAccount(args[0], config.accounts)
  const entries = await store.auditLog({ ...(account !== undefined ? { account } : {}), limit })
  print(entries, entries.length ? entries.map(auditLine).join('\n') : 'no audit entries')
  return EXIT.ok
}

async function dropHeld(ctx: Context): Promise<number> {
  const { config, store, args, print } = ctx
  const retry = formatDuration(config.held.retryMs)
  const account = oneAccount(args, config)
  // Only a disabled account's mail is held: a mistyped name must not throw away good mail.
  if ((await store.getDisabled(account)) === null) {
    print(
      { account, action: 'drop-held', done: false },
      `${account} is not disabled: its mail is not held, nothing dropped`,
    )
    return EXIT.noChange
  }
  const held = await store.dropHeld(account, config.held.maxHoldMs)
  const who = actor()
  await store.audit({
    at: Date.now(),
    account,
    action: 'drop-held',
    actor: who,
    how: 'cli',
    reason: `${held} held`,
  })
  print(
    { account, action: 'drop-held', done: true, held },
    `${account}: ${held} held message${held === 1 ? '' : 's'} (and any other mail it queued until now) will be discarded at the next delivery attempt (within ${retry}), without bounces`,
  )
  await ctx.emit({ event: 'held_dropped', account, held, trigger: 'drop-held', actor: who, via: 'cli' })
  return EXIT.ok
}

/** Every command: what --help lists, in this order. */
export const COMMANDS: Readonly<Record<string, Command>> = {
  list: {
    usage: '',
    help: ['disabled accounts: when, why, counts, held mail'],
    accounts: [0, 0],
    options: [],
    run: list,
  },
  show: {
    usage: 'ACCOUNT',
    help: ['one account: state, live counts against its limits,', 'last incident, evidence, held mail, recent audit'],
    accounts: [1, 1],
    options: [],
    run: show,
  },
  enable: {
    usage: 'ACCOUNT [--allow-old-password]',
    help: [
      're-enable: clear the flag and the counters; held mail goes out;',
      'the password in use at the incident stays refused unless --allow-old-password',
    ],
    accounts: [1, 1],
    options: ['allow-old-password'],
    run: enable,
  },
  disable: {
    usage: 'ACCOUNT [--reason T]',
    help: ['disable by hand (AUTH 535, MAIL FROM 550 until enabled)'],
    accounts: [1, 1],
    options: ['reason'],
    run: disable,
  },
  reset: { usage: 'ACCOUNT', help: ['clear the counters, keep the flag'], accounts: [1, 1], options: [], run: reset },
  audit: {
    usage: '[ACCOUNT] [--limit N]',
    help: ['the audit trail, newest first (default 50 entries)'],
    accounts: [0, 1],
    options: ['limit'],
    run: audit,
  },
  'drop-held': {
    usage: 'ACCOUNT',
    help: ["discard the account's held outbound mail, without bounces"],
    accounts: [1, 1],
    options: [],
    run: dropHeld,
  },
}
