'use strict'

// Smoke test of `npm run bench`: runs `node bench/bench.js --quick` (a tiny configuration) and
// checks that it prints every section and every figure with a number. It does not judge the
// numbers: a quick run is far too short for that, and a missed target is reported, not an error.

const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const path = require('node:path')

const BENCH = path.resolve(__dirname, '..', '..', 'bench', 'bench.js')
const NUM = '[-+]?\\d+(?:\\.\\d+)?'
const TIMEOUT_MS = 150000

function runQuick () {
  return new Promise((resolve) => {
    execFile(process.execPath, [BENCH, '--quick'], { timeout: TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal ?? 1) : 0, stdout, stderr })
    })
  })
}

describe('npm run bench -- --quick', function () {
  this.timeout(TIMEOUT_MS + 30000)
  let run

  before(async function () {
    run = await runQuick()
  })

  const has = (re, what) => assert.match(run.stdout, re, `${what} missing from the bench output:\n${run.stdout}\n${run.stderr}`)

  it('runs to the end and exits 0', function () {
    assert.equal(run.code, 0, `bench exited ${run.code}\n${run.stdout}\n${run.stderr}`)
    has(/^done in \d+ s/m, 'the closing line')
  })

  it('prints the machine it ran on', function () {
    has(/^ {2}date \S+; \d+ CPUs .* GiB RAM; load average/m, 'the date, CPUs and RAM')
    has(/^ {2}node v\d+\.\d+\.\d+; Haraka \d+\.\d+\.\d+ \(nodes=0.*\); redis \d+\.\d+/m, 'node, Haraka and redis versions')
    has(/the sink \(a child/, 'the note that the sink shares the cores')
  })

  it('1. throughput and latency with and without the plugin, pooled, with the spread and the ratio', function () {
    has(/^1\. throughput: \d+ rounds .* interleaved A B B A/m, 'section 1')
    has(new RegExp(`^ {2}without plugin +${NUM} +${NUM}-${NUM} +${NUM} +${NUM} +\\d+ +\\d+$`, 'm'), 'the pooled row without the plugin')
    has(new RegExp(`^ {2}with plugin +${NUM} +${NUM}-${NUM} +${NUM} +${NUM} +\\d+ +\\d+$`, 'm'), 'the pooled row with the plugin')
    has(new RegExp(`throughput ratio with/without: ${NUM}% pooled; per pair .*\\(median ${NUM}%, min-max ${NUM}%-${NUM}%\\)`), 'the ratio and its spread')
    has(new RegExp(`latency under load .*: p50 ${NUM} ms, p99 ${NUM} ms`), 'the latency difference under load')
  })

  it('1. CPU per message of Haraka, redis, the sink and the load generator', function () {
    has(new RegExp(`^ {4}Haraka +${NUM} +${NUM} +${NUM} \\(${NUM}%\\)$`, 'm'), 'Haraka CPU per message')
    has(new RegExp(`^ {4}redis-server +${NUM} +${NUM} +${NUM}$`, 'm'), 'redis CPU per message')
    has(new RegExp(`^ {4}sink \\(outside world\\) +${NUM} +${NUM} +${NUM}$`, 'm'), 'sink CPU per message')
    has(new RegExp(`^ {4}load generator +${NUM} +${NUM} +${NUM}$`, 'm'), 'load generator CPU per message')
  })

  it('1. single-session latency p50/p99 with and without', function () {
    has(new RegExp(`^ {2}without plugin +${NUM} +${NUM} +${NUM} +${NUM} +${NUM}/${NUM}`, 'm'), 'single session without')
    has(new RegExp(`^ {2}with plugin +${NUM} +${NUM} +${NUM} +${NUM} +${NUM}/${NUM}`, 'm'), 'single session with')
    has(new RegExp(`added by the plugin: p50 ${NUM} ms, p99 ${NUM} ms, Haraka CPU ${NUM} us/msg, redis CPU ${NUM} us/msg`), 'the added single-session latency')
  })

  it('2. redis commands, round trips and CPU per message', function () {
    has(/^2\. Redis per message/m, 'section 2')
    has(new RegExp(`^ {2}evalsha +${NUM} +${NUM} +${NUM} +${NUM} +${NUM}$`, 'm'), 'the evalsha row')
    has(new RegExp(`^ {2}hgetall +${NUM} +${NUM} +${NUM} +${NUM} +${NUM}$`, 'm'), 'the hgetall row')
    has(new RegExp(`Redis CPU per message: ${NUM} us`), 'redis CPU per message')
    has(new RegExp(`^ {2}\\d+ messages per session +\\d+ +\\d+ +\\d+ +${NUM} `, 'm'), 'round trips, several messages per session')
    has(new RegExp(`^ {2}1 message per session +\\d+ +\\d+ +\\d+ +${NUM} `, 'm'), 'round trips, one message per session')
    has(new RegExp(`=> ${NUM} round trips per message .* \\+ ${NUM} per authenticated session`), 'the per-message / per-session split')
    has(new RegExp(`^ {2}record \\(evalsha\\) +${NUM} +${NUM} +${NUM} +${NUM}$`, 'm'), 'the idle cost of record')
  })

  it('3. redis memory per active account, by buckets and for a busy account', function () {
    has(/^3\. Redis memory per active account/m, 'section 3')
    for (const label of ['default \\(500/30m, 2500/30m, 30 buckets\\), 1 message', 'buckets = 10, 1 message', 'buckets = 60, 1 message', 'busy: default, all 30 buckets \\+ evidence full', 'busy: buckets = 60']) {
      has(new RegExp(`^ {2}${label} +\\d+ +${NUM} +${NUM} +${NUM} +${NUM} +\\d+ +\\w+ +${NUM}$`, 'm'), `the memory row "${label}"`)
    }
  })

  it('4. exactness: accepted count against the limit', function () {
    has(/^4\. exactness: \d+ parallel sessions of one account against messages = \d+\/1m/m, 'section 4')
    has(/^ {2}burst1@test\.example: accepted \d+ \(limit \d+\)/m, 'the accepted count')
  })

  it('prints every target with PASS or MISS and a number', function () {
    const targets = [
      'throughput with plugin >= 95% of without',
      'added p99 latency < 2 ms, single session',
      'added p99 latency < 2 ms, \\d+ sessions under load',
      '<= 2 Redis round trips per message, \\d+ messages per session',
      '<= 2 Redis round trips per message, 1 message per session',
      '<= 2 KB Redis memory per active account, default config, 1 message',
      'accepted count == limit under parallel sessions',
    ]
    has(/^targets$/m, 'the targets block')
    for (const t of targets) has(new RegExp(`^ {2}(PASS|MISS) {2}${t}: ${NUM}`, 'm'), `the target "${t}"`)
  })

  it('counts exactly: the accepted count equals the limit', function () {
    // the one figure a quick run can judge: it does not depend on the machine's speed
    has(/^ {2}PASS {2}accepted count == limit under parallel sessions/m, 'a passing exactness target')
  })
})
