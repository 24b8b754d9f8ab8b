// What a simulated sender does, as the simulator replays it: SMTP sessions at virtual times, each
// one AUTH (right or wrong password) and zero or more messages, from one client address.

/** One recipient of a message; `invalid` ones are refused 5xx at RCPT by another plugin (no such user). */
export interface SimRecipient {
  readonly address: string
  readonly invalid: boolean
}

/** One message of a session: its virtual time (ms since the epoch) and its recipients. */
export interface SimMessage {
  readonly t: number
  readonly recipients: readonly SimRecipient[]
}

/** One SMTP session: connect from `ip`, AUTH as `login`, then the messages (none for a failed AUTH). */
export interface SimSession {
  /** Virtual time of the connect and AUTH (ms since the epoch). */
  readonly t: number
  readonly login: string
  readonly ip: string
  /** false: a wrong password (spraying); the session ends after AUTH. */
  readonly password: boolean
  readonly messages: readonly SimMessage[]
}

export const MINUTE = 60_000
export const HOUR = 60 * MINUTE
export const DAY = 24 * HOUR
export const WEEK = 7 * DAY

/** The simulated month starts on Monday 5 January 2026, 00:00 UTC (office hours are UTC). */
export const EPOCH = Date.UTC(2026, 0, 5)

/** A seeded source of random numbers and the few distributions the profiles draw from. */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number
  /** A whole number from min to max, both included. */
  int(min: number, max: number): number
  /** Uniform in [min, max). */
  uniform(min: number, max: number): number
  /** Exponentially distributed with this mean. */
  exp(mean: number): number
  /** Poisson distributed with this mean (Knuth's method; means up to a few hundred). */
  poisson(mean: number): number
  chance(p: number): boolean
  pick<T>(items: readonly T[]): T
}

/** An Rng over `next` (mulberry32 from support/random.ts). */
export function rngOf(next: () => number): Rng {
  const rng: Rng = {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    uniform: (min, max) => min + next() * (max - min),
    exp: (mean) => -mean * Math.log(1 - next()),
    poisson(mean) {
      // Split large means: e^-mean underflows past ~700.
      if (mean > 500) return rng.poisson(mean / 2) + rng.poisson(mean / 2)
      const limit = Math.exp(-mean)
      let k = 0
      let p = next()
      while (p > limit) {
        k++
        p *= next()
      }
      return k
    },
    chance: (p) => next() < p,
    pick<T>(items: readonly T[]): T {
      const item = items[Math.floor(next() * items.length)]
      if (item === undefined) throw new Error('pick from an empty list')
      return item
    },
  }
  return rng
}

/** `n` times uniform in [from, from + spanMs), sorted: the arrivals of a Poisson process given their number. */
export function spread(rng: Rng, n: number, from: number, spanMs: number): number[] {
  const times: number[] = []
  for (let i = 0; i < n; i++) times.push(Math.floor(from + rng.next() * spanMs))
  return times.sort((a, b) => a - b)
}
