/**
 * Held mail: messages an account queued before it was disabled stay in Haraka's outbound queue
 * while it is disabled (send_email answers DELAY), go out once it is enabled (within seconds: an
 * enable notice from the store hands them back to outbound, see releaseWaiting; else at the next
 * [held] retry), and are discarded without a bounce when an operator drops them or after [held]
 * max_hold.
 */
import { DELAY, DENY, OK, type HarakaPlugin, type Verdict } from '../haraka'
import { NOTE, type CountNote } from './queue'
import { emitEvent } from './events'
import { logStoreDown, type GuardState } from './state'
import { errorText } from '../messages'

/** The part of Haraka's HMailItem the plugin uses. */
export interface QueuedMail {
  /** The queue file's name: the id of the message's timer in outbound's temp-fail queue. */
  filename?: string
  todo?: { uuid?: string; notes?: Record<string, unknown>; rcpt_to?: readonly unknown[] }
  /** Set by send_email when the message is to be dropped; read by get_mx and bounce. */
  hijackGuardDrop?: string
  logwarn?(...args: unknown[]): void
  lognotice?(...args: unknown[]): void
}

/**
 * The held messages this process's outbound is waiting on (send_email answered DELAY), per
 * account, so that an enable can send them at once instead of at the next [held] retry.
 */
export interface HeldMail {
  readonly waiting: Map<string, Set<QueuedMail>>
  /** Bumped by every enable notice: a check that began before one may have read a stale "disabled". */
  notices: number
  /**
   * Moves a waiting message from outbound's temp-fail queue to its delivery queue (a seam: Haraka
   * outside tests); false when it was not waiting there any more (its timer fired).
   */
  requeue: (mail: QueuedMail) => boolean
}

/** An empty HeldMail whose requeue does nothing (until the plugin sets Haraka's). */
export function newHeldMail(): HeldMail {
  return { waiting: new Map(), notices: 0, requeue: () => false }
}

/**
 * An enable notice (Store.watchEnables): the messages of `account` (of every account for null)
 * that this process holds go back to outbound's delivery queue now; send_email looks at each
 * again, so a notice for an account still disabled only holds them anew. Answers how many went.
 */
export function releaseWaiting(held: HeldMail, account: string | null, log: (line: string) => void): number {
  held.notices++
  let sent = 0
  for (const name of account === null ? [...held.waiting.keys()] : [account]) {
    const mails = held.waiting.get(name)
    if (!mails) continue
    held.waiting.delete(name)
    let mine = 0
    for (const mail of mails) if (held.requeue(mail)) mine++
    if (mine) log(`retrying ${mine} held message(s) of ${JSON.stringify(name)} now: it may have been enabled`)
    sent += mine
  }
  return sent
}

/** Notes a message send_email is about to DELAY; `notices` as they were when its check began. */
function waitFor(held: HeldMail, account: string, mail: QueuedMail, notices: number): void {
  let mails = held.waiting.get(account)
  if (!mails) held.waiting.set(account, (mails = new Set()))
  mails.add(mail)
  // An enable announced while the store was being read: look again once outbound has the timer.
  if (held.notices !== notices) setImmediate(() => releaseWaiting(held, account, () => undefined))
}

/**
 * A message whose first delivery attempt comes this soon after it was counted was counted
 * while the account was enabled; it is not looked up again (this keeps the store at two
 * round trips per message). Later attempts, the ones a queue holds, are checked.
 */
const HOLD_CHECK_AFTER_MS = 2000

/** The count note queue.ts left on a queued message, or null (not counted, or unreadable). */
export function countNote(mail: QueuedMail): CountNote | null {
  const note = mail.todo?.notes?.[NOTE] as Partial<CountNote> | undefined
  return note && typeof note.account === 'string' && typeof note.at === 'number' ? (note as CountNote) : null
}

/**
 * send_email, the part that runs for every delivery attempt: the count note of a message whose
 * account must be looked up, or null (most mail: never counted, or a first attempt a moment
 * after its count). No store call, no promise.
 */
export function holdCandidate(mail: QueuedMail, now = Date.now()): CountNote | null {
  const note = countNote(mail)
  return note && now - (note.countedAt ?? 0) >= HOLD_CHECK_AFTER_MS ? note : null
}

/** send_email for a holdCandidate: hold the message of a disabled account, or mark it for dropping. */
export async function checkHeld(
  plugin: HarakaPlugin,
  mail: QueuedMail,
  state: GuardState,
  note: CountNote,
): Promise<Verdict> {
  const { store, config } = state
  const id = String(mail.todo?.uuid ?? '')
  const held = state.process.held
  const notices = held.notices
  // In send_email the message is not waiting in outbound's temp-fail queue (any more).
  held.waiting.get(note.account)?.delete(mail)
  const retrySeconds = Math.max(1, Math.round(config.held.retryMs / 1000))
  let found
  try {
    found = await store.heldState(note.account)
  } catch (err) {
    logStoreDown(
      state,
      `store unavailable at send_email, held mail of ${JSON.stringify(note.account)} (on_store_error=${config.onStoreError}): ${errorText(err)}`,
      (line) => plugin.logerror(line),
    )
    if (config.onStoreError === 'open') return
    waitFor(held, note.account, mail, notices)
    return [DELAY, retrySeconds]
  }
  const release = (): Promise<boolean> => store.release(note.account, id).catch(() => false)
  // A queued message lives in one server's queue: the process that drops or releases it is the
  // only one that sends its event.
  const dropped = (trigger: string, reason: string): void => {
    mail.hijackGuardDrop = reason
    emitEvent(plugin, state, {
      event: 'held_dropped',
      account: note.account,
      message: id,
      trigger,
      reason,
      via: 'queue',
    })
  }
  if (found.dropBefore > 0 && note.at <= found.dropBefore) {
    dropped('drop-held', 'dropped by an operator (hijack-guard drop-held)')
    await release()
    return
  }
  if (found.disabled) {
    if (Date.now() - (note.countedAt ?? 0) > config.held.maxHoldMs) {
      dropped('max_hold', `held longer than [held] max_hold while ${JSON.stringify(note.account)} stayed disabled`)
      await release()
      return
    }
    await store
      .hold(note.account, id, config.held.maxHoldMs)
      .catch((err: unknown) => plugin.logerror(`could not note held mail: ${errorText(err)}`))
    mail.lognotice?.(
      plugin,
      `holding queued mail of disabled account ${JSON.stringify(note.account)}; next look in ${retrySeconds} s or at its enable`,
    )
    waitFor(held, note.account, mail, notices)
    return [DELAY, retrySeconds]
  }
  // A later attempt of an enabled account's message: forget it as held, if it was (also
  // across a Haraka restart, which loses everything but the queue file).
  if (await release()) {
    mail.lognotice?.(plugin, `releasing held mail of ${JSON.stringify(note.account)}: the account is enabled`)
    emitEvent(plugin, state, { event: 'held_released', account: note.account, message: id, via: 'queue' })
  }
}

/**
 * get_mx: a message marked for dropping gets no route, which leads Haraka to its bounce hook.
 * (send_email can only delay or let a message go on, so dropping takes these two steps.)
 */
export function refuseDropped(mail: QueuedMail): Verdict {
  if (mail.hijackGuardDrop) return [DENY, mail.hijackGuardDrop]
}

/** bounce: no bounce for a dropped message (its senders are forged); Haraka discards it. */
export function suppressBounce(plugin: HarakaPlugin, mail: QueuedMail): Verdict {
  if (!mail.hijackGuardDrop) return
  mail.logwarn?.(plugin, `discarded queued mail without a bounce: ${mail.hijackGuardDrop}`)
  return [OK]
}
