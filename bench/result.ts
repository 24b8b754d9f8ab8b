// The bench's result, as `--json` prints it: every figure the report shows, in numbers (ms, us,
// bytes, messages per second, ratios as fractions). A figure that could not be measured is NaN,
// which JSON prints as null.

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
}

export interface ThroughputResult {
  readonly rounds: number
  readonly roundSeconds: number
  /** A: with the plugin, B: without. */
  readonly order: readonly ('A' | 'B')[]
  /** Messages per second during the warm-up. */
  readonly warmupRate: { readonly with: number; readonly without: number }
  readonly with: Pooled
  readonly without: Pooled
  /** Pooled throughput with / without. */
  readonly ratio: number
  /** Throughput with / without of each pair of rounds, in run order. */
  readonly pairRatios: readonly number[]
  readonly medianPairRatio: number
  /** Latency under load with minus without, ms. */
  readonly addedLatencyMs: { readonly p50: number; readonly p99: number }
  /** Haraka's CPU per message without / with: the throughput ratio where Haraka's CPU is the limit. */
  readonly harakaCpuRatio: number
}

export interface SingleSessionResult {
  /** Messages per round. */
  readonly messages: number
  readonly order: readonly ('A' | 'B')[]
  readonly with: Pooled
  readonly without: Pooled
  /** With minus without, ms. */
  readonly addedLatencyMs: { readonly p50: number; readonly p99: number }
  /** Haraka CPU per message with minus without, us. */
  readonly addedHarakaCpuUs: number
  /** redis-server CPU per message with the plugin, us. */
  readonly redisCpuUs: number
}

/** One command in INFO commandstats, per message of the throughput rounds with the plugin. */
export interface CommandRow {
  readonly command: string
  readonly callsPerMessage: number
  /** Sent by Haraka's client, per message (MONITOR run). */
  readonly fromHarakaPerMessage: number
  /** Run by a Lua script, per message (MONITOR run). */
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
  /** Commands Haraka's client sent. */
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

export interface RedisCostResult {
  /** Messages of the throughput rounds with the plugin. */
  readonly messages: number
  readonly messagesPerSession: number
  readonly commands: readonly CommandRow[]
  /** redis-server process CPU per message, us. */
  readonly redisCpuUsPerMessage: number
  /** Of which executing the script and the HGETALLs Haraka sends, us. */
  readonly commandUsecPerMessage: number
  readonly shapes: readonly SessionShape[]
  /** Round trips = perMessage x messages + perSession x sessions, solved from the two shapes. */
  readonly roundTripsPerMessage: number
  readonly roundTripsPerSession: number
  readonly idle: {
    readonly calls: number
    readonly record: StoreCallCost
    readonly getDisabled: StoreCallCost
  }
}

export interface MemoryRow {
  readonly label: string
  readonly accounts: number
  /** INFO memory used_memory after minus before, per account, bytes. */
  readonly perAccount: number
  /** MEMORY USAGE of the counts hash + the evidence list, per account, bytes. */
  readonly memoryUsage: number
  readonly counts: number
  readonly evidence: number
  /** Fields of one counts hash. */
  readonly fields: number
  /** OBJECT ENCODING of one counts hash. */
  readonly encoding: string
  readonly keysPerAccount: number
  /** Redis time of one record script, us. */
  readonly recordUsec: number
}

export interface MemoryResult {
  readonly rows: readonly MemoryRow[]
  /** redis hash-max-listpack-entries. */
  readonly listpackMax: number
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

export interface BenchResult {
  readonly options: BenchOptions
  readonly machine: Machine
  readonly throughput: ThroughputResult
  readonly single: SingleSessionResult
  readonly redis: RedisCostResult
  readonly memory: MemoryResult
  readonly exactness: ExactnessResult
  readonly targets: readonly Target[]
  /** Wall time of the whole run. */
  readonly seconds: number
  readonly loadAverageAfter: readonly number[]
}
