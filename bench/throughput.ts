// Section 1: throughput, latency under load and CPU per message, with and without the plugin,
// in interleaved rounds after a warm-up of each side.

import * as os from 'node:os'
import { interleaved, measure, pool, type Measured } from './ab'
import type { BenchEnv } from './env'
import { f0, f1, f2, pct, say, signed, table, target } from './report'
import type { Target, ThroughputResult } from './result'
import { latency } from './stats'

export async function throughput(
  env: BenchEnv,
): Promise<{ result: ThroughputResult; rounds: readonly Measured[]; targets: Target[] }> {
  const o = env.options
  const { A: withSide, B: withoutSide } = env.sides
  const shape = { accounts: env.accounts, sessions: o.sessions, perSession: o.perSession }

  // a fresh Haraka's throughput climbs for its first 20-25 s under load
  say()
  say(`warming up each Haraka for ${o.warmupSeconds} s under load ...`)
  const warmupRate = { with: NaN, without: NaN }
  for (const side of [withSide, withoutSide]) {
    const r = await measure(env, side, { ...shape, seconds: o.warmupSeconds })
    warmupRate[side.name] = r.sent / r.seconds
    say(`  ${side.name.padEnd(7)} the plugin: ${f0(r.sent / r.seconds)} msg/s during warm-up (${r.errors} errors)`)
    if (r.sent === 0)
      throw new Error(`no message went through Haraka ${side.name} the plugin: ${r.firstErrors.join('; ')}`)
  }

  const order = interleaved(o.rounds)
  say()
  say(`1. throughput: ${o.rounds} rounds of ${o.roundSeconds} s per side, interleaved ${order.join(' ')}`)
  const rounds: { A: Measured[]; B: Measured[] } = { A: [], B: [] }
  for (const k of order) {
    const side = env.sides[k]
    const r = await measure(env, side, { ...shape, seconds: o.roundSeconds })
    rounds[k].push(r)
    const l = latency(r.latencies)
    const n = String(rounds.A.length + rounds.B.length).padStart(2)
    const other = pct(r.cpu.foreign / r.wall / os.cpus().length)
    say(
      `  round ${n} ${side.name.padEnd(7)}: ${f0(r.sent / r.seconds).padStart(5)} msg/s  p50 ${f1(l.p50)} ms  p99 ${f1(l.p99)} ms  errors ${r.errors}  other processes ${other} of the CPUs`,
    )
  }
  const A = pool(rounds.A)
  const B = pool(rounds.B)
  // pair ratios in run order: (A1,B1), (B2,A2), ...
  const pairRatios = rounds.A.map((a, i) => {
    const b = rounds.B[i]
    return b ? a.sent / a.seconds / (b.sent / b.seconds) : NaN
  })
  const ratio = A.rate / B.rate
  say()
  table([
    ['pooled', 'msg/s', 'rounds min-max', 'p50 ms', 'p99 ms', 'messages', 'errors'],
    ...[['without plugin', B] as const, ['with plugin', A] as const].map(([label, x]) => [
      label,
      f0(x.rate),
      `${f0(Math.min(...x.rates))}-${f0(Math.max(...x.rates))}`,
      f2(x.latency.p50),
      f2(x.latency.p99),
      x.sent,
      x.errors,
    ]),
  ])
  const medianPairRatio = [...pairRatios].sort((x, y) => x - y)[Math.floor(pairRatios.length / 2)] ?? NaN
  const pairSpread = `${pct(Math.min(...pairRatios))}-${pct(Math.max(...pairRatios))}`
  say(
    `  throughput ratio with/without: ${pct(ratio)} pooled; per pair ${pairRatios.map(pct).join(' ')} (median ${pct(medianPairRatio)}, min-max ${pairSpread})`,
  )
  const addedLatencyMs = { p50: A.latency.p50 - B.latency.p50, p99: A.latency.p99 - B.latency.p99 }
  say(
    `  latency under load (MAIL FROM -> 250 after DATA): p50 ${signed(addedLatencyMs.p50)} ms, p99 ${signed(addedLatencyMs.p99)} ms with the plugin`,
  )
  if (A.errors + B.errors) say(`  ERRORS: ${[...A.firstErrors, ...B.firstErrors].join(' | ')}`)
  if (A.undelivered + B.undelivered) {
    say(`  NOT DELIVERED to the sink within 60 s: ${A.undelivered} with, ${B.undelivered} without`)
  }
  say(
    `  other processes on the machine used ${pct(B.foreignShare)} (without) and ${pct(A.foreignShare)} (with) of the CPUs during the rounds`,
  )

  const a = A.cpuPerMessageUs
  const b = B.cpuPerMessageUs
  say()
  say('  CPU time per message (us), pooled over the throughput rounds (utime+stime from /proc):')
  table(
    [
      ['process', 'without', 'with', 'delta'],
      [
        'Haraka',
        f0(b.haraka),
        f0(a.haraka),
        `${signed(a.haraka - b.haraka, 0)} (${signed((a.haraka / b.haraka - 1) * 100, 1)}%)`,
      ],
      ['redis-server', f0(b.redis), f0(a.redis), signed(a.redis - b.redis, 0)],
      ['sink (outside world)', f0(b.sink), f0(a.sink), signed(a.sink - b.sink, 0)],
      ['load generator', f0(b.bench), f0(a.bench), signed(a.bench - b.bench, 0)],
    ],
    { indent: '    ' },
  )
  const harakaCpuRatio = b.haraka / a.haraka
  say(
    `  Haraka's CPU per message without/with: ${pct(harakaCpuRatio)}, the throughput ratio to expect where Haraka's CPU is the`,
  )
  say('  limit (less sensitive to what else runs on the machine than the measured ratio above)')

  const targets = [
    target(
      ratio >= 0.95,
      'throughput with plugin >= 95% of without',
      ratio,
      `${pct(ratio)} pooled (median pair ${pct(medianPairRatio)}, pairs ${pairSpread}; Haraka CPU/msg ratio ${pct(harakaCpuRatio)})`,
    ),
  ]
  return {
    result: {
      rounds: o.rounds,
      roundSeconds: o.roundSeconds,
      order,
      warmupRate,
      with: A,
      without: B,
      ratio,
      pairRatios,
      medianPairRatio,
      addedLatencyMs,
      harakaCpuRatio,
    },
    rounds: rounds.A,
    targets,
  }
}

/** The target on the latency the plugin adds under load (reported after the single-session one). */
export function loadLatencyTarget(result: ThroughputResult, sessions: number): Target {
  const added = result.addedLatencyMs.p99
  return target(added < 2, `added p99 latency < 2 ms, ${sessions} sessions under load`, added, `${signed(added, 2)} ms`)
}
