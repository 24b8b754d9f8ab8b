// Single session: one session sends messages back to back, the sides interleaved A B C C B A:
// the cleanest signal of a plugin's latency, since nothing queues behind anything.

import { interleaved, measure, pool, type Measured } from './ab'
import { SIDE_LABELS, SIDE_NAMES, type BenchEnv, type SideName } from './env'
import { f0, f2, f3, say, signed, table, target } from './report'
import type { Latency, Pooled, SingleSessionResult, Target } from './result'

/** Added single-session latency over bare the targets allow, ms. */
export const MAX_ADDED_P50_MS = 0.15
export const MAX_ADDED_P99_MS = 0.5

export async function singleSession(env: BenchEnv): Promise<{ result: SingleSessionResult; targets: Target[] }> {
  const o = env.options
  const order = interleaved(o.singleRounds)
  say()
  say(`   single session: one session, ${o.single} messages back to back per round, ${order.join(' ')}`)
  const rounds: Record<SideName, Measured[]> = { without: [], limit: [], with: [] }
  for (const name of order) {
    const loadOptions = { accounts: env.accounts, sessions: 1, perSession: o.single, maxMessages: o.single }
    rounds[name].push(await measure(env, env.sides[name], loadOptions))
  }
  const sides: Record<SideName, Pooled> = {
    without: pool(rounds.without),
    limit: pool(rounds.limit),
    with: pool(rounds.with),
  }
  const bare = sides.without.latency
  const added = (name: SideName) => ({
    p50: sides[name].latency.p50 - bare.p50,
    p99: sides[name].latency.p99 - bare.p99,
  })
  const addedLatencyMs = { without: added('without'), limit: added('limit'), with: added('with') }
  const perRound = (list: readonly Latency[]): string => list.map((l) => `${f2(l.p50)}/${f2(l.p99)}`).join(' ')
  table([
    ['single session', 'p50 ms', 'p99 ms', 'added p50', 'added p99', 'msg/s', 'Haraka CPU us/msg', 'rounds p50/p99'],
    ...SIDE_NAMES.map((name) => {
      const x = sides[name]
      return [
        SIDE_LABELS[name],
        f3(x.latency.p50),
        f3(x.latency.p99),
        signed(addedLatencyMs[name].p50, 3),
        signed(addedLatencyMs[name].p99, 3),
        f0(x.rate),
        f0(x.cpuPerMessageUs.haraka),
        perRound(x.roundLatencies),
      ]
    }),
  ])
  const errors = SIDE_NAMES.flatMap((k) => sides[k].firstErrors)
  if (errors.length) say(`  ERRORS: ${errors.join(' | ')}`)
  const w = addedLatencyMs.with
  const targets = [
    target(
      w.p50 <= MAX_ADDED_P50_MS,
      `single-session p50 added by hijack-guard <= ${MAX_ADDED_P50_MS} ms over bare`,
      w.p50,
      `${signed(w.p50, 3)} ms (haraka-plugin-limit ${signed(addedLatencyMs.limit.p50, 3)} ms)`,
    ),
    target(
      w.p99 <= MAX_ADDED_P99_MS,
      `single-session p99 added by hijack-guard <= ${MAX_ADDED_P99_MS} ms over bare`,
      w.p99,
      `${signed(w.p99, 3)} ms (haraka-plugin-limit ${signed(addedLatencyMs.limit.p99, 3)} ms)`,
    ),
  ]
  return { result: { messages: o.single, order, sides, addedLatencyMs }, targets }
}
