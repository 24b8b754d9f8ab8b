/**
 * The memory store's failed-AUTH windows (password spraying): per account, the times of its
 * recent failures, the client addresses they came from and whether the window has alerted. The
 * same semantics as the Redis AUTH_FAILURE script, in this process's memory only.
 */
import { AUTH_SOURCES_CAP, type AuthFailureInput, type AuthFailureResult } from '..'

interface Window {
  /** Failure times, oldest first, at most `max`. */
  times: number[]
  /** Address -> time of its last failure. */
  sources: Map<string, number>
  /** Until when the limit has alerted (0: not in this window). */
  alertedUntil: number
  /** When the whole entry may be forgotten. */
  expiresAt: number
}

export interface AuthFailures {
  record(input: AuthFailureInput, now: number): AuthFailureResult
  clear(): void
}

const SWEEP_EVERY = 1000

export function createAuthFailures(): AuthFailures {
  const windows = new Map<string, Window>()
  let sinceSweep = 0
  return {
    record(input: AuthFailureInput, now: number): AuthFailureResult {
      if (++sinceSweep >= SWEEP_EVERY) {
        sinceSweep = 0
        for (const [account, w] of windows) if (w.expiresAt <= now) windows.delete(account)
      }
      let w = windows.get(input.account)
      if (!w || w.expiresAt <= now) {
        w = { times: [], sources: new Map(), alertedUntil: 0, expiresAt: 0 }
        windows.set(input.account, w)
      }
      const since = now - input.windowMs
      w.times = w.times.filter((t) => t > since)
      w.times.push(now)
      if (w.times.length > input.max) w.times.splice(0, w.times.length - input.max)
      for (const [source, t] of w.sources) if (t <= since) w.sources.delete(source)
      if (w.sources.has(input.source) || w.sources.size < AUTH_SOURCES_CAP) w.sources.set(input.source, now)
      w.expiresAt = now + input.windowMs
      const count = w.times.length
      let alert = false
      if (count >= input.max && w.alertedUntil <= now) {
        w.alertedUntil = now + input.windowMs
        alert = true
      }
      return {
        count,
        reached: count >= input.max,
        alert,
        sources: [...w.sources.keys()].sort(),
        until: (w.times[0] ?? now) + input.windowMs,
        at: now,
      }
    },
    clear: () => windows.clear(),
  }
}
