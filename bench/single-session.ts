// Section 1, single session: one session sends messages back to back, A B B A: the cleanest
// signal of the plugin's latency, since nothing queues behind anything.

import { interleaved, measure, pool, type Measured } from './ab'
import type { BenchEnv } from './env'
import { f0, f2, f3, say, signed, table, target } from './report'
import type { Latency, SingleSessionResult, Target } from './result'

export async function singleSession(env: BenchEnv): Promise<{ result: SingleSessionResult; targets: Target[] }> {
  const o = env.options
  const order = interleaved(o.singleRounds)
  say()
  say(`   single session: one session, ${o.single} messages back to back per round, ${order.join(' ')}`)
  const rounds: { A: Measured[]; B: Measured[] } = { A: [], B: [] }
  for (const k of order) {
    const loadOptions = { accounts: env.accounts, sessions: 1, perSession: o.single, maxMessages: o.single }
    rounds[k].push(await measure(env, env.sides[k], loadOptions))
  }
  const SA = pool(rounds.A)
  const SB = pool(rounds.B)
  const perRound = (list: readonly Latency[]): string => list.map((l) => `${f2(l.p50)}/${f2(l.p99)}`).join(' ')
  table([
    ['single session', 'p50 ms', 'p99 ms', 'msg/s', 'Haraka CPU us/msg', 'rounds p50/p99'],
    ...[['without plugin', SB] as const, ['with plugin', SA] as const].map(([label, x]) => [
      label,
      f3(x.latency.p50),
      f3(x.latency.p99),
      f0(x.rate),
      f0(x.cpuPerMessageUs.haraka),
      perRound(x.roundLatencies),
    ]),
  ])
  const addedLatencyMs = { p50: SA.latency.p50 - SB.latency.p50, p99: SA.latency.p99 - SB.latency.p99 }
  const addedHarakaCpuUs = SA.cpuPerMessageUs.haraka - SB.cpuPerMessageUs.haraka
  const redisCpuUs = SA.cpuPerMessageUs.redis
  say(
    `  added by the plugin: p50 ${signed(addedLatencyMs.p50, 3)} ms, p99 ${signed(addedLatencyMs.p99, 3)} ms, Haraka CPU ${signed(addedHarakaCpuUs, 0)} us/msg, redis CPU ${f0(redisCpuUs)} us/msg`,
  )
  if (SA.errors + SB.errors) say(`  ERRORS: ${[...SA.firstErrors, ...SB.firstErrors].join(' | ')}`)
  const targets = [
    target(
      addedLatencyMs.p99 < 2,
      'added p99 latency < 2 ms, single session',
      addedLatencyMs.p99,
      `${signed(addedLatencyMs.p99, 3)} ms`,
    ),
  ]
  return {
    result: { messages: o.single, order, with: SA, without: SB, addedLatencyMs, addedHarakaCpuUs, redisCpuUs },
    targets,
  }
}
