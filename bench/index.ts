// npm run bench: what hijack-guard costs a real Haraka, next to haraka-plugin-limit.
//
// Everything runs on 127.0.0.1 with support/: three fresh Haraka instances (bare; with
// haraka-plugin-limit counting recipients per sender; with the packed hijack-guard), a real
// redis-server both plugins share, a loopback sink (in a child process of this one) standing in
// for the outside world, and a small SMTP client in this process that speaks AUTH PLAIN.
//
//   npm run bench                          full run (about 8 minutes)
//   npm run bench -- --quick               tiny configuration, a smoke test (about a minute)
//   npm run bench -- --json FILE           also write the result (bench/result.ts) as JSON to FILE
//   npm run -s bench -- --json             the JSON on stdout, the report on stderr
//
// Options (bench/options.ts): --rounds N (measured throughput rounds per side), --round-seconds S,
// --warmup-seconds S, --sessions N, --per-session N (messages per SMTP session), --single N
// (messages per single-session round), --accounts N (memory section), --log-level LEVEL
// (Haraka's log level, default info).
//
// One module per measured scenario: throughput.ts and single-session.ts (section 1),
// redis-cost.ts (2), busy.ts (3), memory.ts (4), exactness.ts (5); figures.ts gathers the
// headline figures of each side.
//
// Exit code: 0 when the benchmark ran (a missed target is reported, not an error), 1 when it
// could not run.

import * as fs from 'node:fs'
import * as os from 'node:os'
import { stopAll } from '../support'
import { busy } from './busy'
import { SIDE_LABELS, SIDE_NAMES, setUp } from './env'
import { exactness } from './exactness'
import { reportSides, sideFigures } from './figures'
import { MESSAGE_SIZE } from './load'
import { memory } from './memory'
import { parseOptions } from './options'
import { redisCost } from './redis-cost'
import { f0, f1, f2, reportTo, say } from './report'
import type { BenchResult } from './result'
import { singleSession } from './single-session'
import { throughput } from './throughput'

async function main(): Promise<BenchResult> {
  const o = parseOptions(process.argv.slice(2))
  if (o.json === '-') reportTo(process.stderr)
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
  say(`  three Haraka instances: ${SIDE_NAMES.map((k) => SIDE_LABELS[k]).join('; ')}`)
  say(`  haraka-plugin-limit ${env.limitVersion}: [rate_rcpt_sender] default = 100000000/30m (never reached);`)
  say('  hijack-guard: store = redis, messages = recipients = 100000000/30m (never reached); one redis-server for both')
  say('  all traffic on 127.0.0.1. On the same cores: the load generator (this process), the sink (a child')
  say('  process standing in for the outside world: its CPU is shown below), redis-server, and Haraka.')
  say(
    `  load: ${o.smtpAccounts} accounts, ${MESSAGE_SIZE} B messages, 1 recipient, ${o.sessions} parallel sessions of ${o.perSession} messages`,
  )
  say('  each (AUTH PLAIN, then MAIL FROM/RCPT/DATA).')

  const t = await throughput(env)
  const single = await singleSession(env)
  const redis = await redisCost(env, { limit: t.result.sides.limit, with: t.result.sides.with })
  const busyResult = await busy(env)
  const mem = await memory(env)
  const exact = await exactness(env)
  const targets = [
    ...t.targets,
    ...single.targets,
    ...redis.targets,
    ...busyResult.targets,
    ...mem.targets,
    ...exact.targets,
  ]
  const sides = sideFigures(t.result, single.result, redis.result, busyResult.result)
  reportSides(sides)

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
    limitVersion: env.limitVersion,
    sides,
    throughput: t.result,
    single: single.result,
    redis: redis.result,
    busy: busyResult.result,
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
    const json = `${JSON.stringify(result, null, 2)}\n`
    if (result.options.json === '-') await new Promise((resolve) => process.stdout.write(json, resolve))
    else if (result.options.json) fs.writeFileSync(result.options.json, json)
    return finish(0)
  },
  (err: unknown) => {
    console.error(`\nbench: could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
    return finish(1)
  },
)
