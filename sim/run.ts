// The replay engine: the compiled plugin (dist/) loaded through haraka-test-fixtures
// (support/plugin.ts), its hooks called the way Haraka calls them, session by session, in the
// order of their virtual times. Only the plugin decides: the answers at AUTH, MAIL FROM, RCPT and
// queue_outbound, the disabled flag in its store, and the mail it sends (alerts, warnings).

import { Address } from '@haraka/email-address'
import * as constants from 'haraka-constants'
import * as fixtures from 'haraka-test-fixtures'
import type { FixtureConnection } from 'haraka-test-fixtures'
import type { OutgoingMail } from '../lib/alert'
import type { Next, PasswdCallback } from '../lib/haraka'
import type { Store } from '../lib/store'
import { callHook, makeGuard, replyText, type Guard, type HookOutcome } from '../support/plugin'
import type { SimSession } from './events'

/** The plugin, its store (as the plugin sees it, and unwrapped for the simulator's own checks) and its mail. */
export interface SimPlugin {
  readonly guard: Guard
  /** The store behind the seam, for the simulator's own look-ups (not part of what the plugin did). */
  readonly probe: Store
  /** Waits for the store calls the plugin left running (an alert's audit entry, a disable's file write). */
  settle(): Promise<void>
}

/** The stand-in auth plugin (an auth_base descendant as the plugin wraps it): the password "right" is right. */
interface SimAuth {
  check_plain_passwd(connection: unknown, user: string, passwd: string, cb: PasswdCallback): void
}

/**
 * The compiled plugin reading `ini` (over the shipped defaults), with `store` at its seam, its
 * AUTH wrapper put on a stand-in auth plugin (hook_init_master), and the mail it sends recorded.
 */
export async function openPlugin(ini: string, store: Store): Promise<SimPlugin & { auth: SimAuth }> {
  const inflight = new Set<Promise<unknown>>()
  const tracked = new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver) as unknown
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        const result = (value as (...a: unknown[]) => unknown).apply(target, args)
        if (result instanceof Promise) {
          inflight.add(result)
          const done = (): boolean => inflight.delete(result)
          result.then(done, done)
        }
        return result
      }
    },
  })
  const guard = makeGuard(ini, { store: tracked })
  const auth: SimAuth = {
    check_plain_passwd(_connection, _user, passwd, cb) {
      cb(passwd === 'right')
    },
  }
  guard.plugin.haraka_require = () => ({ registered_plugins: { 'auth/flat_file': auth, 'hijack-guard': guard.plugin } })
  const init = await callHook(guard.plugin, 'hook_init_master', {})
  if (init.rc !== undefined) throw new Error(`the plugin did not start: ${replyText(init.msg)}`)
  return {
    guard,
    probe: store,
    auth,
    async settle() {
      while (inflight.size > 0) await Promise.allSettled([...inflight])
    },
  }
}

/** What the plugin answered one step of a session; the trace the Redis cross-check compares. */
export type Step =
  | { readonly kind: 'auth'; readonly login: string; readonly valid: boolean; readonly code?: number }
  | {
      readonly kind: 'message'
      readonly login: string
      /** Where the message stopped: 'queued' when it was accepted. */
      readonly stage: 'session' | 'mail' | 'rcpt' | 'queue' | 'queued'
      /** The return codes of MAIL FROM, each RCPT and queue_outbound (undefined = CONT). */
      readonly codes: readonly (number | undefined)[]
    }

/** What happened to one account over a replay. */
export interface AccountStats {
  /** Messages the sender tried to send, and those the plugin let through to the queue. */
  attempted: number
  accepted: number
  /** Messages accepted before the account was disabled; all of them when it never was. */
  acceptedBeforeDisable: number
  refused: { auth: number; mail: number; rcpt: number; queue: number }
  /** Recipients refused by the plugin (over max_recipients_per_message). */
  recipientsRefused: number
  /** Invalid recipients refused by "another plugin" (the simulated 5xx). */
  invalidRecipients: number
  authAttempts: number
  authFailures: number
  /** Virtual time (ms) the simulator first saw the account disabled; null when never. */
  disabledAt: number | null
  /** Failed AUTHs of this login when its first spraying alert was sent; null when none was. */
  failuresAtSprayAlert: number | null
  sprayAlertAt: number | null
  /** Mail the plugin sent naming this account, by kind. */
  mails: { disable: number; spray: number; monitor: number; warning: number }
}

const emptyStats = (): AccountStats => ({
  attempted: 0,
  accepted: 0,
  acceptedBeforeDisable: 0,
  refused: { auth: 0, mail: 0, rcpt: 0, queue: 0 },
  recipientsRefused: 0,
  invalidRecipients: 0,
  authAttempts: 0,
  authFailures: 0,
  disabledAt: null,
  failuresAtSprayAlert: null,
  sprayAlertAt: null,
  mails: { disable: 0, spray: 0, monitor: 0, warning: 0 },
})

export type MailKind = keyof AccountStats['mails']

/** What kind of mail the plugin sent: the disable alert, the spraying alert, a monitor report, or a warning. */
export function mailKind(mail: OutgoingMail): MailKind {
  const subject = /^Subject: (.*)$/m.exec(mail.message)?.[1] ?? ''
  if (/^Password spraying against /.test(subject) || /^Monitor: Password spraying/.test(subject)) return 'spray'
  if (/^Monitor: /.test(subject)) return 'monitor'
  if (/^Account \S+ disabled: /.test(subject)) return 'disable'
  return 'warning'
}

export interface ReplayOptions {
  /** Moves time to `t` (virtual ms) before a step: the virtual clock, or a real-time wait. */
  advance(t: number): void | Promise<void>
  /** Stop replaying an account's sessions once it is disabled (hijack profiles). */
  readonly stopAtDisable: boolean
  /** Every step's answer, in order (for the Redis cross-check). */
  readonly trace?: Step[]
}

interface LiveSession {
  readonly session: SimSession
  readonly connection: FixtureConnection
  authed: boolean
  /** Hung up: by the client after a failed AUTH, or by the plugin (DENYDISCONNECT). */
  closed: boolean
}

const REFUSED = new Set([constants.deny, constants.denysoft, constants.denydisconnect, constants.denysoftdisconnect])
const DISCONNECT = new Set([constants.denydisconnect, constants.denysoftdisconnect])
const refused = (o: HookOutcome): boolean => o.rc !== undefined && REFUSED.has(o.rc)

/**
 * Replays `sessions` through the plugin, step by step in time order (a session's AUTH, then each
 * of its messages at its own time; sessions overlap as parallel SMTP sessions do), and returns
 * what happened to each login.
 */
export async function replay(
  sim: SimPlugin & { auth: SimAuth },
  streams: readonly Iterable<SimSession>[],
  options: ReplayOptions,
): Promise<Replayed> {
  const stats = new Map<string, AccountStats>()
  const statsOf = (login: string): AccountStats => {
    let s = stats.get(login)
    if (!s) {
      s = emptyStats()
      stats.set(login, s)
    }
    return s
  }
  // Steps in time order: each stream's next session waits in the queue; a session's start brings
  // its messages in, and the next session of its stream (read lazily, so a stream that stops
  // at a disable is never generated further).
  const queue = new StepQueue()
  const iterators = streams.map((stream) => stream[Symbol.iterator]())
  const pull = (i: number): void => {
    const r = iterators[i]?.next()
    if (r && !r.done) {
      statsOf(r.value.login)
      queue.push({ t: r.value.t, session: r.value, index: -1, stream: i })
    }
  }
  iterators.forEach((_, i) => pull(i))
  const logins = [...stats.keys()]
  const steps = queue.drain()

  const live = new Map<SimSession, LiveSession>()
  let mailsSeen = 0
  const sent = sim.guard.sent

  /** Takes in the mail the plugin sent since the last look, and notes a disable. */
  const look = async (login: string, t: number, force: boolean): Promise<void> => {
    await sim.settle()
    const fresh = sent.length > mailsSeen
    for (; mailsSeen < sent.length; mailsSeen++) {
      const mail = sent[mailsSeen] as OutgoingMail
      const kind = mailKind(mail)
      for (const l of logins) {
        if (!mail.message.includes(l)) continue
        const s = statsOf(l)
        s.mails[kind]++
        if (kind === 'spray' && s.failuresAtSprayAlert === null) {
          s.failuresAtSprayAlert = s.authFailures
          s.sprayAlertAt = t
        }
      }
    }
    const s = statsOf(login)
    if (s.disabledAt === null && (force || fresh) && (await sim.probe.getDisabled(login.toLowerCase())) !== null) {
      s.disabledAt = t
    }
  }

  let first: number | null = null
  let last = 0
  for (const step of steps) {
    const { session } = step
    const s = statsOf(session.login)
    if (options.stopAtDisable && s.disabledAt !== null) continue
    await options.advance(step.t)
    first ??= step.t
    last = step.t
    if (step.index < 0) {
      pull(step.stream)
      session.messages.forEach((m, index) => queue.push({ t: m.t, session, index, stream: step.stream }))
      const connection = fixtures.makeConnection({ ip: session.ip, helo: 'client.example', silent: true })
      const l: LiveSession = { session, connection, authed: false, closed: false }
      live.set(session, l)
      s.authAttempts++
      const answer = await authenticate(sim.auth, connection, session.login, session.password ? 'right' : 'wrong')
      options.trace?.push({
        kind: 'auth',
        login: session.login,
        valid: answer.valid,
        ...(answer.code === undefined ? {} : { code: answer.code }),
      })
      if (answer.valid) {
        connection.notes.auth_user = session.login
        connection.relaying = true
        l.authed = true
      } else {
        s.authFailures++
        l.closed = true
      }
      if (session.messages.length === 0) live.delete(session)
      await look(session.login, step.t, !answer.valid && session.password)
      continue
    }
    const l = live.get(session)
    if (!l) continue
    if (step.index === session.messages.length - 1) live.delete(session)
    const message = session.messages[step.index]
    if (!message) continue
    s.attempted++
    if (l.closed || !l.authed) {
      s.refused.auth++
      options.trace?.push({ kind: 'message', login: session.login, stage: 'session', codes: [] })
      continue
    }
    const outcome = await sendMessage(sim, l, message.recipients)
    options.trace?.push({ kind: 'message', login: session.login, stage: outcome.stage, codes: outcome.codes })
    s.recipientsRefused += outcome.recipientsRefused
    s.invalidRecipients += outcome.invalid
    if (outcome.stage === 'queued') {
      s.accepted++
      if (s.disabledAt === null) s.acceptedBeforeDisable++
    } else {
      s.refused[outcome.stage]++
    }
    await look(session.login, step.t, outcome.stage !== 'queued' || outcome.invalid > 0)
  }
  return { stats, first: first ?? 0, last }
}

/** What a replay found: per login, and the virtual times of its first and last step. */
export interface Replayed {
  readonly stats: Map<string, AccountStats>
  readonly first: number
  readonly last: number
}

/** One step: a session's start (index -1: connect and AUTH) or one of its messages. */
interface QueuedStep {
  readonly t: number
  readonly session: SimSession
  readonly index: number
  readonly stream: number
  seq?: number
}

/** A binary heap of steps by time, then by the order they were pushed; drain() yields them in order. */
class StepQueue {
  readonly #heap: QueuedStep[] = []
  #seq = 0

  push(step: QueuedStep): void {
    step.seq = this.#seq++
    const h = this.#heap
    h.push(step)
    for (let i = h.length - 1; i > 0;) {
      const parent = (i - 1) >> 1
      if (!before(h[i] as QueuedStep, h[parent] as QueuedStep)) break
      ;[h[i], h[parent]] = [h[parent] as QueuedStep, h[i] as QueuedStep]
      i = parent
    }
  }

  *drain(): Generator<QueuedStep> {
    const h = this.#heap
    while (h.length > 0) {
      const top = h[0] as QueuedStep
      const last = h.pop() as QueuedStep
      if (h.length > 0) {
        h[0] = last
        for (let i = 0; ;) {
          const l = 2 * i + 1
          const r = l + 1
          let m = i
          if (l < h.length && before(h[l] as QueuedStep, h[m] as QueuedStep)) m = l
          if (r < h.length && before(h[r] as QueuedStep, h[m] as QueuedStep)) m = r
          if (m === i) break
          ;[h[i], h[m]] = [h[m] as QueuedStep, h[i] as QueuedStep]
          i = m
        }
      }
      yield top
    }
  }
}

const before = (a: QueuedStep, b: QueuedStep): boolean => a.t < b.t || (a.t === b.t && (a.seq ?? 0) < (b.seq ?? 0))

/** AUTH through the wrapped password check, as auth_base calls it. */
function authenticate(
  auth: SimAuth,
  connection: FixtureConnection,
  login: string,
  password: string,
): Promise<{ valid: boolean; code?: number }> {
  return new Promise((resolve) => {
    auth.check_plain_passwd(connection, login, password, (valid, opts) => {
      resolve(typeof opts === 'object' ? { valid, code: opts.code } : valid ? { valid } : { valid, code: 535 })
    })
  })
}

interface MessageOutcome {
  readonly stage: 'mail' | 'rcpt' | 'queue' | 'queued'
  readonly codes: (number | undefined)[]
  readonly recipientsRefused: number
  readonly invalid: number
}

/**
 * One transaction as Haraka runs it: MAIL FROM; each RCPT appended to rcpt_to, the plugin's rcpt
 * hook, then for an invalid address another plugin's 5xx (the deny hooks run, as Haraka runs them
 * for every DENY) and the recipient dropped; queue_outbound when a recipient is left.
 */
async function sendMessage(
  sim: SimPlugin,
  l: LiveSession,
  recipients: SimMessage['recipients'],
): Promise<MessageOutcome> {
  const { plugin } = sim.guard
  const c = l.connection as FixtureConnection & TransactionMethods
  const codes: (number | undefined)[] = []
  c.init_transaction()
  const txn = c.transaction
  if (!txn) throw new Error('no transaction')
  try {
    txn.mail_from = new Address(`<${l.session.login}>`)
    const mail = await callHook(plugin, 'hook_mail', c, [txn.mail_from, []])
    codes.push(mail.rc)
    if (refused(mail)) {
      if (mail.rc !== undefined && DISCONNECT.has(mail.rc)) l.closed = true
      return { stage: 'mail', codes, recipientsRefused: 0, invalid: 0 }
    }
    let recipientsRefused = 0
    let invalid = 0
    for (const r of recipients) {
      const recipient = new Address(`<${r.address}>`)
      txn.rcpt_to.push(recipient)
      const answer = await callHook(plugin, 'check_rcpt', c, [recipient, []])
      codes.push(answer.rc)
      if (refused(answer)) {
        txn.rcpt_to.pop()
        recipientsRefused++
        if (answer.rc !== undefined && DISCONNECT.has(answer.rc)) {
          l.closed = true
          return { stage: 'rcpt', codes, recipientsRefused, invalid }
        }
        continue
      }
      if (r.invalid) {
        invalid++
        await denyHooks(sim, c, recipient)
        txn.rcpt_to.pop()
      }
    }
    if (txn.rcpt_to.length === 0) return { stage: 'rcpt', codes, recipientsRefused, invalid }
    const queued = await callHook(plugin, 'count_message', c)
    codes.push(queued.rc)
    return { stage: refused(queued) ? 'queue' : 'queued', codes, recipientsRefused, invalid }
  } finally {
    c.reset_transaction()
  }
}

type SimMessage = SimSession['messages'][number]

/** The fixtures connection's transaction methods (Haraka's own names). */
interface TransactionMethods {
  init_transaction(): void
  reset_transaction(): void
}

/**
 * What Haraka does when a later rcpt plugin answers 550 (no such user): it runs every deny hook
 * with [retval, msg, plugin name, method, hook params, hook name]. The plugin's deny handlers are
 * hook_deny and whatever it registered for 'deny'; none today means the signal is not there yet.
 */
async function denyHooks(sim: SimPlugin, c: FixtureConnection, recipient: Address): Promise<void> {
  const { plugin } = sim.guard
  const hooks = plugin.hooks as Record<string, string[] | undefined> | undefined
  const methods = new Set([...(typeof plugin.hook_deny === 'function' ? ['hook_deny'] : []), ...(hooks?.deny ?? [])])
  const params = [
    constants.deny,
    `5.1.1 <${recipient.address}>: no such user`,
    'rcpt_to.directory',
    'hook_rcpt',
    [recipient, []],
    'rcpt',
  ]
  for (const method of methods) {
    const hook = plugin[method]
    if (typeof hook !== 'function') continue
    await new Promise<void>((resolve) => {
      const next: Next = () => resolve()
      ;(hook as (next: Next, ...rest: unknown[]) => void).call(plugin, next, c, params)
    })
  }
}
