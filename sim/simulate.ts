// One profile through the plugin on the memory store with a virtual clock, and what its numbers
// say against the targets of issue 11.

import * as path from 'node:path'
import { random } from '../support/random'
import { distMemoryStore } from '../support/plugin'
import { tmpDir } from '../support/process'
import { DAY, EPOCH, MINUTE, WEEK, rngOf } from './events'
import type { Profile, ProfileKind, RunSize } from './profiles'
import { openPlugin, replay, type AccountStats } from './run'

/** One profile's result; the first fields are the interface of `--json` (issue 11). */
export interface ProfileResult {
  readonly name: string
  readonly kind: ProfileKind
  /** Messages tried and messages the plugin let through to the queue (all accounts of the profile). */
  readonly attempted: number
  readonly accepted: number
  /** legit: any account disabled; hijack: every account disabled. */
  readonly disabled: boolean
  /** hijack: the slowest account's minutes from the start of its abuse to its disable; null when one was never disabled. */
  readonly minutesToDisable: number | null
  /** hijack: accepted messages (spam that got out); legit: 0. */
  readonly escaped: number
  readonly summary: string
  readonly accounts: number
  readonly disabledAccounts: number
  /** legit: accounts disabled (each one a user locked out). */
  readonly falseDisables: number
  /** hijack: the most messages one account got out. */
  readonly maxEscapedPerAccount: number
  /** Per account: minutes to disable (null: never), in account order. */
  readonly minutesToDisablePerAccount: readonly (number | null)[]
  readonly refused: AccountStats['refused']
  readonly invalidRecipients: number
  readonly recipientsRefused: number
  readonly authAttempts: number
  readonly authFailures: number
  /** Mail the plugin sent about the profile's accounts, by kind. */
  readonly mails: AccountStats['mails']
  /** Warnings (early-warning mails): in all, and the most one account got in a week on average. */
  readonly warnings: number
  readonly maxWarningsPerUserWeek: number
  /** Password spraying: whether every login was alerted, and the most failed AUTHs a login had at its alert. */
  readonly alerted: boolean
  readonly maxFailuresBeforeAlert: number | null
  readonly minutesToAlert: number | null
  /** How long the profile ran (simulated days). */
  readonly simulatedDays: number
}

const round1 = (x: number): number => Math.round(x * 10) / 10

/** A seed of its own for each profile: adding a profile changes no other profile's numbers. */
export function profileSeed(seed: number, name: string): number {
  let h = seed | 0
  for (const ch of name) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193)
  return h >>> 0
}

/** The ini of a profile's run over the shipped defaults: `extra` (--config), then the profile's own sections. */
export function profileIni(profile: Profile, logins: readonly string[], extra = ''): string {
  return `[alert]\nto = postmaster@example.com\n${extra}\n${profile.ini ? profile.ini(logins) : ''}`
}

/** A virtual clock: the memory store's `now`, and Date.now while the simulator runs (see withVirtualDate). */
export interface Clock {
  t: number
}

/** Runs `work` with Date.now reading `clock` (the plugin's own uses of the clock), then puts it back. */
export async function withVirtualDate<T>(clock: Clock, work: () => Promise<T>): Promise<T> {
  const realNow = Date.now
  Date.now = () => clock.t
  try {
    return await work()
  } finally {
    Date.now = realNow
  }
}

/** Replays one profile through the plugin on the memory store with a virtual clock. */
export async function runProfile(profile: Profile, size: RunSize, seed: number, extra = ''): Promise<ProfileResult> {
  const rng = rngOf(random(profileSeed(seed, profile.name)))
  const logins = profile.logins(size)
  const generated = profile.generate(rng, logins, size)
  const clock: Clock = { t: EPOCH }
  const store = distMemoryStore().createMemoryStore({
    stateFile: path.join(tmpDir('sim'), 'state.json'),
    now: () => clock.t,
  })
  const { stats, first, last } = await withVirtualDate(clock, async () => {
    const sim = await openPlugin(profileIni(profile, logins, extra), store)
    try {
      return await replay(sim, generated.streams, {
        advance: (t) => {
          clock.t = Math.max(clock.t, t)
        },
        stopAtDisable: profile.kind === 'hijack',
      })
    } finally {
      await sim.settle()
      await store.close()
    }
  })
  const per = logins.map((l) => stats.get(l) ?? null)
  const all = per.filter((s): s is AccountStats => s !== null)
  const sum = (f: (s: AccountStats) => number): number => all.reduce((n, s) => n + f(s), 0)
  const minutes = logins.map((l) => {
    const s = stats.get(l)
    const start = generated.starts.get(l) ?? first
    return s?.disabledAt != null ? round1((s.disabledAt - start) / MINUTE) : null
  })
  const disabledAccounts = all.filter((s) => s.disabledAt !== null).length
  const hijack = profile.kind === 'hijack'
  const spraying = all.some((s) => s.authFailures > 0) && sum((s) => s.attempted) === 0
  const accepted = sum((s) => s.accepted)
  const days = Math.max(1 / 24, (last - first) / DAY)
  const weeks = Math.max(1, days) / (WEEK / DAY)
  const sprayMinutes = logins.map((l) => {
    const s = stats.get(l)
    const start = generated.starts.get(l) ?? first
    return s?.sprayAlertAt != null ? round1((s.sprayAlertAt - start) / MINUTE) : null
  })
  return {
    name: profile.name,
    kind: profile.kind,
    attempted: sum((s) => s.attempted),
    accepted,
    disabled: hijack ? disabledAccounts === logins.length && !spraying : disabledAccounts > 0,
    minutesToDisable: hijack && !spraying && minutes.every((m) => m !== null) ? Math.max(...minutes) : null,
    escaped: hijack ? accepted : 0,
    summary: profile.summary,
    accounts: logins.length,
    disabledAccounts,
    falseDisables: hijack ? 0 : disabledAccounts,
    maxEscapedPerAccount: hijack ? Math.max(0, ...all.map((s) => s.accepted)) : 0,
    minutesToDisablePerAccount: minutes,
    refused: {
      auth: sum((s) => s.refused.auth),
      mail: sum((s) => s.refused.mail),
      rcpt: sum((s) => s.refused.rcpt),
      queue: sum((s) => s.refused.queue),
    },
    invalidRecipients: sum((s) => s.invalidRecipients),
    recipientsRefused: sum((s) => s.recipientsRefused),
    authAttempts: sum((s) => s.authAttempts),
    authFailures: sum((s) => s.authFailures),
    mails: {
      disable: sum((s) => s.mails.disable),
      spray: sum((s) => s.mails.spray),
      monitor: sum((s) => s.mails.monitor),
      warning: sum((s) => s.mails.warning),
    },
    warnings: sum((s) => s.mails.warning),
    maxWarningsPerUserWeek: round1(Math.max(0, ...all.map((s) => s.mails.warning)) / weeks),
    alerted: spraying && all.every((s) => s.failuresAtSprayAlert !== null),
    maxFailuresBeforeAlert: spraying
      ? all.every((s) => s.failuresAtSprayAlert !== null)
        ? Math.max(...all.map((s) => s.failuresAtSprayAlert ?? 0))
        : null
      : null,
    minutesToAlert: spraying && sprayMinutes.every((m) => m !== null) ? Math.max(...sprayMinutes) : null,
    simulatedDays: round1(days),
  }
}

/** One target of issue 11 and whether this run meets it. */
export interface Target {
  readonly target: string
  /** null: not something the simulator measures. */
  readonly pass: boolean | null
  readonly detail: string
}

/** The issue's targets, judged on the results; `messageLimit` is the smallest [limits] messages N of the run. */
export function judge(results: readonly ProfileResult[], messageLimit: number): Target[] {
  const targets: Target[] = []
  /** Judges `target` on the named profiles; not judged (null) when one of them did not run. */
  const on = (
    target: string,
    names: readonly string[],
    verdict: (...profiles: ProfileResult[]) => { pass: boolean; detail: string },
  ): void => {
    const found = names.map((n) => results.find((r) => r.name === n))
    const ran = found.filter((r): r is ProfileResult => r !== undefined)
    targets.push(
      ran.length === names.length
        ? { target, ...verdict(...ran) }
        : { target, pass: null, detail: `not judged: profile ${names.join(' or ')} not run` },
    )
  }
  const within = (r: ProfileResult, minutes: number): boolean =>
    r.minutesToDisable !== null && r.minutesToDisable <= minutes
  const when = (r: ProfileResult): string =>
    r.minutesToDisable === null
      ? `${r.disabledAccounts}/${r.accounts} accounts disabled`
      : `slowest disable after ${r.minutesToDisable} min`
  const escaped = (r: ProfileResult): string => `at most ${r.maxEscapedPerAccount} escaped per account`

  on(
    `burst and sustained hijacks: at most the limit (${messageLimit}) escapes; sustained stopped within 30 min`,
    ['burst-hijack', 'sustained-hijack'],
    (burst, sustained) => ({
      pass:
        [burst, sustained].every((r) => r.disabled && r.maxEscapedPerAccount <= messageLimit) && within(sustained, 30),
      detail: `burst: ${escaped(burst)}, ${when(burst)}; sustained: ${escaped(sustained)}, ${when(sustained)}`,
    }),
  )
  on('low-and-slow botnet: disabled within 4 hours with at most 10 messages escaped', ['low-and-slow'], (slow) => ({
    pass: within(slow, 240) && slow.maxEscapedPerAccount <= 10,
    detail: `${when(slow)}; ${escaped(slow)}`,
  }))
  on('bounce-heavy spam: stopped before 400 messages', ['bounce-heavy'], (bounce) => ({
    pass: bounce.disabled && bounce.maxEscapedPerAccount < 400,
    detail: `${when(bounce)}; ${escaped(bounce)}`,
  }))
  on('spraying: alerted within the first 20 failed attempts per login', ['spraying'], (spray) => ({
    pass: spray.alerted && (spray.maxFailuresBeforeAlert ?? Infinity) <= 20,
    detail: spray.alerted
      ? `every login alerted, at most at its failed AUTH #${spray.maxFailuresBeforeAlert}, at most ${spray.minutesToAlert} min in`
      : `${spray.mails.spray} spraying alerts for ${spray.accounts} logins`,
  }))

  const legit = results.filter((r) => r.kind === 'legit')
  const disables = legit.reduce((n, r) => n + r.falseDisables, 0)
  const warnings = Math.max(0, ...legit.map((r) => r.maxWarningsPerUserWeek))
  targets.push({
    target: 'legitimate profiles: 0 disables and at most 1 warning per user per week',
    pass: legit.length > 0 && disables === 0 && warnings <= 1,
    detail:
      `${disables} false disables (${legit.map((r) => `${r.name} ${r.falseDisables}`).join(', ')}); ` +
      `at most ${warnings} warnings per user per week`,
  })
  targets.push({
    target: 'the new signals cost at most one extra Redis round trip per message',
    pass: null,
    detail: 'not a detection figure: npm run bench measures round trips per message',
  })
  return targets
}
