// npm run simulate -- --store redis: do the two stores decide the same? A compressed trace of a
// few profiles (every window and every time divided by --scale) is replayed in real time through
// the plugin on the Redis store against a real redis-server (support/redis.ts). Every store call's
// time as Redis reported it (RecordResult `at`, ...) is kept; then the same sessions go through
// the plugin on the memory store with a virtual clock set to those times before each call. Any
// answer, disable or alert that differs is printed, and the exit code is 1.

import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import * as path from 'node:path'
import type * as redisStoreModule from '../lib/store/redis'
import type { Store } from '../lib/store'
import { distMemoryStore } from '../support/plugin'
import { REPO_ROOT, tmpDir } from '../support/process'
import { REDIS_SERVER, startRedis, type RedisServer } from '../support/redis'
import { random } from '../support/random'
import { HOUR, rngOf, type SimSession } from './events'
import { LEGIT_DAYS, PROFILES, type Profile, type RunSize } from './profiles'
import { openPlugin, replay, type AccountStats, type Step } from './run'
import { scaledIni } from './ini'
import { profileIni, profileSeed, withVirtualDate, type Clock } from './simulate'

/** Virtual time per real time: 3600 makes 30m windows 500 ms and an hour of trace one second. */
export const DEFAULT_SCALE = 3600

/** The profiles of the cross-check (unless --profile names others) and how much of each is replayed. */
const CHECKED = [
  'office',
  'burst-hijack',
  'sustained-hijack',
  'fast-botnet',
  'low-and-slow',
  'bounce-heavy',
  'spraying',
]
const SPAN_MS = { full: 4 * HOUR, quick: HOUR }

interface CrossCheckOptions {
  readonly quick: boolean
  readonly seed: number
  readonly scale: number
  readonly profiles: readonly Profile[]
  /** Config over the shipped defaults (--config). */
  readonly ini: string
}

const loadDist = createRequire(__filename)
const distRedisStore = (): typeof redisStoreModule =>
  loadDist(path.join(REPO_ROOT, 'dist', 'lib', 'store', 'redis')) as typeof redisStoreModule

/** A store call's time as the store reported it (undefined: its answer carries none). */
interface Slot {
  at?: number
}

/** The time in a store answer: `at`, or a disable record's `at`. */
function answerTime(value: unknown): number | undefined {
  if (!value || typeof value !== 'object') return undefined
  const v = value as { at?: unknown; record?: { at?: unknown } }
  if (typeof v.at === 'number') return v.at
  if (typeof v.record?.at === 'number') return v.record.at
  return undefined
}

/** `store`, noting each call's reported time in `slots` (per method, in call order). */
function recording(store: Store, slots: Map<string, Slot[]>): Store {
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver) as unknown
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        const slot: Slot = {}
        const list = slots.get(String(name)) ?? []
        list.push(slot)
        slots.set(String(name), list)
        const result = (value as (...a: unknown[]) => unknown).apply(target, args)
        if (result instanceof Promise) {
          result.then(
            (v: unknown) => {
              const at = answerTime(v)
              if (at !== undefined) slot.at = at
            },
            () => undefined,
          )
        }
        return result
      }
    },
  })
}

/** `store`, with the clock set to the time Redis reported for the same call before each call. */
function replaying(store: Store, slots: Map<string, Slot[]>, clock: Clock): Store {
  const next = new Map<string, number>()
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver) as unknown
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        const i = next.get(String(name)) ?? 0
        next.set(String(name), i + 1)
        const at = slots.get(String(name))?.[i]?.at
        if (at !== undefined) clock.t = at
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
}

/**
 * The first `spanMs` of each of a profile's streams (later sessions and messages dropped), as
 * arrays, each shifted to begin when the earliest one does: every account's abuse is in the trace.
 */
function truncate(
  streams: readonly Iterable<SimSession>[],
  spanMs: number,
): { streams: SimSession[][]; first: number } {
  const kept = streams.map((stream) => {
    const out: SimSession[] = []
    for (const s of stream) {
      if (out.length > 0 && s.t >= (out[0]?.t ?? 0) + spanMs) break
      out.push(s)
    }
    const end = (out[0]?.t ?? 0) + spanMs
    return out
      .map((s) => ({ ...s, messages: s.messages.filter((m) => m.t < end) }))
      .filter((s) => s.messages.length > 0 || !s.password)
  })
  const first = kept.reduce((m, list) => Math.min(m, list[0]?.t ?? Infinity), Infinity)
  const shifted = kept.map((list) => {
    const by = (list[0]?.t ?? first) - first
    return list.map((s) => ({ ...s, t: s.t - by, messages: s.messages.map((m) => ({ ...m, t: m.t - by })) }))
  })
  return { streams: shifted, first }
}

interface Side {
  readonly trace: Step[]
  readonly stats: Map<string, AccountStats>
  readonly mails: string[]
}

const mailSubjects = (sent: readonly { message: string }[]): string[] =>
  sent.map((m) => (/^Subject: (.*)$/m.exec(m.message)?.[1] ?? '').replace(/\[[^\]]*\]$/, '[token]'))

async function onRedis(
  server: RedisServer,
  ini: string,
  streams: readonly SimSession[][],
  first: number,
  scale: number,
  slots: Map<string, Slot[]>,
  stopAtDisable: boolean,
): Promise<Side> {
  const log = { info: () => undefined, warn: () => undefined, error: (m: string) => console.error(`redis store: ${m}`) }
  const store = distRedisStore().createRedisStore({
    redis: { host: server.host, port: server.port, db: 0, journal: '', journalCheckMs: 60_000 },
    timeoutMs: 2000,
    log,
    cacheDisabled: true,
  })
  await store.ready(5000)
  const sim = await openPlugin(ini, recording(store, slots))
  const trace: Step[] = []
  const realStart = Date.now()
  try {
    const { stats } = await replay(sim, streams, {
      advance: async (t) => {
        const wait = realStart + (t - first) / scale - Date.now()
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      },
      stopAtDisable,
      trace,
    })
    return { trace, stats, mails: mailSubjects(sim.guard.sent) }
  } finally {
    await sim.settle()
    await store.close()
  }
}

async function onMemory(
  ini: string,
  streams: readonly SimSession[][],
  first: number,
  slots: Map<string, Slot[]>,
  stopAtDisable: boolean,
): Promise<Side> {
  const clock: Clock = { t: first }
  const store = distMemoryStore().createMemoryStore({
    stateFile: path.join(tmpDir('sim-redis'), 'state.json'),
    now: () => clock.t,
  })
  return withVirtualDate(clock, async () => {
    const sim = await openPlugin(ini, replaying(store, slots, clock))
    const trace: Step[] = []
    try {
      const { stats } = await replay(sim, streams, { advance: () => undefined, stopAtDisable, trace })
      return { trace, stats, mails: mailSubjects(sim.guard.sent) }
    } finally {
      await sim.settle()
      await store.close()
    }
  })
}

/** The differences between the two sides, in words (at most `max`). */
function differences(a: Side, b: Side, max = 10): string[] {
  const out: string[] = []
  const n = Math.max(a.trace.length, b.trace.length)
  for (let i = 0; i < n && out.length < max; i++) {
    const x = JSON.stringify(a.trace[i] ?? null)
    const y = JSON.stringify(b.trace[i] ?? null)
    if (x !== y) out.push(`step ${i}: redis ${x}, memory ${y}`)
  }
  for (const [login, s] of a.stats) {
    const m = b.stats.get(login)
    const dr = s.disabledAt !== null
    const dm = m?.disabledAt != null
    if (dr !== dm) out.push(`${login}: disabled on redis ${dr}, on memory ${dm}`)
  }
  const ma = [...a.mails].sort().join('\n')
  const mb = [...b.mails].sort().join('\n')
  if (ma !== mb) out.push(`mail sent differs:\n    redis:  ${a.mails.join(' | ')}\n    memory: ${b.mails.join(' | ')}`)
  return out
}

/** The cross-check; resolves with the exit code (1 when a decision differs or Redis cannot run). */
export async function crossCheck(o: CrossCheckOptions): Promise<number> {
  const probe = spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' })
  if (probe.error || probe.status !== 0) {
    console.error(
      `--store redis needs redis-server (${REDIS_SERVER}: ${probe.error?.message ?? probe.stderr}); install it or set REDIS_SERVER`,
    )
    return 1
  }
  const profiles = o.profiles.length === PROFILES.length ? PROFILES.filter((p) => CHECKED.includes(p.name)) : o.profiles
  const span = o.quick ? SPAN_MS.quick : SPAN_MS.full
  const size: RunSize = { quick: true, legitDays: LEGIT_DAYS.quick, hijackCapMs: span }
  const server = await startRedis()
  console.log(`hijack-guard detection simulator: Redis cross-check; seed ${o.seed}; ${probe.stdout.trim()}`)
  console.log(
    `  every window and time divided by ${o.scale} (30m -> ${Math.round(1_800_000 / o.scale)} ms); the first ${span / HOUR} h of each account's trace (quick size)`,
  )
  console.log('  replayed in real time against redis-server, then on the memory store at the times Redis reported')
  let failed = 0
  for (const profile of profiles) {
    const rng = rngOf(random(profileSeed(o.seed, profile.name)))
    const logins = profile.logins(size)
    const { streams, first } = truncate(profile.generate(rng, logins, size).streams, span)
    const ini = scaledIni(profileIni(profile, logins, o.ini), o.scale)
    const slots = new Map<string, Slot[]>()
    await server.flushall()
    const t0 = Date.now()
    const stop = profile.kind === 'hijack'
    const redis = await onRedis(server, ini, streams, first, o.scale, slots, stop)
    const memory = await onMemory(ini, streams, first, slots, stop)
    const diff = differences(redis, memory)
    const count = (side: Side, f: (s: AccountStats) => number): number =>
      [...side.stats.values()].reduce((n, s) => n + f(s), 0)
    console.log(
      `  ${profile.name.padEnd(17)}${diff.length ? 'DIFFER' : 'same  '} ${redis.trace.length} steps; ` +
        `accepted ${count(redis, (s) => s.accepted)}/${count(memory, (s) => s.accepted)} of ${count(redis, (s) => s.attempted)}; ` +
        `disabled ${count(redis, (s) => (s.disabledAt === null ? 0 : 1))}/${count(memory, (s) => (s.disabledAt === null ? 0 : 1))} of ${logins.length}; ` +
        `mails ${redis.mails.length}/${memory.mails.length} (redis/memory) ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    )
    for (const d of diff) console.log(`    ${d}`)
    if (diff.length) failed++
  }
  await server.stop()
  console.log(
    failed ? `\n${failed} profile(s) decided differently on Redis and memory` : '\nboth stores decided the same',
  )
  return failed ? 1 : 0
}
