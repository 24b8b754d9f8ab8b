// The sending profiles the simulator replays: how real users send (legit) and how hijacked
// accounts are abused (hijack). Parameters and their sources: docs/detection.md. Every profile
// draws from its own seeded generator, so a run is reproducible with --seed.

import {
  DAY,
  EPOCH,
  HOUR,
  MINUTE,
  spread,
  type Rng,
  type SimMessage,
  type SimRecipient,
  type SimSession,
  rngOf,
} from './events'
import { random } from '../support/random'

export type ProfileKind = 'legit' | 'hijack'

/** How big a run is: the full run or --quick. */
export interface RunSize {
  readonly quick: boolean
  /** Days the legitimate profiles are simulated. */
  readonly legitDays: number
  /** How long a hijack profile runs when nothing stops it. */
  readonly hijackCapMs: number
}

/**
 * What a profile generates: one stream of sessions per account, each in time order (a hijack's is
 * lazy: it is read only until the account is disabled), and for hijacks when the abuse started.
 */
export interface Generated {
  readonly streams: Iterable<SimSession>[]
  readonly starts: ReadonlyMap<string, number>
}

/** Every account's sessions, sorted into one stream per account. */
function byAccount(sessions: readonly SimSession[]): Iterable<SimSession>[] {
  const streams = new Map<string, SimSession[]>()
  for (const s of sessions) {
    const list = streams.get(s.login) ?? []
    list.push(s)
    streams.set(s.login, list)
  }
  return [...streams.values()].map((list) => list.sort((a, b) => a.t - b.t))
}

/** A generator of its own for each account, seeded from the profile's: one account's draws never shift another's. */
const accountRng = (rng: Rng): Rng => rngOf(random(rng.int(0, 0x7fffffff)))

export interface Profile {
  readonly name: string
  readonly kind: ProfileKind
  /** One line for the report. */
  readonly summary: string
  /** The accounts of the profile (users, hijacked accounts, or the logins sprayed). */
  logins(size: RunSize): string[]
  /** Config appended after the shipped defaults (e.g. an [account:LOGIN] override). */
  ini?(logins: readonly string[]): string
  generate(rng: Rng, logins: readonly string[], size: RunSize): Generated
}

/** Hands out distinct /24 networks (10.a.b.0/24) and addresses in them: strings only, no traffic. */
export class Networks {
  #next = 0
  readonly #base: number
  /** `owner`: a name that gives this allocator a range of its own (a hijacked account's botnet). */
  constructor(
    private readonly rng: Rng,
    owner = '',
  ) {
    let h = 0
    for (const ch of owner) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0
    this.#base = owner === '' ? 0 : (h % 255) * 256
  }
  /** A /24 prefix ("10.a.b") no other call of this object returned. */
  fresh(): string {
    const n = this.#base + this.#next++
    return `10.${Math.floor(n / 256) % 256}.${n % 256}`
  }
  /** An address in the network `prefix`. */
  address(prefix: string): string {
    return `${prefix}.${this.rng.int(1, 254)}`
  }
}

const isWorkingDay = (day: number): boolean => day % 7 < 5

function recipients(rng: Rng, n: number, pInvalid: number, domain: string): SimRecipient[] {
  const out: SimRecipient[] = []
  for (let i = 0; i < n; i++) {
    const invalid = rng.chance(pInvalid)
    out.push({
      address: `${invalid ? 'nosuchuser' : 'user'}${rng.int(1, 99_999)}@${domain}${rng.int(1, 500)}.example`,
      invalid,
    })
  }
  return out
}

const one = (t: number, rcpts: SimRecipient[]): SimMessage[] => [{ t, recipients: rcpts }]

const logins = (prefix: string, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i + 1).padStart(2, '0')}@example.com`)

/** Legitimate recipients: 1-3 per message, 1 % of them mistyped or gone (refused 5xx at RCPT). */
const LEGIT_INVALID = 0.01

/**
 * An office day: Poisson arrivals over 9 hours from about 08:00, 1-3 recipients each; the office
 * network, and on about half the days a second one (home, or the phone's carrier) for some messages.
 */
function officeDay(
  rng: Rng,
  day: number,
  login: string,
  perDay: number,
  nets: { office: string; home: string; carriers: readonly string[] },
  networks: Networks,
): SimSession[] {
  const dayStart = EPOCH + day * DAY
  if (!isWorkingDay(day)) {
    return spread(rng, rng.poisson(2), dayStart + 10 * HOUR, 10 * HOUR).map((t) => ({
      t,
      login,
      ip: networks.address(nets.home),
      password: true,
      messages: one(t, recipients(rng, rng.int(1, 3), LEGIT_INVALID, 'partner')),
    }))
  }
  const second = rng.chance(0.5) ? (rng.chance(0.5) ? nets.home : rng.pick(nets.carriers)) : null
  const from = dayStart + 8 * HOUR + rng.uniform(0, HOUR)
  return spread(rng, rng.poisson(perDay), from, 9 * HOUR).map((t) => {
    const net = second !== null && rng.chance(0.2) ? second : nets.office
    return {
      t,
      login,
      ip: networks.address(net),
      password: true,
      messages: one(t, recipients(rng, rng.int(1, 3), LEGIT_INVALID, 'partner')),
    }
  })
}

/** A shared office network, a home network per user, and a few carrier networks phones go out from. */
function officeNets(networks: Networks, users: number): { office: string; homes: string[]; carriers: string[] } {
  return {
    office: networks.fresh(),
    homes: Array.from({ length: users }, () => networks.fresh()),
    carriers: Array.from({ length: 8 }, () => networks.fresh()),
  }
}

function officeUsers(rng: Rng, users: readonly string[], size: RunSize, extra?: typeof burstsOf): Generated {
  const networks = new Networks(rng)
  const nets = officeNets(networks, users.length)
  const sessions: SimSession[] = []
  users.forEach((login, u) => {
    const perDay = rng.uniform(30, 40)
    const home = nets.homes[u] ?? nets.office
    for (let day = 0; day < size.legitDays; day++) {
      sessions.push(
        ...officeDay(rng, day, login, perDay, { office: nets.office, home, carriers: nets.carriers }, networks),
      )
      if (extra && isWorkingDay(day)) sessions.push(...extra(rng, day, login, networks.address(nets.office)))
    }
  })
  return { streams: byAccount(sessions), starts: new Map() }
}

/** Two bursts a working day of 50-100 messages within 10 minutes, one recipient each (sequences). */
function burstsOf(rng: Rng, day: number, login: string, ip: string): SimSession[] {
  const sessions: SimSession[] = []
  for (let b = 0; b < 2; b++) {
    const from = EPOCH + day * DAY + 8.5 * HOUR + rng.uniform(0, 8 * HOUR)
    for (const t of spread(rng, rng.int(50, 100), from, 10 * MINUTE)) {
      sessions.push({ t, login, ip, password: true, messages: one(t, recipients(rng, 1, 0.02, 'prospect')) })
    }
  }
  return sessions
}

/**
 * A travelling user's working day: the office volume over 3-4 networks: the hotel (same for 3
 * days, mornings and evenings), the phone's carrier (a new one each day), and 1-2 others (an
 * airport, a customer's guest network, a cafe).
 */
function travellers(rng: Rng, users: readonly string[], size: RunSize): Generated {
  const networks = new Networks(rng)
  const sessions: SimSession[] = []
  for (const login of users) {
    const perDay = rng.uniform(30, 40)
    const home = networks.fresh()
    let hotel = networks.fresh()
    for (let day = 0; day < size.legitDays; day++) {
      const dayStart = EPOCH + day * DAY
      const send = (t: number, net: string): SimSession => ({
        t,
        login,
        ip: networks.address(net),
        password: true,
        messages: one(t, recipients(rng, rng.int(1, 3), LEGIT_INVALID, 'partner')),
      })
      if (!isWorkingDay(day)) {
        sessions.push(...spread(rng, rng.poisson(2), dayStart + 10 * HOUR, 10 * HOUR).map((t) => send(t, home)))
        continue
      }
      if (day % 3 === 0) hotel = networks.fresh()
      const carrier = networks.fresh()
      const others = Array.from({ length: rng.int(1, 2) }, () => networks.fresh())
      const n = rng.poisson(perDay)
      const atHotel = Math.round(n * 0.2)
      sessions.push(...spread(rng, atHotel, dayStart + 19 * HOUR, 3 * HOUR).map((t) => send(t, hotel)))
      const day9h = spread(rng, n - atHotel, dayStart + 8 * HOUR, 9 * HOUR)
      day9h.forEach((t, i) => {
        const net = rng.chance(0.25) ? carrier : (others[Math.floor((i * others.length) / day9h.length)] ?? hotel)
        sessions.push(send(t, net))
      })
    }
  }
  return { streams: byAccount(sessions), starts: new Map() }
}

/** The newsletter account's override: the list goes out in one go, far above the defaults for people. */
const LIST_OVERRIDE = 'messages = 3000/30m, 10000/24h\nrecipients = 3000/30m\n'

/**
 * A list or service account: a newsletter of 1,500-2,500 messages within 20 minutes each working
 * morning (sessions of 100), and about 300 transactional messages a day around the clock, all from
 * one application server; 2 % of list addresses are stale.
 */
function listAccounts(rng: Rng, accounts: readonly string[], size: RunSize): Generated {
  const networks = new Networks(rng)
  const sessions: SimSession[] = []
  for (const login of accounts) {
    const server = networks.address(networks.fresh())
    for (let day = 0; day < size.legitDays; day++) {
      const dayStart = EPOCH + day * DAY
      for (const t of spread(rng, rng.poisson(300), dayStart, DAY)) {
        sessions.push({ t, login, ip: server, password: true, messages: one(t, recipients(rng, 1, 0.01, 'customer')) })
      }
      if (!isWorkingDay(day)) continue
      const times = spread(rng, rng.int(1500, 2500), dayStart + 9 * HOUR + rng.uniform(0, HOUR), 20 * MINUTE)
      for (let i = 0; i < times.length; i += 100) {
        const batch = times.slice(i, i + 100)
        sessions.push({
          t: batch[0] ?? dayStart,
          login,
          ip: server,
          password: true,
          messages: batch.map((t) => ({ t, recipients: recipients(rng, 1, 0.02, 'subscriber') })),
        })
      }
    }
  }
  return { streams: byAccount(sessions), starts: new Map() }
}

/** When a hijack starts: some time on the second day of the month (a Tuesday). */
const hijackStart = (rng: Rng): number => EPOCH + DAY + Math.floor(rng.uniform(0, DAY))

/** Spam recipients: 1-5 a message, from harvested lists. */
const spam = (rng: Rng, pInvalid = 0): SimRecipient[] => recipients(rng, rng.int(1, 5), pInvalid, 'mail')

/** Each account's stream from `stream(rng, start)`, its abuse starting some time on the second day. */
function hijacks(
  rng: Rng,
  accounts: readonly string[],
  stream: (rng: Rng, login: string, start: number, networks: Networks) => Iterable<SimSession>,
): Generated {
  const starts = new Map<string, number>()
  const streams = accounts.map((login) => {
    const own = accountRng(rng)
    const start = hijackStart(own)
    starts.set(login, start)
    return stream(own, login, start, new Networks(own, login))
  })
  return { streams, starts }
}

/**
 * A hijacker sending at `perMinute` in sessions of `perSession` messages, from 1-3 networks
 * (rented servers), until the cap.
 */
function volumeHijack(perMinute: number, perSession: number) {
  return (rng: Rng, accounts: readonly string[], size: RunSize): Generated =>
    hijacks(rng, accounts, function* (own, login, start, networks) {
      const nets = Array.from({ length: own.int(1, 3) }, () => networks.fresh())
      const gap = MINUTE / perMinute
      const total = Math.floor(size.hijackCapMs / gap)
      for (let i = 0, s = 0; i < total; i += perSession, s++) {
        const messages: SimMessage[] = []
        for (let k = i; k < Math.min(total, i + perSession); k++) {
          messages.push({ t: Math.floor(start + k * gap), recipients: spam(own) })
        }
        const net = nets[s % nets.length] ?? networks.fresh()
        yield { t: messages[0]?.t ?? start, login, ip: networks.address(net), password: true, messages }
      }
    })
}

/**
 * A botnet using one stolen login: one message per session, sessions `meanGapMs` apart on average
 * (exponential, at least 1 s). The first `pool` sessions come from new networks and the rest
 * rotate among them; with no pool (0), a new network for 85 % of the sessions.
 */
function botnet(meanGapMs: number, poolOf: (rng: Rng) => number) {
  return (rng: Rng, accounts: readonly string[], size: RunSize): Generated =>
    hijacks(rng, accounts, function* (own, login, start, networks) {
      const seen: string[] = []
      const pool = poolOf(own)
      for (
        let t = start, i = 0;
        t < start + size.hijackCapMs;
        t += Math.max(1000, Math.round(own.exp(meanGapMs))), i++
      ) {
        const fresh = pool > 0 ? i < pool : seen.length === 0 || own.chance(0.85)
        const net = fresh ? networks.fresh() : own.pick(seen)
        if (fresh) seen.push(net)
        yield { t, login, ip: networks.address(net), password: true, messages: one(t, spam(own)) }
      }
    })
}

/** List spam to 10-30 recipients a message, 30 % of them invalid, about 20 messages an hour from 1-3 networks. */
function bounceHeavy(rng: Rng, accounts: readonly string[], size: RunSize): Generated {
  return hijacks(rng, accounts, function* (own, login, start, networks) {
    const nets = Array.from({ length: own.int(1, 3) }, () => networks.fresh())
    for (let t = start; t < start + size.hijackCapMs; t += Math.max(1000, Math.round(own.exp(3 * MINUTE)))) {
      yield {
        t,
        login,
        ip: networks.address(own.pick(nets)),
        password: true,
        messages: one(t, recipients(own, own.int(10, 30), 0.3, 'list')),
      }
    }
  })
}

/** Password spraying: 200 networks, each trying every login once with a wrong password, one network every 30 s. */
function spraying(rng: Rng, accounts: readonly string[]): Generated {
  const networks = new Networks(rng)
  const start = hijackStart(rng)
  const ips = Array.from({ length: 200 }, () => networks.address(networks.fresh()))
  const streams = accounts.map((login, i) =>
    ips.map((ip, n): SimSession => ({ t: start + n * 30_000 + i * 2000, login, ip, password: false, messages: [] })),
  )
  return { streams, starts: new Map(accounts.map((a) => [a, start])) }
}

const sized = (full: number, quick: number) => (size: RunSize) => (size.quick ? quick : full)
const hijackAccounts = sized(5, 2)

/** Every profile, legitimate ones first. */
export const PROFILES: readonly Profile[] = [
  {
    name: 'office',
    kind: 'legit',
    summary: '30-40 messages per working day (Poisson over 9 h), 1-3 recipients, 1-2 networks a day',
    logins: (size) => logins('office', sized(20, 4)(size)),
    generate: (rng, users, size) => officeUsers(rng, users, size),
  },
  {
    name: 'sales',
    kind: 'legit',
    summary: 'office user plus two bursts of 50-100 messages within 10 minutes each working day',
    logins: (size) => logins('sales', sized(5, 2)(size)),
    generate: (rng, users, size) => officeUsers(rng, users, size, burstsOf),
  },
  {
    name: 'traveller',
    kind: 'legit',
    summary: 'office volume over 3-4 networks a day (hotel, carrier, airport, guest networks)',
    logins: (size) => logins('traveller', sized(5, 2)(size)),
    generate: travellers,
  },
  {
    name: 'list',
    kind: 'legit',
    summary: `newsletter of 1,500-2,500 in 20 min each working day + ~300/day transactional; [account:...] ${LIST_OVERRIDE.trim().replace(/\n/g, '; ')}`,
    logins: (size) => logins('list', sized(2, 1)(size)),
    ini: (accounts) => accounts.map((a) => `[account:${a}]\n${LIST_OVERRIDE}`).join('\n'),
    generate: listAccounts,
  },
  {
    name: 'burst-hijack',
    kind: 'hijack',
    summary: '1,000 messages/min from 1-3 networks, sessions of 20, 1-5 recipients',
    logins: (size) => logins('burst', hijackAccounts(size)),
    generate: volumeHijack(1000, 20),
  },
  {
    name: 'sustained-hijack',
    kind: 'hijack',
    summary: '60 messages/min from 1-3 networks, sessions of 10, 1-5 recipients',
    logins: (size) => logins('sustained', hijackAccounts(size)),
    generate: volumeHijack(60, 10),
  },
  {
    name: 'low-and-slow',
    kind: 'hijack',
    summary: 'botnet: 2-3 messages an hour (one per session), a new network for 85 % of sessions',
    logins: (size) => logins('slow', hijackAccounts(size)),
    generate: botnet(24 * MINUTE, () => 0),
  },
  {
    name: 'fast-botnet',
    kind: 'hijack',
    summary: 'botnet: 30-50 networks within minutes, then rotating among them; 10 messages/min',
    logins: (size) => logins('fast', hijackAccounts(size)),
    generate: botnet(6000, (rng) => rng.int(30, 50)),
  },
  {
    name: 'bounce-heavy',
    kind: 'hijack',
    summary: 'list spam: ~20 messages/h, 10-30 recipients each, 30 % invalid (refused 5xx at RCPT)',
    logins: (size) => logins('bounce', hijackAccounts(size)),
    generate: bounceHeavy,
  },
  {
    name: 'spraying',
    kind: 'hijack',
    summary: 'password spraying: one wrong-password AUTH per login from each of 200 networks, a network every 30 s',
    logins: (size) => logins('sprayed', sized(10, 3)(size)),
    generate: (rng, accounts) => spraying(rng, accounts),
  },
]

/** A hijack profile's sessions are cut at this cap; a hijack is also over once its account is disabled. */
export const HIJACK_CAP_MS = { full: 3 * DAY, quick: DAY }
export const LEGIT_DAYS = { full: 30, quick: 7 }
