// Throughput, latency under load and CPU per message of the three sides, in interleaved rounds
// (A B C C B A ...) after a warm-up of each side; each side as a ratio to the bare side.

import * as os from 'node:os'
import { interleaved, measure, pool, type Measured } from './ab'
import { SIDE_LABELS, SIDE_NAMES, type BenchEnv, type SideName } from './env'
import { f0, f2, pct, say, signed, table, target } from './report'
import type { Pooled, RatioToBare, Target, ThroughputResult } from './result'
import { latency } from './stats'

/** The rounds of each side must be at least this many for the throughput target to count. */
export const MIN_ROUNDS = 4

const rate = (r: Measured): number => r.sent / r.seconds

type PerSide<T> = Record<SideName, T>

function perSide<T>(make: (side: SideName) => T): PerSide<T> {
  return { without: make('without'), limit: make('limit'), with: make('with') }
}

export async function throughput(env: BenchEnv): Promise<{ result: ThroughputResult; targets: Target[] }> {
  const o = env.options
  const shape = { accounts: env.accounts, sessions: o.sessions, perSession: o.perSession }

  // a fresh Haraka's throughput climbs for its first 20-25 s under load
  say()
  say(`warming up each Haraka for ${o.warmupSeconds} s under load ...`)
  const warmupRate = perSide(() => NaN)
  for (const name of SIDE_NAMES) {
    const r = await measure(env, env.sides[name], { ...shape, seconds: o.warmupSeconds })
    warmupRate[name] = rate(r)
    say(`  ${SIDE_LABELS[name].padEnd(28)} ${f0(rate(r))} msg/s during warm-up (${r.errors} errors)`)
    if (r.sent === 0) throw new Error(`no message went through Haraka ${name}: ${r.firstErrors.join('; ')}`)
    // the peer must really count, or the comparison means nothing
    if (name === 'limit' && !r.stats?.incr?.calls) throw new Error('haraka-plugin-limit sent no INCR to Redis')
  }

  const order = interleaved(o.rounds)
  say()
  say(`1. throughput: ${o.rounds} rounds of ${o.roundSeconds} s per side, interleaved ${order.join(' ')}`)
  const rounds = perSide<Measured[]>(() => [])
  let n = 0
  for (const name of order) {
    const r = await measure(env, env.sides[name], { ...shape, seconds: o.roundSeconds })
    rounds[name].push(r)
    const l = latency(r.latencies)
    const other = pct(r.cpu.foreign / r.wall / os.cpus().length)
    say(
      `  round ${String(++n).padStart(2)} ${name.padEnd(7)}: ${f0(rate(r)).padStart(5)} msg/s  p50 ${f2(l.p50)} ms  p99 ${f2(l.p99)} ms  errors ${r.errors}  other processes ${other} of the CPUs`,
    )
  }
  const sides = perSide((name) => pool(rounds[name]))
  const ratioToBare = perSide((name): RatioToBare => {
    const groups = rounds[name].map((r, g) => {
      const bare = rounds.without[g]
      return bare ? rate(r) / rate(bare) : NaN
    })
    return {
      pooled: sides[name].rate / sides.without.rate,
      groups,
      min: Math.min(...groups),
      max: Math.max(...groups),
    }
  })
  say()
  table([
    ['pooled', 'msg/s', 'rounds min-max', 'vs bare', 'groups min-max', 'p50 ms', 'p99 ms', 'messages', 'errors'],
    ...SIDE_NAMES.map((name) => {
      const x = sides[name]
      const q = ratioToBare[name]
      return [
        SIDE_LABELS[name],
        f0(x.rate),
        `${f0(Math.min(...x.rates))}-${f0(Math.max(...x.rates))}`,
        pct(q.pooled),
        `${pct(q.min)}-${pct(q.max)}`,
        f2(x.latency.p50),
        f2(x.latency.p99),
        x.sent,
        x.errors,
      ]
    }),
  ])
  say("  vs bare: pooled msg/s over the bare side's; groups: the same for each group of adjacent rounds (A B C)")
  const all = SIDE_NAMES.map((name) => sides[name])
  const errors = all.flatMap((x) => x.firstErrors)
  if (errors.length) say(`  ERRORS: ${errors.join(' | ')}`)
  const undelivered = SIDE_NAMES.filter((name) => sides[name].undelivered)
  if (undelivered.length) {
    say(`  NOT DELIVERED to the sink within 60 s: ${undelivered.map((k) => `${sides[k].undelivered} ${k}`).join(', ')}`)
  }
  say(
    `  other processes on the machine used ${SIDE_NAMES.map((k) => `${pct(sides[k].foreignShare)} (${k})`).join(', ')} of the CPUs during the rounds`,
  )
  cpuTable(sides)

  const gap = ratioToBare.with.pooled - ratioToBare.limit.pooled
  const enough = o.rounds >= MIN_ROUNDS
  const targets = [
    target(
      enough && gap >= -0.02,
      'throughput with hijack-guard within 2 points of haraka-plugin-limit (ratios to bare)',
      gap * 100,
      `${signed(gap * 100, 1)} points (with ${pct(ratioToBare.with.pooled)}, limit ${pct(ratioToBare.limit.pooled)} of bare, pooled over ${o.rounds} rounds per side${enough ? '' : `; fewer than ${MIN_ROUNDS} rounds: not judged as met`})`,
    ),
  ]
  return {
    result: { rounds: o.rounds, roundSeconds: o.roundSeconds, order, warmupRate, sides, ratioToBare },
    targets,
  }
}

function cpuTable(sides: Readonly<PerSide<Pooled>>): void {
  const bare = sides.without.cpuPerMessageUs
  const cell = (name: SideName, key: keyof Pooled['cpuPerMessageUs']): string => {
    const v = sides[name].cpuPerMessageUs[key]
    return name === 'without' ? f0(v) : `${f0(v)} (${signed(v - bare[key], 0)})`
  }
  say()
  say(
    '  CPU time per message (us), pooled over the throughput rounds (utime+stime from /proc; in brackets: over bare):',
  )
  table(
    [
      ['process', ...SIDE_NAMES],
      ['Haraka', ...SIDE_NAMES.map((k) => cell(k, 'haraka'))],
      ['redis-server', ...SIDE_NAMES.map((k) => cell(k, 'redis'))],
      ['sink (outside world)', ...SIDE_NAMES.map((k) => cell(k, 'sink'))],
      ['load generator', ...SIDE_NAMES.map((k) => cell(k, 'bench'))],
    ],
    { indent: '    ' },
  )
}
