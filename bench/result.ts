// The bench's result, as `--json` prints it: every figure the report shows, in numbers (ms, us,
// bytes, messages per second, ratios as fractions). A figure that could not be measured is NaN,
// which JSON prints as null.

import type { SideName } from './env'
import type { BenchOptions } from './options'

export interface Latency {
  /** Samples. */
  readonly n: number
  readonly p50: number
  readonly p99: number
}

/** CPU seconds spent during a measurement, per process; foreign: the rest of the machine. */
export interface CpuSeconds {
  readonly haraka: number
  readonly redis: number
  readonly sink: number
  /** The load generator (the bench process). */
  readonly bench: number
  readonly foreign: number
}

/** CPU microseconds per message, per process. */
export interface CpuPerMessage {
  readonly haraka: number
  readonly redis: number
  readonly sink: number
  readonly bench: number
}

/** Rounds of one side pooled: messages over seconds, percentiles over every message. */
export interface Pooled {
  readonly sent: number
  /** Messages per second. */
  readonly rate: number
  /** Each round's messages per second, in run order. */
  readonly rates: readonly number[]
  readonly latency: Latency
  /** Each round's latency, in run order. */
  readonly roundLatencies: readonly Latency[]
  readonly errors: number
  readonly firstErrors: readonly string[]
  /** Messages the sink had not received 60 s after the round. */
  readonly undelivered: number
  readonly sessions: number
  readonly cpu: CpuSeconds
  readonly cpuPerMessageUs: CpuPerMessage
  /** The share of all CPUs that other processes used. */
  readonly foreignShare: number
  /** INFO commandstats summed over the rounds (the bench's own commands left out); empty without Redis. */
  readonly commandStats: Readonly<Record<string, { readonly calls: number; readonly usec: number }>>
}

/** Pooled throughput of a side divided by the bare side's, and the same per group of rounds. */
export interface RatioToBare {
  readonly pooled: number
  /** One per group (one round of each side back to back), in run order. */
  readonly groups: readonly number[]
  readonly min: number
  readonly max: number
}

export interface ThroughputResult {
  readonly rounds: number
  readonly roundSeconds: number
  /** The run order of the rounds (A B C C B A ...). */
  readonly order: readonly SideName[]
  /** Messages per second during each side's warm-up. */
  readonly warmupRate: Readonly<Record<SideName, number>>
  readonly sides: Readonly<Record<SideName, Pooled>>
  readonly ratioToBare: Readonly<Record<SideName, RatioToBare>>
}

export interface SingleSessionResult {
  /** Messages per round. */
  readonly messages: number
  readonly order: readonly SideName[]
  readonly sides: Readonly<Record<SideName, Pooled>>
  /** Over the bare side, ms. */
  readonly addedLatencyMs: Readonly<Record<SideName, { readonly p50: number; readonly p99: number }>>
}

/** One command in INFO commandstats, per message of a side's throughput rounds. */
export interface CommandRow {
  readonly command: string
  readonly callsPerMessage: number
  /** Sent by Haraka's client, per message (MONITOR run of MONITOR_PER_SESSION-message sessions). */
  readonly fromHarakaPerMessage: number
  /** Run by a Lua script, per message (same MONITOR run). */
  readonly insideScriptPerMessage: number
  readonly usecPerMessage: number
  readonly usecPerCall: number
}

/** A MONITOR run of one session shape. */
export interface SessionShape {
  readonly label: string
  readonly perSession: number
  readonly sent: number
  readonly sessions: number
  /** Commands Haraka's clients sent. */
  readonly trips: number
  readonly tripsPerMessage: number
  readonly client: Readonly<Record<string, number>>
  readonly script: Readonly<Record<string, number>>
  readonly errors: number
}

/** One store call timed alone, one at a time. */
export interface StoreCallCost {
  /** Redis time of the command (commandstats). */
  readonly usecPerCall: number
  /** redis-server process CPU. */
  readonly cpuUsPerCall: number
  /** Round trip seen from node, ms. */
  readonly latency: Latency
}

/** Redis per message of one side that uses it. */
export interface SideRedisCost {
  /** Messages of the side's throughput rounds. */
  readonly messages: number
  readonly commands: readonly CommandRow[]
  /** Every command Redis ran (a script's own commands included), per message. */
  readonly commandsPerMessage: number
  /** redis-server process CPU per message under load, us. */
  readonly redisCpuUsPerMessage: number
  /** Of which executing commands (commandstats: scripts and the commands Haraka sent), us. */
  readonly commandUsecPerMessage: number
  /** MONITOR_PER_SESSION messages per session, then 1 message per session. */
  readonly shapes: readonly SessionShape[]
  /** Round trips = perMessage x messages + perSession x sessions, solved from the two shapes. */
  readonly roundTripsPerMessageSolved: number
  readonly roundTripsPerSessionSolved: number
}

export interface RedisCostResult {
  readonly limit: SideRedisCost
  readonly with: SideRedisCost
  /** hijack-guard's two mail-path store calls alone. */
  readonly idle: {
    readonly calls: number
    readonly record: StoreCallCost
    readonly getDisabled: StoreCallCost
  }
}

/** A busy account's cost: accounts held near 70 % of their limits with every bucket filled. */
export interface BusyRow {
  readonly label: string
  readonly buckets: number
  readonly bucketMs: number
  readonly windowMs: number
  /** Accounts recording in parallel. */
  readonly accounts: number
  /** Messages recorded during the measurement. */
  readonly messages: number
  /** The accounts' totals over their limits at the end, messages and recipients (mean, 0..1). */
  readonly messageFill: number
  readonly recipientFill: number
  /** Record calls that did not answer ok (there should be none). */
  readonly notOk: number
  /** Redis time of the record script per message (commandstats evalsha + eval), us. */
  readonly scriptUsecPerMessage: number
  /** redis-server process CPU per message (/proc), us. */
  readonly redisCpuUsPerMessage: number
  readonly commandsPerMessage: number
}

export interface BusyResult {
  readonly rows: readonly BusyRow[]
}

export interface MemoryRow {
  readonly label: string
  readonly accounts: number
  /** INFO memory used_memory with the accounts' keys minus right after FLUSHALL, per account, bytes. */
  readonly perAccount: number
  /** MEMORY USAGE of every key of an account (lib/store/keys.ts), mean over up to 1000 accounts, bytes. */
  readonly memoryUsage: number
  /** The same by key (its name in accountKeys: counts, evidence, ...), bytes per account. */
  readonly byKey: Readonly<Record<string, number>>
  readonly keysPerAccount: number
  /** Fields of one counts hash (0 when there is none). */
  readonly fields: number
  /** OBJECT ENCODING of one counts hash ('none' when there is none). */
  readonly encoding: string
  /** Busy rows: passes that ran into the next bucket (a bucket then has two messages, another none). */
  readonly overruns: number
  /** Redis time of one record script, us. */
  readonly recordUsec: number
}

export interface MemoryResult {
  readonly rows: readonly MemoryRow[]
  /** redis hash-max-listpack-entries. */
  readonly listpackMax: number
  /** used_memory per account that sent 3 messages in one session, default config. */
  readonly bytesPerActiveAccount: number
  /** used_memory per account with every bucket filled and 10 distinct summaries, default config. */
  readonly bytesPerBusyAccount: number
}

export interface ExactTrial {
  readonly account: string
  readonly accepted: number
  readonly refusedData: number
  readonly refusedMail: number
  readonly other: number
  readonly disabled: boolean
  /** ACCOUNT DISABLED lines Haraka logged for the account. */
  readonly incidents: number
}

export interface ExactnessResult {
  readonly sessions: number
  readonly limit: number
  /** The accepted count of the trial farthest from the limit. */
  readonly accepted: number
  readonly trials: readonly ExactTrial[]
  /** Every trial accepted exactly the limit. */
  readonly ok: boolean
}

export interface Target {
  readonly ok: boolean
  readonly text: string
  /** The figure the target judges. */
  readonly measured: number
  /** How the report shows it. */
  readonly value: string
}

export interface Machine {
  /** ISO 8601. */
  readonly date: string
  readonly cpus: number
  readonly cpuModel: string
  readonly memoryGiB: number
  readonly loadAverage: readonly number[]
  readonly node: string
  readonly haraka: string
  /** smtp.ini nodes (0: one process). */
  readonly harakaNodes: number
  readonly harakaLogLevel: string
  readonly redis: string
  /** Message size in bytes. */
  readonly messageBytes: number
}

/** The headline figures of one side. */
export interface SideFigures {
  /** Throughput under load, pooled over the side's rounds, and its rounds' min and max. */
  readonly msgPerSec: number
  readonly msgPerSecMin: number
  readonly msgPerSecMax: number
  /** msgPerSec over the bare side's, pooled, and the min and max over groups of rounds. */
  readonly ratioToBare: number
  readonly ratioToBareMin: number
  readonly ratioToBareMax: number
  /** Latency under load, ms. */
  readonly p50Ms: number
  readonly p99Ms: number
  /** Single-session latency, pooled, ms, with the min and max of the rounds. */
  readonly singleP50Ms: number
  readonly singleP99Ms: number
  readonly singleP50MsMin: number
  readonly singleP50MsMax: number
  readonly singleP99MsMin: number
  readonly singleP99MsMax: number
  /** Haraka's CPU per message under load, us. */
  readonly harakaCpuUsPerMsg: number
  /** redis-server CPU per message under load, us (0 for the bare side: it does not use Redis). */
  readonly redisCpuUsPerMsg: number
  /** Commands Redis ran per message under load (a script's own commands included). */
  readonly redisCommandsPerMsg: number
  /** Commands Haraka sent per message (MONITOR): MONITOR_PER_SESSION-message sessions, 1-message sessions. */
  readonly roundTripsPerMsg: number
  readonly roundTripsPerMsgSingle: number
}

/** hijack-guard's side, with the busy-account Redis CPU (default config, and buckets = 60). */
export interface WithFigures extends SideFigures {
  readonly redisCpuUsPerMsgBusy: number
  readonly redisCpuUsPerMsgBusy60: number
  /** Redis time of the record script per message, busy account, us. */
  readonly scriptUsecPerMsgBusy: number
  readonly scriptUsecPerMsgBusy60: number
}

export interface BenchResult {
  readonly options: BenchOptions
  readonly machine: Machine
  /** haraka-plugin-limit's version on the `limit` side. */
  readonly limitVersion: string
  readonly sides: {
    readonly without: SideFigures
    readonly limit: SideFigures
    readonly with: WithFigures
  }
  readonly throughput: ThroughputResult
  readonly single: SingleSessionResult
  readonly redis: RedisCostResult
  readonly busy: BusyResult
  readonly memory: MemoryResult
  readonly exactness: ExactnessResult
  readonly targets: readonly Target[]
  /** Wall time of the whole run. */
  readonly seconds: number
  readonly loadAverageAfter: readonly number[]
}
