/**
 * Rate-limited logging of one kind of repeated failure ("store unavailable"): the first failure
 * of an outage is logged in full, then at most one summary line per window with the number of
 * failures not logged. A window without failures ends the outage: the next failure is logged
 * in full again.
 */

export interface FailureLogOptions {
  /** What the summary says, e.g. "store unavailable". */
  readonly what: string
  /** Length of a summary window in ms (default 60 s). */
  readonly windowMs?: number
  /** Milliseconds since the epoch; injectable for tests. */
  readonly now?: () => number
  /** Runs `fn` after `ms` (default: an unref'd setTimeout); injectable for tests. */
  readonly schedule?: (fn: () => void, ms: number) => void
}

/** Where a line goes: the first failure and the summaries are errors. */
export type FailureLine = (line: string) => void

export interface FailureLog {
  /**
   * Notes one failure. Returns true when `text` was logged (through `log`), false when it was
   * counted for the next summary instead.
   */
  failure(text: string, log: FailureLine): boolean
  /** Failures counted and not logged yet in the current window. */
  readonly suppressed: number
}

const DEFAULT_WINDOW_MS = 60_000

function defaultSchedule(fn: () => void, ms: number): void {
  setTimeout(fn, ms).unref()
}

/** A FailureLog; summaries go to the `log` of the latest failure. */
export function createFailureLog(options: FailureLogOptions): FailureLog {
  const windowMs = options.windowMs ?? DEFAULT_WINDOW_MS
  const now = options.now ?? Date.now
  const schedule = options.schedule ?? defaultSchedule
  /** Start of the current window, or null when no outage is going on. */
  let windowStart: number | null = null
  let suppressed = 0
  let lastText = ''
  let lastLog: FailureLine = () => undefined
  /** Names the current window's timer: a timer of an earlier window does nothing. */
  let generation = 0

  function startWindow(t: number): void {
    windowStart = t
    const mine = ++generation
    const tick = (): void => {
      if (mine !== generation || windowStart === null) return
      const left = windowStart + windowMs - now()
      if (left > 0) schedule(tick, left)
      else closeWindow()
    }
    schedule(tick, windowMs)
  }

  /** Ends a window that is over: a summary if it counted failures, else the outage ends. */
  function closeWindow(): void {
    if (windowStart === null) return
    const t = now()
    if (t - windowStart < windowMs) return
    if (suppressed === 0) {
      windowStart = null
      generation++
      return
    }
    const seconds = Math.round((t - windowStart) / 1000)
    lastLog(
      `${options.what}: ${suppressed} more failure${suppressed === 1 ? '' : 's'} in the last ${seconds} s (last: ${lastText})`,
    )
    suppressed = 0
    startWindow(t)
  }

  return {
    failure(text, log) {
      lastText = text
      lastLog = log
      // The timer may be late (or injected and never run): a window that is over ends here.
      closeWindow()
      if (windowStart === null) {
        log(text)
        startWindow(now())
        return true
      }
      suppressed++
      return false
    },
    get suppressed() {
      return suppressed
    },
  }
}
