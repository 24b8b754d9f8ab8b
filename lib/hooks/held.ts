/**
 * Held mail: messages an account queued before it was disabled stay in Haraka's outbound queue
 * while it is disabled (send_email answers DELAY), go out once it is enabled, and are discarded
 * without a bounce when an operator drops them or after [held] max_hold.
 */
import { DELAY, DENY, OK, type HarakaPlugin, type Verdict } from '../haraka'
import { NOTE, type CountNote } from './queue'
import { logStoreDown, type GuardState } from './state'
import { errorText } from '../messages'

/** The part of Haraka's HMailItem the plugin uses. */
export interface QueuedMail {
  todo?: { uuid?: string; notes?: Record<string, unknown>; rcpt_to?: readonly unknown[] }
  /** Set by send_email when the message is to be dropped; read by get_mx and bounce. */
  hijackGuardDrop?: string
  logwarn?(...args: unknown[]): void
  lognotice?(...args: unknown[]): void
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
  const retrySeconds = Math.max(1, Math.round(config.held.retryMs / 1000))
  let held
  try {
    held = await store.heldState(note.account)
  } catch (err) {
    logStoreDown(
      state,
      `store unavailable at send_email, held mail of ${JSON.stringify(note.account)} (on_store_error=${config.onStoreError}): ${errorText(err)}`,
      (line) => plugin.logerror(line),
    )
    return config.onStoreError === 'closed' ? [DELAY, retrySeconds] : undefined
  }
  const release = (): Promise<boolean> => store.release(note.account, id).catch(() => false)
  if (held.dropBefore > 0 && note.at <= held.dropBefore) {
    mail.hijackGuardDrop = 'dropped by an operator (hijack-guard drop-held)'
    await release()
    return
  }
  if (held.disabled) {
    if (Date.now() - (note.countedAt ?? 0) > config.held.maxHoldMs) {
      mail.hijackGuardDrop = `held longer than [held] max_hold while ${JSON.stringify(note.account)} stayed disabled`
      await release()
      return
    }
    await store
      .hold(note.account, id, config.held.maxHoldMs)
      .catch((err: unknown) => plugin.logerror(`could not note held mail: ${errorText(err)}`))
    mail.lognotice?.(
      plugin,
      `holding queued mail of disabled account ${JSON.stringify(note.account)}; next look in ${retrySeconds} s`,
    )
    return [DELAY, retrySeconds]
  }
  // A later attempt of an enabled account's message: forget it as held, if it was (also
  // across a Haraka restart, which loses everything but the queue file).
  if (await release())
    mail.lognotice?.(plugin, `releasing held mail of ${JSON.stringify(note.account)}: the account is enabled`)
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
