// Interleaved measurement: load against one side, wait until the sink has every message, and
// read the CPU time of each process around both; then pool rounds of one side.

import * as os from 'node:os'
import { SIDE_NAMES, type BenchEnv, type Side, type SideName } from './env'
import { load, type LoadOptions, type LoadResult } from './load'
import { addStats, parseCommandstats, type CommandStats } from './redis-stats'
import type { CpuPerMessage, CpuSeconds, Pooled } from './result'
import { latency, machineBusy, procCpu, selfCpu } from './stats'

export interface Measured extends LoadResult {
  /** Messages the sink had not received 60 s after the load. */
  readonly undelivered: number
  readonly cpu: CpuSeconds
  /** Load plus drain, seconds. */
  readonly wall: number
  /** INFO commandstats of the round, for a side that uses Redis. */
  readonly stats: CommandStats | null
}

/** `rounds` groups of one round per side, every other group reversed: A B C C B A A B C ... */
export function interleaved(rounds: number, sides: readonly SideName[] = SIDE_NAMES): SideName[] {
  const order: SideName[] = []
  for (let i = 0; i < rounds; i++) order.push(...(i % 2 === 0 ? sides : [...sides].reverse()))
  return order
}

export async function measure(env: BenchEnv, side: Side, loadOptions: Omit<LoadOptions, 'port'>): Promise<Measured> {
  const { redis, sink } = env
  const sink0 = await sink.count()
  if (side.usesRedis) await redis.command(['CONFIG', 'RESETSTAT'])
  const sample = () => ({
    haraka: procCpu(side.haraka.pid),
    redis: procCpu(redis.pid),
    sink: procCpu(sink.pid),
    bench: selfCpu(),
    machine: machineBusy(),
  })
  const c0 = sample()
  const r = await load({ port: side.haraka.port, ...loadOptions })
  const drainStart = Date.now()
  let delivered = 0
  for (;;) {
    delivered = (await sink.count()) - sink0
    if (delivered >= r.sent || Date.now() - drainStart > 60_000) break
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  const c1 = sample()
  const cpu = {
    haraka: c1.haraka - c0.haraka,
    redis: c1.redis - c0.redis,
    sink: c1.sink - c0.sink,
    bench: c1.bench - c0.bench,
  }
  const machine = c1.machine - c0.machine
  const stats = side.usesRedis ? parseCommandstats(await redis.command(['INFO', 'commandstats'])) : null
  if (!side.haraka.alive()) throw new Error(`Haraka ${side.name} died:\n${side.haraka.log().slice(-3000)}`)
  return {
    ...r,
    undelivered: Math.max(0, r.sent - delivered),
    cpu: { ...cpu, foreign: Math.max(0, machine - cpu.haraka - cpu.redis - cpu.sink - cpu.bench) },
    wall: r.seconds + (Date.now() - drainStart) / 1000,
    stats,
  }
}

const sum = (list: readonly Measured[], f: (r: Measured) => number): number => list.reduce((a, r) => a + f(r), 0)

/** Rounds of one side pooled. */
export function pool(list: readonly Measured[]): Pooled {
  const sent = sum(list, (r) => r.sent)
  const commandStats: CommandStats = {}
  for (const r of list) if (r.stats) addStats(commandStats, r.stats)
  const cpu: CpuSeconds = {
    haraka: sum(list, (r) => r.cpu.haraka),
    redis: sum(list, (r) => r.cpu.redis),
    sink: sum(list, (r) => r.cpu.sink),
    bench: sum(list, (r) => r.cpu.bench),
    foreign: sum(list, (r) => r.cpu.foreign),
  }
  const perMessage = (seconds: number): number => (seconds / sent) * 1e6
  const cpuPerMessageUs: CpuPerMessage = {
    haraka: perMessage(cpu.haraka),
    redis: perMessage(cpu.redis),
    sink: perMessage(cpu.sink),
    bench: perMessage(cpu.bench),
  }
  return {
    sent,
    rate: sent / sum(list, (r) => r.seconds),
    rates: list.map((r) => r.sent / r.seconds),
    latency: latency(list.flatMap((r) => r.latencies)),
    roundLatencies: list.map((r) => latency(r.latencies)),
    errors: sum(list, (r) => r.errors),
    firstErrors: list.flatMap((r) => r.firstErrors).slice(0, 5),
    undelivered: sum(list, (r) => r.undelivered),
    sessions: sum(list, (r) => r.sessions),
    cpu,
    cpuPerMessageUs,
    foreignShare: cpu.foreign / sum(list, (r) => r.wall) / os.cpus().length,
    commandStats,
  }
}
