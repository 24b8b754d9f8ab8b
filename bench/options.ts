// The bench's options: a full run by default, a tiny one with --quick; the sizes below can be
// changed one by one.

import { parseArgs } from 'node:util'

export interface BenchOptions {
  /** A tiny configuration: a smoke test, too short for conclusions. */
  readonly quick: boolean
  readonly warmupSeconds: number
  /** Measured throughput rounds per side. */
  readonly rounds: number
  readonly roundSeconds: number
  /** Parallel SMTP sessions of the load. */
  readonly sessions: number
  /** Messages per SMTP session. */
  readonly perSession: number
  /** Messages per single-session round. */
  readonly single: number
  /** Single-session rounds per side. */
  readonly singleRounds: number
  /** auth/flat_file accounts the load logs in as. */
  readonly smtpAccounts: number
  /** Accounts of the memory section. */
  readonly accounts: number
  /** Accounts of the memory section's busy scenarios. */
  readonly busyAccounts: number
  /** Accounts recording in parallel in the busy-account Redis CPU measurement. */
  readonly busyCpuAccounts: number
  /** Seconds of that measurement, after one window of filling, per configuration. */
  readonly busyCpuSeconds: number
  /** Messages of the MONITOR run in sessions of MONITOR_PER_SESSION messages. */
  readonly monitorMessages: number
  /** Messages (= sessions) of the MONITOR run, one per session. */
  readonly monitorSessions: number
  readonly exactSessions: number
  /** messages = exactLimit/1m for the exactness accounts. */
  readonly exactLimit: number
  readonly exactTrials: number
  /** Sequential calls per store call in the idle cost. */
  readonly idleCalls: number
  /** Haraka's log level. */
  readonly logLevel: string
  /** Where the JSON result goes: a file, or '-' for stdout (the report then goes to stderr). */
  readonly json?: string
}

/** Messages per session of the round-trip target's MONITOR run. */
export const MONITOR_PER_SESSION = 20

export const USAGE = `usage: npm run bench -- [--quick] [--json [FILE]] [--rounds N] [--round-seconds S] [--warmup-seconds S]
       [--sessions N] [--per-session N] [--single N] [--accounts N] [--log-level LEVEL]`

const FULL: Omit<BenchOptions, 'logLevel' | 'json'> = {
  quick: false,
  warmupSeconds: 25,
  rounds: 8,
  roundSeconds: 6,
  sessions: 10,
  perSession: 10,
  single: 1500,
  singleRounds: 4,
  smtpAccounts: 1000,
  accounts: 10000,
  busyAccounts: 500,
  busyCpuAccounts: 4,
  busyCpuSeconds: 10,
  monitorMessages: 400,
  monitorSessions: 300,
  exactSessions: 30,
  exactLimit: 200,
  exactTrials: 3,
  idleCalls: 3000,
}

const QUICK: typeof FULL = {
  quick: true,
  warmupSeconds: 3,
  rounds: 2,
  roundSeconds: 2,
  sessions: 10,
  perSession: 10,
  single: 100,
  singleRounds: 2,
  smtpAccounts: 200,
  accounts: 1000,
  busyAccounts: 100,
  busyCpuAccounts: 2,
  busyCpuSeconds: 1.5,
  monitorMessages: 100,
  monitorSessions: 40,
  exactSessions: 10,
  exactLimit: 50,
  exactTrials: 1,
  idleCalls: 300,
}

function positive(name: string, value: string | undefined, integer: boolean): number | undefined {
  if (value === undefined) return undefined
  const v = Number(value)
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`)
  return integer ? Math.round(v) : v
}

/** `--json` without a value (last, or followed by another option) means stdout: `--json -`. */
function jsonDefault(args: readonly string[]): string[] {
  return args.flatMap((a, i) => {
    const next = args[i + 1]
    return a === '--json' && (next === undefined || next.startsWith('--')) ? ['--json', '-'] : [a]
  })
}

/** The options of `args` (process.argv without node and the script); throws on an unknown or bad one. */
export function parseOptions(args: readonly string[]): BenchOptions {
  let values
  try {
    ;({ values } = parseArgs({
      args: jsonDefault(args),
      strict: true,
      allowPositionals: false,
      options: {
        quick: { type: 'boolean' },
        json: { type: 'string' },
        rounds: { type: 'string' },
        'round-seconds': { type: 'string' },
        'warmup-seconds': { type: 'string' },
        sessions: { type: 'string' },
        'per-session': { type: 'string' },
        single: { type: 'string' },
        accounts: { type: 'string' },
        'log-level': { type: 'string' },
      },
    }))
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`)
  }
  const base = values.quick ? QUICK : FULL
  return {
    ...base,
    rounds: positive('rounds', values.rounds, true) ?? base.rounds,
    roundSeconds: positive('round-seconds', values['round-seconds'], false) ?? base.roundSeconds,
    warmupSeconds: positive('warmup-seconds', values['warmup-seconds'], false) ?? base.warmupSeconds,
    sessions: positive('sessions', values.sessions, true) ?? base.sessions,
    perSession: positive('per-session', values['per-session'], true) ?? base.perSession,
    single: positive('single', values.single, true) ?? base.single,
    accounts: positive('accounts', values.accounts, true) ?? base.accounts,
    logLevel: values['log-level'] ?? 'info',
    ...(values.json === undefined ? {} : { json: values.json }),
  }
}
