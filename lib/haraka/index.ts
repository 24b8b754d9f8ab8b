/**
 * The typed facade: the few Haraka shapes the plugin uses, the return codes, and the adapter
 * that turns an async hook body into a Haraka hook (this folder: the facade and the type
 * declarations of the Haraka modules the plugin imports, modules.d.ts).
 */
import * as constants from 'haraka-constants'
import DSN from 'haraka-dsn'

export { DSN }

export const CONT = constants.cont
export const OK = constants.ok
export const DENY = constants.deny
export const DENYSOFT = constants.denysoft
export const DENYDISCONNECT = constants.denydisconnect
export const DELAY = constants.delay

/** What Haraka's `next` takes: a return code and an optional message, DSN or DELAY seconds. */
export type Next = (code?: number, msg?: string | DSN | number) => void

/** A hook's decision: nothing (CONT), or a code with its message. */
export type Verdict = void | readonly [code: number, msg?: string | DSN | number]

export interface Logging {
  logdebug(...args: unknown[]): void
  loginfo(...args: unknown[]): void
  lognotice(...args: unknown[]): void
  logwarn(...args: unknown[]): void
  logerror(...args: unknown[]): void
  logcrit(...args: unknown[]): void
}

export interface Results {
  add(plugin: unknown, result: Record<string, unknown>): void
}

export interface Address {
  user?: string | null
  host?: string | null
}

/** "user@host" of an envelope address; '' for the null sender. */
export function envelopeAddress(a: Address | null | undefined): string {
  if (!a?.user) return ''
  return a.host ? `${a.user}@${a.host}` : a.user
}

export interface Transaction {
  uuid: string
  notes: Record<string, unknown>
  rcpt_to: Address[]
  mail_from?: Address
  results: Results
  header: { get(name: string): string; get_decoded(name: string): string }
}

export interface Connection extends Logging {
  uuid: string
  notes: Record<string, unknown>
  remote: { ip?: string; host?: string; login?: string }
  hello: { host?: string; verb?: string }
  relaying: boolean
  transaction?: Transaction | null
  results: Results
}

export interface ConfigGetter {
  get(name: string, type?: unknown, cb?: () => void): unknown
}

/** Haraka's Plugin object as `this` in every hook. */
export interface HarakaPlugin extends Logging {
  name: string
  config: ConfigGetter
  register_hook(hook: string, method: string, priority?: number): void
  haraka_require(module: string): unknown
}

/** Haraka's password-check callback, as auth_base passes it. */
export type PasswdCallback = (valid: boolean, opts?: { code: number; message: string } | string) => void

/** The shape of auth_base's check_plain_passwd / check_cram_md5_passwd. */
export type PasswdCheck = (
  this: unknown,
  connection: Connection,
  user: string,
  passwd: string,
  cb: PasswdCallback,
) => void

/** Haraka's outbound module, as far as the plugin uses it. */
interface Outbound {
  send_email(
    from: string,
    to: string[],
    contents: string,
    next: (code: number, msg?: string) => void,
    options: Record<string, unknown>,
  ): void
}

/**
 * A MailSender on Haraka's outbound queue. Resolves when the message is queued. Passes
 * `skip_plugins: []` with the notes, without which outbound throws once any plugin hooks
 * pre_send_trans_email.
 */
export function outboundSender(
  plugin: HarakaPlugin,
): (mail: { from: string; to: readonly string[]; message: string }) => Promise<void> {
  return (mail) =>
    new Promise((resolve, reject) => {
      try {
        const outbound = plugin.haraka_require('outbound') as Outbound
        outbound.send_email(
          mail.from,
          [...mail.to],
          mail.message,
          (code, msg) =>
            code === OK
              ? resolve()
              : reject(new Error(`outbound answered ${constants.translate(code)}: ${String(msg ?? '')}`)),
          { notes: { skip_plugins: [] } },
        )
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)))
      }
    })
}

/** Haraka's outbound queues (3.3.4), as far as sending a held message now uses them. */
interface OutboundQueues {
  /** Delayed messages by queue file name; discard throws when the name is not waiting there. */
  temp_fail_queue: { discard(id: string): unknown }
  delivery_queue: { push(mail: unknown): void }
}

/**
 * Moves a message that send_email delayed out of this process's temp-fail queue into its
 * delivery queue, as its timer would have done; false when it is no longer waiting (its timer
 * fired, or it is being sent). Each Haraka process (each cluster worker) holds its own delayed
 * messages, so each does this for its own.
 */
export function outboundRequeue(plugin: HarakaPlugin): (mail: { filename?: string }) => boolean {
  return (mail) => {
    if (!mail.filename) return false
    let outbound: OutboundQueues
    try {
      outbound = plugin.haraka_require('outbound') as OutboundQueues
      outbound.temp_fail_queue.discard(mail.filename)
    } catch {
      return false
    }
    outbound.delivery_queue.push(mail)
    return true
  }
}

/** The plugins registered in this Haraka process, by name. */
export function registeredPlugins(plugin: HarakaPlugin): Record<string, Record<string, unknown>> {
  try {
    const plugins = plugin.haraka_require('plugins') as
      { registered_plugins?: Record<string, Record<string, unknown>> } | undefined
    return plugins?.registered_plugins ?? {}
  } catch {
    return {}
  }
}

/** Calls `next` with a verdict: nothing for CONT, else its code and message. */
export function answer(next: Next, verdict: Verdict): void {
  if (verdict) next(verdict[0], verdict[1])
  else next()
}

/**
 * Adapts an async body to a Haraka hook that calls `next` exactly once. Haraka does not catch
 * a rejected promise (it would end the process), so an unexpected error, thrown or rejected, is
 * logged and answered with `onError`'s verdict (CONT when there is none); an `onError` that
 * throws answers 451, since it stands for a closed policy. A body that decides without waiting
 * (returns a verdict, not a promise) is answered at once: no promise and no closure per call.
 * A hook that never waits and has no `onError` needs no adapter: a plain function calling
 * `answer` does the same, since Haraka logs a synchronous throw and continues.
 */
export function asHook<P extends HarakaPlugin, A extends unknown[]>(
  body: (this: P, ...args: A) => Verdict | Promise<Verdict>,
  onError?: (this: P) => Verdict,
): (this: P, next: Next, ...args: A) => void {
  return function (this: P, next: Next, ...args: A): void {
    let work: Verdict | Promise<Verdict>
    try {
      work = body.apply(this, args)
    } catch (err) {
      answerError(this, next, onError, err)
      return
    }
    if (!(work instanceof Promise)) {
      answer(next, work)
      return
    }
    // A promise settles once and calls one of the two: next runs exactly once.
    work.then(
      (verdict) => answer(next, verdict),
      (err: unknown) => answerError(this, next, onError, err),
    )
  }
}

/** Logs an unexpected error of a hook body and answers `onError`'s verdict (451 when it throws too). */
function answerError<P extends HarakaPlugin>(
  plugin: P,
  next: Next,
  onError: ((this: P) => Verdict) | undefined,
  err: unknown,
): void {
  let verdict: Verdict
  try {
    verdict = onError?.call(plugin)
  } catch {
    verdict = [DENYSOFT, DSN.sys_unspecified('Temporary local problem; please try again later', 451)]
  }
  const what = verdict ? `answering ${constants.translate(verdict[0])}` : 'letting the message pass'
  try {
    plugin.logcrit(`unexpected error, ${what}: ${(err as Error)?.stack ?? String(err)}`)
  } finally {
    answer(next, verdict)
  }
}
