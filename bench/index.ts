// npm run bench: what hijack-guard costs a real Haraka.
//
// Everything runs on 127.0.0.1 with support/: the packed plugin installed into fresh Haraka
// instances, a real redis-server, a loopback sink (in a child process of this one) standing in
// for the outside world, and a small SMTP client in this process that speaks AUTH PLAIN.
//
//   npm run bench                   full run (about 4 minutes)
//   npm run bench -- --quick        tiny configuration, a smoke test (well under a minute)
//   npm run -s bench -- --json      the result (bench/result.ts) as JSON on stdout, the report on stderr
//
// Options (bench/options.ts): --rounds N (measured throughput rounds per side), --round-seconds S,
// --warmup-seconds S, --sessions N, --per-session N (messages per SMTP session), --single N
// (messages per single-session round), --accounts N (memory section), --log-level LEVEL
// (Haraka's log level, default info).
//
// One module per measured scenario: throughput.ts and single-session.ts (section 1),
// redis-cost.ts (2), memory.ts (3), exactness.ts (4).
//
// Exit code: 0 when the benchmark ran (a missed target is reported, not an error), 1 when it
// could not run.

import * as os from 'node:os'
import { stopAll } from '../support'
import { setUp } from './env'
import { exactness } from './exactness'
import { MESSAGE_SIZE } from './load'
import { memory } from './memory'
import { parseOptions } from './options'
import { redisCost } from './redis-cost'
import { f0, f1, f2, reportTo, say } from './report'
import type { BenchResult } from './result'
import { singleSession } from './single-session'
import { loadLatencyTarget, throughput } from './throughput'

async function main(): Promise<BenchResult> {
  const o = parseOptions(process.argv.slice(2))
  if (o.json) reportTo(process.stderr)
  const started = Date.now()
  const env = await setUp(o)
  const m = env.machine

  say('hijack-guard benchmark' + (o.quick ? ' (--quick: a smoke test; too short for conclusions)' : ''))
  say(
    `  date ${m.date}; ${m.cpus} CPUs (${m.cpuModel}), ${f1(m.memoryGiB)} GiB RAM; load average ${m.loadAverage.map(f2).join(' ')}`,
  )
  say(
    `  node ${m.node}; Haraka ${m.haraka} (nodes=${m.harakaNodes}, one process, log level ${o.logLevel}); redis ${m.redis}`,
  )
  say('  all traffic on 127.0.0.1. On the same cores: the load generator (this process), the sink (a child')
  say('  process standing in for the outside world: its CPU is shown below), redis-server, and Haraka.')
  say(
    `  store = redis, limits never reached (messages = 100000000/30m), ${o.smtpAccounts} accounts, ${MESSAGE_SIZE} B messages,`,
  )
  say(
    `  1 recipient, ${o.sessions} parallel sessions of ${o.perSession} messages each (AUTH PLAIN, then MAIL FROM/RCPT/DATA).`,
  )

  const t = await throughput(env)
  const single = await singleSession(env)
  const redis = await redisCost(env, t.rounds, t.result.with)
  const mem = await memory(env)
  const exact = await exactness(env)
  const targets = [
    ...t.targets,
    ...single.targets,
    loadLatencyTarget(t.result, o.sessions),
    ...redis.targets,
    ...mem.targets,
    ...exact.targets,
  ]

  say()
  say('targets')
  for (const x of targets) say(`  ${x.ok ? 'PASS' : 'MISS'}  ${x.text}: ${x.value}`)
  const seconds = (Date.now() - started) / 1000
  const loadAverageAfter = os.loadavg()
  say()
  say(`done in ${f0(seconds)} s; load average now ${loadAverageAfter.map(f2).join(' ')}`)
  return {
    options: o,
    machine: m,
    throughput: t.result,
    single: single.result,
    redis: redis.result,
    memory: mem.result,
    exactness: exact.result,
    targets,
    seconds,
    loadAverageAfter,
  }
}

// support/process.ts stops what was started on these signals first; this says so and exits.
for (const [signal, number] of [
  ['SIGINT', 2],
  ['SIGTERM', 15],
] as const) {
  process.on(signal, () => {
    console.error(`\nbench: ${signal}, stopped`)
    process.exit(128 + number)
  })
}

async function finish(code: number): Promise<void> {
  await stopAll().catch(() => undefined)
  process.exit(code)
}

main().then(
  async (result) => {
    // stdout may be a pipe, written asynchronously: exit only once the result is out
    if (result.options.json) {
      await new Promise((resolve) => process.stdout.write(`${JSON.stringify(result, null, 2)}\n`, resolve))
    }
    return finish(0)
  },
  (err: unknown) => {
    console.error(`\nbench: could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
    return finish(1)
  },
)
