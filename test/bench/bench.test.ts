// Smoke test of `npm run bench`: runs `tsx bench/index.ts --quick --json` (a tiny configuration)
// and checks its typed result: every section and every figure present and a number, every target
// judged. It does not judge the numbers: a quick run is far too short for that, and a missed
// target is reported, not an error. Exactness is the exception: it does not depend on the
// machine's speed. The human-readable report (on stderr with --json) is checked for its sections.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import * as path from 'node:path'
import type { BenchResult, Latency, Pooled } from '../../bench/result'

const ROOT = path.resolve(__dirname, '..', '..')
const BENCH = path.join(ROOT, 'bench', 'index.ts')
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx')
const TIMEOUT_MS = 240_000

interface BenchRun {
  readonly code: number | string
  readonly stdout: string
  readonly stderr: string
}

function runQuick(): Promise<BenchRun> {
  return new Promise((resolve) => {
    execFile(
      TSX,
      [BENCH, '--quick', '--json'],
      { timeout: TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (err.code ?? err.signal ?? 1) : 0, stdout, stderr })
      },
    )
  })
}

/** Every number in `value` (NaN was printed as null), with its path. */
function figures(value: unknown, at = 'result'): [string, unknown][] {
  if (value === null || typeof value === 'number') return [[at, value]]
  if (Array.isArray(value)) return value.flatMap((v: unknown, i) => figures(v, `${at}[${i}]`))
  if (typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => figures(v, `${at}.${k}`))
  return []
}

const isFiniteNumber = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x)

function finite(x: unknown, what: string): void {
  assert.ok(isFiniteNumber(x), `${what} is not a number: ${String(x)}`)
}

function count(x: unknown, what: string): void {
  assert.ok(Number.isInteger(x) && (x as number) >= 0, `${what} is not a count: ${String(x)}`)
}

function latencyOf(l: Latency, what: string): void {
  count(l.n, `${what} samples`)
  finite(l.p50, `${what} p50`)
  finite(l.p99, `${what} p99`)
}

function pooled(x: Pooled, rounds: number, what: string): void {
  finite(x.rate, `${what} msg/s`)
  assert.equal(x.rates.length, rounds, `${what}: one rate per round`)
  x.rates.forEach((r, i) => finite(r, `${what} round ${i + 1} msg/s`))
  latencyOf(x.latency, what)
  assert.equal(x.roundLatencies.length, rounds, `${what}: one latency per round`)
  x.roundLatencies.forEach((l, i) => latencyOf(l, `${what} round ${i + 1}`))
  assert.ok(x.sent > 0, `${what}: no message sent`)
  count(x.sent, `${what} messages`)
  count(x.errors, `${what} errors`)
  count(x.sessions, `${what} sessions`)
  for (const [k, v] of Object.entries(x.cpuPerMessageUs)) finite(v, `${what} ${k} CPU per message`)
  finite(x.foreignShare, `${what} other processes' share`)
}

describe('npm run bench -- --quick --json', function () {
  this.timeout(TIMEOUT_MS + 30_000)
  let run: BenchRun
  let result: BenchResult

  before(async function () {
    run = await runQuick()
    try {
      result = JSON.parse(run.stdout) as BenchResult
    } catch {
      // the first test says why
    }
  })

  const reported = (re: RegExp, what: string): void =>
    assert.match(run.stderr, re, `${what} missing from the bench report:\n${run.stderr}`)

  it('runs to the end, exits 0 and prints its result as JSON on stdout', function () {
    assert.equal(run.code, 0, `bench exited ${run.code}\n${run.stdout}\n${run.stderr}`)
    assert.ok(result, `stdout is not JSON:\n${run.stdout}`)
    assert.equal(result.options.quick, true)
    finite(result.seconds, 'the run time')
    reported(/^done in \d+ s/m, 'the closing line')
  })

  it('every figure in the result is a number (none NaN)', function () {
    const all = figures(result)
    assert.ok(all.length > 100, `only ${all.length} figures`)
    const bad = all.filter(([, v]) => !isFiniteNumber(v))
    assert.deepEqual(bad, [], 'figures that are not numbers')
  })

  it('says the machine it ran on', function () {
    const m = result.machine
    assert.ok(!Number.isNaN(Date.parse(m.date)), `date ${m.date}`)
    assert.ok(m.cpus > 0)
    assert.ok(m.memoryGiB > 0)
    assert.equal(m.loadAverage.length, 3)
    assert.match(m.node, /^v\d+\.\d+\.\d+$/)
    assert.match(m.haraka, /^\d+\.\d+\.\d+$/)
    assert.equal(m.harakaNodes, 0)
    assert.match(m.redis, /^\d+\.\d+/)
    reported(/^ {2}date \S+; \d+ CPUs .* GiB RAM; load average/m, 'the date, CPUs and RAM')
    reported(/^ {2}node v\d+\.\d+\.\d+; Haraka \d+\.\d+\.\d+ \(nodes=0.*\); redis \d+\.\d+/m, 'the versions')
    reported(/the sink \(a child/, 'the note that the sink shares the cores')
  })

  it('1. throughput and latency with and without the plugin, pooled, with the spread and the ratio', function () {
    const t = result.throughput
    assert.equal(t.rounds, result.options.rounds)
    assert.deepEqual(t.order.slice(0, 4), ['A', 'B', 'B', 'A'])
    pooled(t.without, t.rounds, 'without plugin')
    pooled(t.with, t.rounds, 'with plugin')
    finite(t.ratio, 'the throughput ratio')
    assert.equal(t.pairRatios.length, t.rounds)
    t.pairRatios.forEach((r, i) => finite(r, `pair ${i + 1} ratio`))
    finite(t.medianPairRatio, 'the median pair ratio')
    finite(t.addedLatencyMs.p50, 'the p50 added under load')
    finite(t.addedLatencyMs.p99, 'the p99 added under load')
    reported(/^1\. throughput: \d+ rounds .* interleaved A B B A/m, 'section 1')
  })

  it('1. CPU per message of Haraka, redis, the sink and the load generator', function () {
    for (const side of [result.throughput.without, result.throughput.with]) {
      const cpu = side.cpuPerMessageUs
      finite(cpu.haraka, 'Haraka CPU per message')
      finite(cpu.redis, 'redis CPU per message')
      finite(cpu.sink, 'sink CPU per message')
      finite(cpu.bench, 'load generator CPU per message')
    }
    finite(result.throughput.harakaCpuRatio, "Haraka's CPU ratio")
  })

  it('1. single-session latency p50/p99 with and without', function () {
    const s = result.single
    pooled(s.without, result.options.singleRounds, 'single session without')
    pooled(s.with, result.options.singleRounds, 'single session with')
    finite(s.addedLatencyMs.p50, 'the added p50')
    finite(s.addedLatencyMs.p99, 'the added p99')
    finite(s.addedHarakaCpuUs, 'the added Haraka CPU')
    finite(s.redisCpuUs, 'the redis CPU')
  })

  it('2. redis commands, round trips and CPU per message', function () {
    const r = result.redis
    for (const name of ['evalsha', 'hgetall']) {
      const row = r.commands.find((c) => c.command === name)
      assert.ok(row, `no ${name} row in ${JSON.stringify(r.commands)}`)
      finite(row.callsPerMessage, `${name} calls/msg`)
      finite(row.fromHarakaPerMessage, `${name} from Haraka`)
      finite(row.insideScriptPerMessage, `${name} inside script`)
      finite(row.usecPerMessage, `${name} usec/msg`)
      finite(row.usecPerCall, `${name} usec/call`)
    }
    finite(r.redisCpuUsPerMessage, 'redis CPU per message')
    finite(r.commandUsecPerMessage, 'redis command time per message')
    assert.deepEqual(
      r.shapes.map((s) => s.label),
      [`${result.options.perSession} messages per session`, '1 message per session'],
    )
    for (const s of r.shapes) {
      count(s.sent, `${s.label} messages`)
      count(s.sessions, `${s.label} sessions`)
      count(s.trips, `${s.label} round trips`)
      finite(s.tripsPerMessage, `${s.label} round trips per message`)
    }
    finite(r.roundTripsPerMessage, 'round trips per message')
    finite(r.roundTripsPerSession, 'round trips per session')
    for (const [name, c] of [
      ['record', r.idle.record],
      ['getDisabled', r.idle.getDisabled],
    ] as const) {
      finite(c.usecPerCall, `idle ${name} usec/call`)
      finite(c.cpuUsPerCall, `idle ${name} CPU/call`)
      latencyOf(c.latency, `idle ${name}`)
    }
    reported(/^2\. Redis per message/m, 'section 2')
  })

  it('3. redis memory per active account, by buckets and for a busy account', function () {
    const labels = [
      'default (500/30m, 2500/30m, 30 buckets), 1 message',
      'buckets = 10, 1 message',
      'buckets = 60, 1 message',
      'busy: default, all 30 buckets + evidence full',
      'busy: buckets = 60',
    ]
    for (const label of labels) {
      const row = result.memory.rows.find((r) => r.label === label)
      assert.ok(row, `no memory row "${label}"`)
      count(row.accounts, `${label}: accounts`)
      finite(row.perAccount, `${label}: used_memory/acct`)
      finite(row.memoryUsage, `${label}: MEMORY USAGE/acct`)
      finite(row.counts, `${label}: counts`)
      finite(row.evidence, `${label}: evidence`)
      count(row.fields, `${label}: hash fields`)
      assert.match(row.encoding, /^\w+$/)
      finite(row.recordUsec, `${label}: record usec`)
    }
    reported(/^3\. Redis memory per active account/m, 'section 3')
  })

  it('4. exactness: accepted count against the limit', function () {
    const e = result.exactness
    assert.equal(e.limit, result.options.exactLimit)
    assert.equal(e.sessions, result.options.exactSessions)
    const trial = e.trials.find((t) => t.account === 'burst1@test.example')
    assert.ok(trial, 'no trial of burst1@test.example')
    count(trial.accepted, 'accepted')
    reported(/^4\. exactness: \d+ parallel sessions of one account against messages = \d+\/1m/m, 'section 4')
    reported(/^ {2}burst1@test\.example: accepted \d+ \(limit \d+\)/m, 'the accepted count')
  })

  it('judges every target, and reports each with PASS or MISS and a number', function () {
    const targets = [
      /^throughput with plugin >= 95% of without$/,
      /^added p99 latency < 2 ms, single session$/,
      /^added p99 latency < 2 ms, \d+ sessions under load$/,
      /^<= 2 Redis round trips per message, \d+ messages per session$/,
      /^<= 2 Redis round trips per message, 1 message per session$/,
      /^<= 2 KB Redis memory per active account, default config, 1 message$/,
      /^accepted count == limit under parallel sessions$/,
    ]
    for (const re of targets) {
      const t = result.targets.find((x) => re.test(x.text))
      assert.ok(t, `no target ${re}`)
      assert.equal(typeof t.ok, 'boolean')
      finite(t.measured, `the figure of "${t.text}"`)
      const line = new RegExp(`^ {2}(PASS|MISS) {2}${re.source.slice(1, -1)}: [-+]?\\d+(?:\\.\\d+)?`, 'm')
      reported(line, `the target line "${t.text}"`)
    }
    reported(/^targets$/m, 'the targets block')
  })

  it('counts exactly: the accepted count equals the limit', function () {
    // the one figure a quick run can judge: it does not depend on the machine's speed
    const e = result.exactness
    for (const t of e.trials) assert.equal(t.accepted, e.limit, `${t.account}: ${JSON.stringify(t)}`)
    assert.equal(e.ok, true)
    const target = result.targets.find((t) => t.text === 'accepted count == limit under parallel sessions')
    assert.equal(target?.ok, true)
  })
})
