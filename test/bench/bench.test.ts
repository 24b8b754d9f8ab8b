// Smoke test of `npm run bench`: runs `tsx bench/index.ts --quick --json FILE` (a tiny
// configuration) and checks its typed result: the three sides with every headline figure a
// number, every section present, every target judged and reported with PASS or MISS and its
// number. It does not judge the numbers: a quick run is far too short for that, and a missed
// target is reported, not an error. Exactness is the exception: it does not depend on the
// machine's speed. The human-readable report (stdout) is checked for its sections.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseOptions } from '../../bench/options'
import type { BenchResult, Latency, Pooled, SideFigures } from '../../bench/result'

const ROOT = path.resolve(__dirname, '..', '..')
const BENCH = path.join(ROOT, 'bench', 'index.ts')
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx')
const TIMEOUT_MS = 240_000
const SIDES = ['without', 'limit', 'with'] as const

/** The fields the JSON result promises for every side (issue 10). */
const SIDE_FIELDS = ['msgPerSec', 'p50Ms', 'p99Ms', 'singleP50Ms', 'singleP99Ms', 'harakaCpuUsPerMsg'] as const
/** And for hijack-guard's side. */
const WITH_FIELDS = ['redisCpuUsPerMsg', 'redisCommandsPerMsg', 'roundTripsPerMsg', 'roundTripsPerMsgSingle'] as const

interface BenchRun {
  readonly code: number | string
  readonly stdout: string
  readonly stderr: string
}

function runQuick(jsonFile: string): Promise<BenchRun> {
  return new Promise((resolve) => {
    execFile(
      TSX,
      [BENCH, '--quick', '--json', jsonFile],
      { timeout: TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (err.code ?? err.signal ?? 1) : 0, stdout, stderr })
      },
    )
  })
}

/** Every number in `value` (NaN was written as null), with its path. */
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
  latencyOf(x.latency, what)
  assert.equal(x.roundLatencies.length, rounds, `${what}: one latency per round`)
  assert.ok(x.sent > 0, `${what}: no message sent`)
  count(x.errors, `${what} errors`)
  for (const [k, v] of Object.entries(x.cpuPerMessageUs)) finite(v, `${what} ${k} CPU per message`)
}

describe('bench options', function () {
  it('--json FILE names the file; --json alone means stdout', function () {
    assert.equal(parseOptions(['--json', 'out.json', '--quick']).json, 'out.json')
    assert.equal(parseOptions(['--json']).json, '-')
    assert.equal(parseOptions(['--json', '--quick']).json, '-')
    assert.equal(parseOptions(['--quick']).json, undefined)
  })
})

describe('npm run bench -- --quick --json FILE', function () {
  this.timeout(TIMEOUT_MS + 30_000)
  let run: BenchRun
  let result: BenchResult
  const jsonFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hijack-guard-bench-')), 'result.json')

  before(async function () {
    run = await runQuick(jsonFile)
    try {
      result = JSON.parse(fs.readFileSync(jsonFile, 'utf8')) as BenchResult
    } catch {
      // the first test says why
    }
  })

  after(function () {
    fs.rmSync(path.dirname(jsonFile), { recursive: true, force: true })
  })

  const reported = (re: RegExp, what: string): void =>
    assert.match(run.stdout, re, `${what} missing from the bench report:\n${run.stdout}\n${run.stderr}`)

  it('runs to the end, exits 0, prints its report and writes its result as JSON to FILE', function () {
    assert.equal(run.code, 0, `bench exited ${run.code}\n${run.stdout}\n${run.stderr}`)
    assert.ok(result, `${jsonFile} is not JSON`)
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

  it('says the machine it ran on and the three sides', function () {
    const m = result.machine
    assert.ok(!Number.isNaN(Date.parse(m.date)), `date ${m.date}`)
    assert.ok(m.cpus > 0)
    assert.match(m.node, /^v\d+\.\d+\.\d+$/)
    assert.match(m.haraka, /^\d+\.\d+\.\d+$/)
    assert.match(m.redis, /^\d+\.\d+/)
    assert.match(result.limitVersion, /^\d+\.\d+\.\d+$/)
    reported(/^ {2}node v\d+\.\d+\.\d+; Haraka \d+\.\d+\.\d+ \(nodes=0.*\); redis \d+\.\d+/m, 'the versions')
    reported(/^ {2}haraka-plugin-limit \d+\.\d+\.\d+: \[rate_rcpt_sender\]/m, "the peer's version and config")
  })

  it('has the headline figures of every side as numbers: sides.without, sides.limit, sides.with', function () {
    for (const side of SIDES) {
      const x: SideFigures | undefined = result.sides[side]
      assert.ok(x, `no sides.${side}`)
      for (const field of SIDE_FIELDS) finite(x[field], `sides.${side}.${field}`)
      assert.ok(x.msgPerSec > 0, `sides.${side}: no throughput`)
    }
    for (const field of WITH_FIELDS) finite(result.sides.with[field], `sides.with.${field}`)
    finite(result.sides.with.redisCpuUsPerMsgBusy, 'busy account redis CPU, default config')
    finite(result.sides.with.redisCpuUsPerMsgBusy60, 'busy account redis CPU, buckets = 60')
    finite(result.memory.bytesPerActiveAccount, 'memory.bytesPerActiveAccount')
    finite(result.memory.bytesPerBusyAccount, 'memory.bytesPerBusyAccount')
    finite(result.exactness.accepted, 'exactness.accepted')
    finite(result.exactness.limit, 'exactness.limit')
  })

  it('measures the peer really counting in Redis, and the bare side not using it', function () {
    assert.ok(
      result.sides.limit.redisCommandsPerMsg >= 1,
      `limit: ${result.sides.limit.redisCommandsPerMsg} commands/msg`,
    )
    assert.ok(result.sides.limit.roundTripsPerMsg >= 1, `limit: ${result.sides.limit.roundTripsPerMsg} round trips/msg`)
    assert.ok(result.sides.with.roundTripsPerMsg > 0, 'with: no round trip')
    assert.equal(result.sides.without.redisCommandsPerMsg, 0)
  })

  it('1. interleaves the three sides A B C C B A and pools each with its spread', function () {
    const t = result.throughput
    assert.equal(t.rounds, result.options.rounds)
    assert.deepEqual(t.order.slice(0, 6), ['without', 'limit', 'with', 'with', 'limit', 'without'])
    for (const side of SIDES) {
      pooled(t.sides[side], t.rounds, `throughput ${side}`)
      assert.equal(t.ratioToBare[side].groups.length, t.rounds, `${side}: one ratio per group`)
      pooled(result.single.sides[side], result.options.singleRounds, `single session ${side}`)
    }
    assert.equal(t.ratioToBare.without.pooled, 1)
    reported(/^1\. throughput: \d+ rounds .* interleaved without limit with with limit without/m, 'section 1')
    reported(/^ {3}single session: one session/m, 'the single-session part')
    reported(/^the three sides/m, 'the side-by-side table')
  })

  it('2. Redis per message of both plugins: commands, CPU and round trips in two session shapes', function () {
    for (const side of ['limit', 'with'] as const) {
      const c = result.redis[side]
      assert.deepEqual(
        c.shapes.map((s) => s.label),
        ['20 messages per session', '1 message per session'],
      )
      for (const s of c.shapes) assert.ok(s.sent > 0 && s.trips > 0, `${side} ${s.label}: ${JSON.stringify(s)}`)
    }
    assert.ok(
      result.redis.limit.commands.some((c) => c.command === 'incr'),
      'haraka-plugin-limit sent no INCR',
    )
    reported(/^2\. Redis per message/m, 'section 2')
  })

  it('3. busy accounts near 70 % of their limits, default config and buckets = 60', function () {
    const rows = result.busy.rows
    assert.deepEqual(
      rows.map((r) => r.buckets),
      [30, 60],
    )
    for (const r of rows) {
      assert.ok(r.messages > 0, `${r.label}: no message`)
      assert.equal(r.notOk, 0, `${r.label}: record calls not ok`)
      assert.ok(r.messageFill > 0.5 && r.messageFill < 0.9, `${r.label}: messages at ${r.messageFill} of the limit`)
      assert.ok(r.recipientFill > 0.5 && r.recipientFill < 0.9, `${r.label}: recipients at ${r.recipientFill}`)
    }
    reported(/^3\. Redis CPU per message of busy accounts/m, 'section 3')
  })

  it('4. Redis memory per account, active and busy', function () {
    for (const label of [
      'active: default config, 3 messages of one session',
      'busy: default config, every bucket filled, 10 distinct summaries',
      'busy: buckets = 60',
    ]) {
      const row = result.memory.rows.find((r) => r.label === label)
      assert.ok(row, `no memory row "${label}"`)
      assert.ok(row.perAccount > 0, `${label}: ${row.perAccount} bytes`)
      assert.ok(row.keysPerAccount >= 1, `${label}: no key`)
    }
    reported(/^4\. Redis memory per account/m, 'section 4')
  })

  it('judges every target of issue 10, and reports each with PASS or MISS and its number', function () {
    const targets = [
      /^throughput with hijack-guard within 2 points of haraka-plugin-limit \(ratios to bare\)$/,
      /^single-session p50 added by hijack-guard <= 0\.15 ms over bare$/,
      /^single-session p99 added by hijack-guard <= 0\.5 ms over bare$/,
      /^round trips per message <= 1 \+ 1\/20, sessions of 20 messages$/,
      /^round trips per message <= 2, one-message sessions$/,
      /^Redis CPU <= 40 us per message, busy account, default config$/,
      /^Redis CPU <= 40 us per message, busy account, buckets = 60$/,
      /^Redis memory <= 1 KB per active account, default config$/,
      /^exactness: parallel sessions against a limit accept exactly the limit$/,
    ]
    assert.equal(result.targets.length, targets.length, result.targets.map((t) => t.text).join('\n'))
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

  it('counts exactly: the accepted count equals the limit, and the account is disabled once', function () {
    // the one figure a quick run can judge: it does not depend on the machine's speed
    const e = result.exactness
    for (const t of e.trials) {
      assert.equal(t.accepted, e.limit, `${t.account}: ${JSON.stringify(t)}`)
      assert.equal(t.disabled, true, `${t.account} was not disabled: ${JSON.stringify(t)}`)
      assert.equal(t.incidents, 1, `${t.account}: ${JSON.stringify(t)}`)
    }
    assert.equal(e.accepted, e.limit)
    assert.equal(e.ok, true)
    reported(/^5\. exactness: \d+ parallel sessions/m, 'section 5')
  })
})
