'use strict'

// npm run bench: what hijack-guard costs a real Haraka.
//
// Everything runs on 127.0.0.1 with the e2e harness (test/e2e/harness.js): the packed plugin
// installed into fresh Haraka 3.3.4 instances, a real redis-server, a loopback sink (in a child
// process of this script) standing in for the outside world, and a small SMTP client in this
// process that speaks AUTH PLAIN.
//
//   node bench/bench.js            full run (about 4 minutes)
//   node bench/bench.js --quick    tiny configuration, a smoke test (well under a minute)
//
// Options: --rounds N (measured throughput rounds per side), --round-seconds S,
// --warmup-seconds S, --sessions N, --per-session N (messages per SMTP session),
// --single N (messages per single-session round), --accounts N (memory section),
// --log-level LEVEL (Haraka's log level, default info), --json FILE (raw results).
//
// Exit code: 0 when the benchmark ran (a missed target is reported, not an error), 1 when it
// could not run.

const childProcess = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const REPO = path.resolve(__dirname, '..')

// ---------------------------------------------------------------------------
// options

function parseOptions (args) {
  const quick = args.includes('--quick')
  const o = quick
    ? {
        quick, warmupSeconds: 4, rounds: 2, roundSeconds: 2.5, sessions: 10, perSession: 10,
        single: 150, singleRounds: 2, smtpAccounts: 200, accounts: 1000, busyAccounts: 50,
        monitorMessages: 100, monitorSessions: 50, exactSessions: 10, exactLimit: 50, exactTrials: 1,
      }
    : {
        quick, warmupSeconds: 25, rounds: 10, roundSeconds: 6, sessions: 10, perSession: 10,
        single: 1500, singleRounds: 2, smtpAccounts: 1000, accounts: 10000, busyAccounts: 1000,
        monitorMessages: 500, monitorSessions: 300, exactSessions: 30, exactLimit: 200, exactTrials: 3,
      }
  o.logLevel = 'info'
  o.json = null
  const num = (i, name) => {
    const v = Number(args[i + 1])
    if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`)
    return v
  }
  for (let i = 0; i < args.length; i++) {
    switch (args[i]) {
      case '--quick': break
      case '--rounds': o.rounds = Math.round(num(i, args[i])); i++; break
      case '--round-seconds': o.roundSeconds = num(i, args[i]); i++; break
      case '--warmup-seconds': o.warmupSeconds = num(i, args[i]); i++; break
      case '--sessions': o.sessions = Math.round(num(i, args[i])); i++; break
      case '--per-session': o.perSession = Math.round(num(i, args[i])); i++; break
      case '--single': o.single = Math.round(num(i, args[i])); i++; break
      case '--accounts': o.accounts = Math.round(num(i, args[i])); i++; break
      case '--log-level': o.logLevel = String(args[i + 1]); i++; break
      case '--json': o.json = String(args[i + 1]); i++; break
      default: throw new Error(`unknown option ${args[i]} (see the head of bench/bench.js)`)
    }
  }
  return o
}

// ---------------------------------------------------------------------------
// cleanup: the harness kills its Haraka and redis processes on exit and on SIGINT/SIGTERM;
// this script adds the sink child.

let sinkChild = null

function killSink () {
  if (sinkChild && sinkChild.exitCode === null && sinkChild.signalCode === null) {
    try { process.kill(sinkChild.pid, 'SIGKILL') } catch { /* gone */ }
  }
}

process.once('exit', killSink)
for (const [sig, num] of [['SIGINT', 2], ['SIGTERM', 15]]) {
  process.on(sig, () => {
    killSink()
    console.error(`\nbench: ${sig}, stopped`)
    process.exit(128 + num)
  })
}

let harness = null
let dist = null // createRedisStore, parseConfig, accountKeys from dist/
async function finish (code) {
  try { if (harness) await harness.stopAll() } catch { /* exit cleans up */ }
  killSink()
  process.exit(code)
}

// ---------------------------------------------------------------------------
// the sink, in a child process (its CPU is measured apart; it still shares the 2 cores)

function runSinkChild () {
  const h = require('../test/e2e/harness')
  process.on('disconnect', () => process.exit(0))
  h.startSink({ keepMessages: false }).then((sink) => {
    process.on('message', (m) => {
      if (m && m.type === 'count') process.send({ type: 'count', id: m.id, count: sink.count })
    })
    process.send({ type: 'ready', port: sink.port })
  }, (err) => {
    console.error(`sink: ${err.message}`)
    process.exit(1)
  })
}

function startSinkChild () {
  return new Promise((resolve, reject) => {
    const child = childProcess.fork(__filename, ['--sink-child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    sinkChild = child
    const waiting = new Map()
    let seq = 0
    const timer = setTimeout(() => reject(new Error('the sink child did not start within 15 s')), 15000)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      for (const w of waiting.values()) w.reject(new Error(`the sink child exited (${code}, ${signal})`))
      reject(new Error(`the sink child exited (${code}, ${signal})`))
    })
    child.on('message', (m) => {
      if (m.type === 'ready') {
        clearTimeout(timer)
        resolve({
          port: m.port,
          pid: child.pid,
          count () {
            return new Promise((resolve, reject) => {
              const id = ++seq
              waiting.set(id, { resolve, reject })
              child.send({ type: 'count', id })
            })
          },
        })
      } else if (m.type === 'count') {
        const w = waiting.get(m.id)
        waiting.delete(m.id)
        if (w) w.resolve(m.count)
      }
    })
  })
}

// ---------------------------------------------------------------------------
// CPU time from /proc

let clkTck = 100
try { clkTck = Number(childProcess.execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100 } catch { /* 100 */ }

// user + system CPU seconds of a process (all its threads)
function procCpu (pid) {
  if (!pid) return 0
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / clkTck
  } catch {
    return 0
  }
}

// busy CPU seconds of the whole machine (all cores)
function machineBusy () {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    const idle = (v[3] || 0) + (v[4] || 0)
    return (v.reduce((a, b) => a + b, 0) - idle) / clkTck
  } catch {
    return 0
  }
}

function selfCpu () {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

// ---------------------------------------------------------------------------
// statistics and formatting

function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

function lat (samples) {
  const s = Float64Array.from(samples).sort()
  return { n: s.length, p50: percentile(s, 50), p99: percentile(s, 99) }
}

const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a')
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a')
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')
const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a')
const pct = (x) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : 'n/a')
const signed = (x, d = 2) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(d)}` : 'n/a')
const say = (s = '') => process.stdout.write(`${s}\n`)

function table (rows, { indent = '  ' } = {}) {
  const widths = []
  for (const r of rows) r.forEach((c, i) => { widths[i] = Math.max(widths[i] || 0, String(c).length) })
  for (const r of rows) {
    say(indent + r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ').trimEnd())
  }
}

const targets = []
function target (ok, text, value) {
  targets.push({ ok, text, value })
}

// ---------------------------------------------------------------------------
// a small SMTP client: one command at a time, as most submission clients do

const MESSAGE_SIZE = 1024

function rawSmtp (port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port })
    sock.setNoDelay(true)
    let buf = ''
    let lines = []
    const replies = []
    let waiter = null
    let closed = false
    const c = {
      sock,
      read (timeoutMs = 30000) {
        if (replies.length) return Promise.resolve(replies.shift())
        if (closed) return Promise.reject(new Error('connection closed'))
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => { waiter = null; reject(new Error(`no reply within ${timeoutMs} ms`)) }, timeoutMs)
          waiter = {
            resolve: (r) => { clearTimeout(timer); resolve(r) },
            reject: (e) => { clearTimeout(timer); reject(e) },
          }
        })
      },
      cmd (line) {
        sock.write(`${line}\r\n`)
        return c.read()
      },
      async quit () {
        if (closed) return
        try {
          sock.write('QUIT\r\n')
          await c.read(1000)
        } catch { /* closing anyway */ }
        sock.destroy()
      },
    }
    sock.setEncoding('utf8')
    sock.on('data', (d) => {
      buf += d
      let nl
      while ((nl = buf.indexOf('\r\n')) !== -1) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 2)
        lines.push(line)
        if (/^\d{3}(?: |$)/.test(line)) {
          const r = { code: Number(line.slice(0, 3)), text: lines.join('\n') }
          lines = []
          if (waiter) { const w = waiter; waiter = null; w.resolve(r) } else replies.push(r)
        }
      }
    })
    const gone = (err) => {
      closed = true
      if (waiter) { const w = waiter; waiter = null; w.reject(err || new Error('connection closed')) }
    }
    sock.on('error', (err) => { gone(err); reject(err) })
    sock.on('close', () => gone())
    sock.on('connect', () => resolve(c))
  })
}

function expect (r, code, what) {
  if (r.code !== code) throw Object.assign(new Error(`${what}: ${r.text}`), { reply: r })
}

async function openRaw (port, user, pass) {
  const c = await rawSmtp(port)
  try {
    expect(await c.read(), 220, 'greeting')
    expect(await c.cmd('EHLO bench-client.test.example'), 250, 'EHLO')
    expect(await c.cmd(`AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`), 235, 'AUTH')
  } catch (err) {
    c.sock.destroy()
    throw err
  }
  return c
}

let msgSeq = 0
const FILL = 'The quarterly figures are attached below; please check the totals before Friday.'
function buildMessage (from, to) {
  const head = [
    `From: <${from}>`,
    `To: <${to}>`,
    'Subject: Quarterly figures, please review before Friday',
    `Date: ${new Date().toUTCString()}`,
    `Message-ID: <${Date.now()}.${++msgSeq}@bench-client.test.example>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
  ].join('\r\n') + '\r\n'
  let body = ''
  while (head.length + body.length + FILL.length + 2 <= MESSAGE_SIZE) body += `${FILL}\r\n`
  body += `${'x'.repeat(Math.max(0, MESSAGE_SIZE - head.length - body.length - 2))}\r\n`
  return `${head}${body}.\r\n`
}

// MAIL FROM ... 250 after DATA: { ok, ms } or { ok: false, code, text, stage }
async function sendRaw (c, from, to) {
  const t0 = process.hrtime.bigint()
  let r = await c.cmd(`MAIL FROM:<${from}>`)
  if (r.code !== 250) return { ok: false, stage: 'mail', ...r }
  r = await c.cmd(`RCPT TO:<${to}>`)
  if (r.code !== 250) return { ok: false, stage: 'rcpt', ...r }
  r = await c.cmd('DATA')
  if (r.code !== 354) return { ok: false, stage: 'data', ...r }
  c.sock.write(buildMessage(from, to))
  r = await c.read()
  if (r.code !== 250) return { ok: false, stage: 'data', ...r }
  return { ok: true, ms: Number(process.hrtime.bigint() - t0) / 1e6 }
}

// ---------------------------------------------------------------------------
// load: `sessions` SMTP sessions in parallel, each logs in as the next account, sends up to
// `perSession` messages back to back, QUITs, and starts over; until the deadline or until
// `maxMessages` messages were sent.

const RCPT = 'customer@outside.example'
let accountSeq = 0

async function load ({ port, accounts, sessions, perSession, seconds, maxMessages }) {
  const deadline = seconds ? Date.now() + seconds * 1000 : Infinity
  let claimed = 0
  const res = { sent: 0, sessions: 0, errors: 0, firstErrors: [], latencies: [] }
  const claim = (n) => {
    if (Date.now() >= deadline) return 0
    if (maxMessages === undefined) return n
    const k = Math.max(0, Math.min(n, maxMessages - claimed))
    claimed += k
    return k
  }
  const error = (what) => {
    res.errors++
    if (res.firstErrors.length < 5) res.firstErrors.push(what)
  }
  async function worker () {
    for (;;) {
      let n = claim(perSession)
      if (n === 0) return
      const user = accounts[accountSeq++ % accounts.length]
      let c
      try {
        c = await openRaw(port, user, 'pw')
      } catch (err) {
        error(`session: ${err.message}`)
        if (maxMessages !== undefined) claimed -= n
        await new Promise((resolve) => setTimeout(resolve, 20))
        continue
      }
      res.sessions++
      try {
        for (;;) {
          const r = await sendRaw(c, user, RCPT)
          if (!r.ok) { error(`${r.stage}: ${r.text}`); break }
          res.sent++
          res.latencies.push(r.ms)
          if (--n === 0) break
          if (Date.now() >= deadline) break
        }
      } catch (err) {
        error(`send: ${err.message}`)
      }
      await c.quit()
    }
  }
  const t0 = process.hrtime.bigint()
  await Promise.all(Array.from({ length: sessions }, worker))
  res.seconds = Number(process.hrtime.bigint() - t0) / 1e9
  return res
}

// ---------------------------------------------------------------------------
// redis helpers

function parseInfo (text) {
  const out = {}
  for (const line of String(text).split('\r\n')) {
    const i = line.indexOf(':')
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}

function parseCommandstats (text) {
  const out = {}
  for (const [k, v] of Object.entries(parseInfo(text))) {
    if (!k.startsWith('cmdstat_')) continue
    const m = /calls=(\d+),usec=(\d+)/.exec(v)
    if (m) out[k.slice(8)] = { calls: Number(m[1]), usec: Number(m[2]) }
  }
  return out
}

const HOUSEKEEPING = new Set(['info', 'config|resetstat', 'config', 'monitor', 'ping', 'flushall', 'memory|usage', 'memory|purge'])

function addStats (into, stats) {
  for (const [cmd, s] of Object.entries(stats)) {
    if (HOUSEKEEPING.has(cmd)) continue
    const t = into[cmd] || (into[cmd] = { calls: 0, usec: 0 })
    t.calls += s.calls
    t.usec += s.usec
  }
}

// MONITOR on its own connection: counts the commands Haraka's client sent (round trips) apart
// from the ones a Lua script ran, by command name.
function monitorRedis (port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port })
    const counts = { client: {}, script: {} }
    let buf = ''
    let ready = false
    sock.setEncoding('utf8')
    sock.on('connect', () => sock.write('MONITOR\r\n'))
    sock.on('error', reject)
    sock.on('data', (d) => {
      buf += d
      let nl
      while ((nl = buf.indexOf('\r\n')) !== -1) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 2)
        if (!ready) {
          if (line === '+OK') { ready = true; resolve(mon) }
          continue
        }
        const m = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]+)"/.exec(line)
        if (!m) continue
        const who = m[1] === 'lua' ? 'script' : 'client'
        const cmd = m[2].toLowerCase()
        counts[who][cmd] = (counts[who][cmd] || 0) + 1
      }
    })
    const mon = {
      counts,
      reset () { counts.client = {}; counts.script = {} },
      stop () { sock.destroy() },
    }
  })
}

// ---------------------------------------------------------------------------
// main

async function main () {
  const o = parseOptions(process.argv.slice(2))
  harness = require('../test/e2e/harness')
  const h = harness
  const started = Date.now()
  const results = { options: o }

  // ---- setup
  const redis = await h.startRedis()
  const redisInfo = parseInfo(await redis.command('INFO', 'server'))
  const sink = await startSinkChild()
  const accounts = Array.from({ length: o.smtpAccounts }, (_, i) => `user${String(i).padStart(4, '0')}@test.example`)
  const exactAccounts = Array.from({ length: o.exactTrials }, (_, i) => `burst${i + 1}@test.example`)
  const users = {}
  for (const a of [...accounts, ...exactAccounts]) users[a] = 'pw'
  const common = { sinkPort: sink.port, users, logLevel: o.logLevel, logToFile: true }
  const pluginIni = [
    '[main]',
    'store = redis',
    '[redis]',
    'host = 127.0.0.1',
    `port = ${redis.port}`,
    '[limits]',
    'messages = 100000000/30m',
    'recipients = 100000000/30m',
    'buckets = 30',
    '[alert]',
    'to = postmaster@outside.example',
    ...exactAccounts.flatMap((a) => [`[account:${a}]`, `messages = ${o.exactLimit}/1m`]),
    '',
  ].join('\n')
  const withPlugin = await h.createHaraka({ ...common, pluginIni })
  const without = await h.createHaraka({ ...common, plugin: false })
  await withPlugin.start()
  await without.start()
  // the store's modules, loaded now (packing the plugin has just built dist/): a later build by
  // someone else empties dist/ for a moment
  dist = {
    ...require(path.join(REPO, 'dist', 'lib', 'redis-store')),
    ...require(path.join(REPO, 'dist', 'lib', 'config')),
    ...require(path.join(REPO, 'dist', 'lib', 'keys')),
  }
  const harakaVersion = require(path.join(REPO, 'node_modules', 'Haraka', 'package.json')).version

  say('hijack-guard benchmark' + (o.quick ? ' (--quick: a smoke test; too short for conclusions)' : ''))
  say(`  date ${new Date().toISOString()}; ${os.cpus().length} CPUs (${os.cpus()[0] ? os.cpus()[0].model.trim() : '?'}), ${f1(os.totalmem() / 2 ** 30)} GiB RAM; load average ${os.loadavg().map(f2).join(' ')}`)
  say(`  node ${process.version}; Haraka ${harakaVersion} (nodes=0, one process, log level ${o.logLevel}); redis ${redisInfo.redis_version}`)
  say('  all traffic on 127.0.0.1. On the same cores: the load generator (this process), the sink (a child')
  say('  process standing in for the outside world: its CPU is shown below), redis-server, and Haraka.')
  say(`  store = redis, limits never reached (messages = 100000000/30m), ${o.smtpAccounts} accounts, ${MESSAGE_SIZE} B messages,`)
  say(`  1 recipient, ${o.sessions} parallel sessions of ${o.perSession} messages each (AUTH PLAIN, then MAIL FROM/RCPT/DATA).`)

  const sides = { A: { name: 'with', haraka: withPlugin, plugin: true }, B: { name: 'without', haraka: without, plugin: false } }
  const shape = { accounts, sessions: o.sessions, perSession: o.perSession }

  // everything a measurement needs: load, then wait until the sink has every message, with the
  // CPU time of each process around both
  async function measure (side, loadOpts) {
    const sink0 = await sink.count()
    if (side.plugin) await redis.command('CONFIG', 'RESETSTAT')
    const c0 = { haraka: procCpu(side.haraka.pid), redis: procCpu(redis.pid), sink: procCpu(sink.pid), bench: selfCpu(), machine: machineBusy() }
    const r = await load({ port: side.haraka.port, ...loadOpts })
    const drainStart = Date.now()
    let delivered = 0
    for (;;) {
      delivered = (await sink.count()) - sink0
      if (delivered >= r.sent || Date.now() - drainStart > 60000) break
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    const c1 = { haraka: procCpu(side.haraka.pid), redis: procCpu(redis.pid), sink: procCpu(sink.pid), bench: selfCpu(), machine: machineBusy() }
    r.undelivered = Math.max(0, r.sent - delivered)
    r.cpu = {}
    for (const k of Object.keys(c0)) r.cpu[k] = c1[k] - c0[k]
    r.cpu.foreign = Math.max(0, r.cpu.machine - r.cpu.haraka - r.cpu.redis - r.cpu.sink - r.cpu.bench)
    r.wall = r.seconds + (Date.now() - drainStart) / 1000
    if (side.plugin) r.stats = parseCommandstats(await redis.command('INFO', 'commandstats'))
    if (!side.haraka.alive()) throw new Error(`Haraka ${side.name} the plugin died:\n${side.haraka.log().slice(-3000)}`)
    return r
  }

  // ---- warm-up: a fresh Haraka's throughput climbs for its first 20-25 s under load
  say()
  say(`warming up each Haraka for ${o.warmupSeconds} s under load ...`)
  for (const side of [sides.A, sides.B]) {
    const r = await measure(side, { ...shape, seconds: o.warmupSeconds })
    say(`  ${side.name.padEnd(7)} the plugin: ${f0(r.sent / r.seconds)} msg/s during warm-up (${r.errors} errors)`)
    if (r.sent === 0) throw new Error(`no message went through Haraka ${side.name} the plugin: ${r.firstErrors.join('; ')}`)
  }

  // ---- 1. throughput, interleaved A B B A ...
  const order = []
  for (let i = 0; i < o.rounds; i++) order.push(...(i % 2 === 0 ? ['A', 'B'] : ['B', 'A']))
  say()
  say(`1. throughput: ${o.rounds} rounds of ${o.roundSeconds} s per side, interleaved ${order.join(' ')}`)
  const rounds = { A: [], B: [] }
  for (const k of order) {
    const r = await measure(sides[k], { ...shape, seconds: o.roundSeconds })
    rounds[k].push(r)
    say(`  round ${String(rounds.A.length + rounds.B.length).padStart(2)} ${sides[k].name.padEnd(7)}: ${f0(r.sent / r.seconds).padStart(5)} msg/s  p50 ${f1(lat(r.latencies).p50)} ms  p99 ${f1(lat(r.latencies).p99)} ms  errors ${r.errors}  other processes ${pct(r.cpu.foreign / r.wall / os.cpus().length)} of the CPUs`)
  }
  const pool = (list) => {
    const sent = list.reduce((a, r) => a + r.sent, 0)
    const seconds = list.reduce((a, r) => a + r.seconds, 0)
    const cpu = {}
    for (const k of ['haraka', 'redis', 'sink', 'bench', 'foreign']) cpu[k] = list.reduce((a, r) => a + r.cpu[k], 0)
    const wall = list.reduce((a, r) => a + r.wall, 0)
    return {
      sent,
      rate: sent / seconds,
      rates: list.map((r) => r.sent / r.seconds),
      lat: lat(list.flatMap((r) => r.latencies)),
      errors: list.reduce((a, r) => a + r.errors, 0),
      firstErrors: list.flatMap((r) => r.firstErrors).slice(0, 5),
      undelivered: list.reduce((a, r) => a + r.undelivered, 0),
      sessions: list.reduce((a, r) => a + r.sessions, 0),
      cpu,
      foreignShare: cpu.foreign / wall / os.cpus().length,
    }
  }
  const A = pool(rounds.A)
  const B = pool(rounds.B)
  // pair ratios in run order: (A1,B1), (B2,A2), ...
  const pairRatios = rounds.A.map((a, i) => (a.sent / a.seconds) / (rounds.B[i].sent / rounds.B[i].seconds))
  const ratio = A.rate / B.rate
  say()
  table([
    ['pooled', 'msg/s', 'rounds min-max', 'p50 ms', 'p99 ms', 'messages', 'errors'],
    ['without plugin', f0(B.rate), `${f0(Math.min(...B.rates))}-${f0(Math.max(...B.rates))}`, f2(B.lat.p50), f2(B.lat.p99), B.sent, B.errors],
    ['with plugin', f0(A.rate), `${f0(Math.min(...A.rates))}-${f0(Math.max(...A.rates))}`, f2(A.lat.p50), f2(A.lat.p99), A.sent, A.errors],
  ])
  const medianPair = [...pairRatios].sort((x, y) => x - y)[Math.floor(pairRatios.length / 2)]
  say(`  throughput ratio with/without: ${pct(ratio)} pooled; per pair ${pairRatios.map(pct).join(' ')} (median ${pct(medianPair)}, min-max ${pct(Math.min(...pairRatios))}-${pct(Math.max(...pairRatios))})`)
  say(`  latency under load (MAIL FROM -> 250 after DATA): p50 ${signed(A.lat.p50 - B.lat.p50)} ms, p99 ${signed(A.lat.p99 - B.lat.p99)} ms with the plugin`)
  if (A.errors + B.errors) say(`  ERRORS: ${[...A.firstErrors, ...B.firstErrors].join(' | ')}`)
  if (A.undelivered + B.undelivered) say(`  NOT DELIVERED to the sink within 60 s: ${A.undelivered} with, ${B.undelivered} without`)
  say(`  other processes on the machine used ${pct(B.foreignShare)} (without) and ${pct(A.foreignShare)} (with) of the CPUs during the rounds`)

  // CPU per message
  const perMsg = (s, x) => (x.cpu[s] / x.sent) * 1e6
  say()
  say('  CPU time per message (us), pooled over the throughput rounds (utime+stime from /proc):')
  table([
    ['process', 'without', 'with', 'delta'],
    ['Haraka', f0(perMsg('haraka', B)), f0(perMsg('haraka', A)), `${signed(perMsg('haraka', A) - perMsg('haraka', B), 0)} (${signed((perMsg('haraka', A) / perMsg('haraka', B) - 1) * 100, 1)}%)`],
    ['redis-server', f0(perMsg('redis', B)), f0(perMsg('redis', A)), signed(perMsg('redis', A) - perMsg('redis', B), 0)],
    ['sink (outside world)', f0(perMsg('sink', B)), f0(perMsg('sink', A)), signed(perMsg('sink', A) - perMsg('sink', B), 0)],
    ['load generator', f0(perMsg('bench', B)), f0(perMsg('bench', A)), signed(perMsg('bench', A) - perMsg('bench', B), 0)],
  ], { indent: '    ' })
  const cpuRatio = perMsg('haraka', B) / perMsg('haraka', A)
  say(`  Haraka's CPU per message without/with: ${pct(cpuRatio)}, the throughput ratio to expect where Haraka's CPU is the`)
  say('  limit (less sensitive to what else runs on the machine than the measured ratio above)')

  // ---- single-session latency, interleaved
  const singleOrder = []
  for (let i = 0; i < o.singleRounds; i++) singleOrder.push(...(i % 2 === 0 ? ['A', 'B'] : ['B', 'A']))
  say()
  say(`   single session: one session, ${o.single} messages back to back per round, ${singleOrder.join(' ')}`)
  const single = { A: [], B: [] }
  for (const k of singleOrder) {
    const r = await measure(sides[k], { accounts, sessions: 1, perSession: o.single, maxMessages: o.single })
    single[k].push(r)
  }
  const SA = pool(single.A)
  const SB = pool(single.B)
  const singleRoundsP = (list) => list.map((r) => `${f2(lat(r.latencies).p50)}/${f2(lat(r.latencies).p99)}`).join(' ')
  table([
    ['single session', 'p50 ms', 'p99 ms', 'msg/s', 'Haraka CPU us/msg', 'rounds p50/p99'],
    ['without plugin', f3(SB.lat.p50), f3(SB.lat.p99), f0(SB.rate), f0(perMsg('haraka', SB)), singleRoundsP(single.B)],
    ['with plugin', f3(SA.lat.p50), f3(SA.lat.p99), f0(SA.rate), f0(perMsg('haraka', SA)), singleRoundsP(single.A)],
  ])
  say(`  added by the plugin: p50 ${signed(SA.lat.p50 - SB.lat.p50, 3)} ms, p99 ${signed(SA.lat.p99 - SB.lat.p99, 3)} ms, Haraka CPU ${signed(perMsg('haraka', SA) - perMsg('haraka', SB), 0)} us/msg, redis CPU ${f0(perMsg('redis', SA))} us/msg`)
  if (SA.errors + SB.errors) say(`  ERRORS: ${[...SA.firstErrors, ...SB.firstErrors].join(' | ')}`)

  target(ratio >= 0.95, 'throughput with plugin >= 95% of without', `${pct(ratio)} pooled (median pair ${pct(medianPair)}, pairs ${pct(Math.min(...pairRatios))}-${pct(Math.max(...pairRatios))}; Haraka CPU/msg ratio ${pct(cpuRatio)})`)
  target(SA.lat.p99 - SB.lat.p99 < 2, 'added p99 latency < 2 ms, single session', `${signed(SA.lat.p99 - SB.lat.p99, 3)} ms`)
  target(A.lat.p99 - B.lat.p99 < 2, `added p99 latency < 2 ms, ${o.sessions} sessions under load`, `${signed(A.lat.p99 - B.lat.p99, 2)} ms`)
  results.throughput = { with: A, without: B, ratio, pairRatios }
  results.single = { with: SA, without: SB }

  // ---- 2. redis round trips and redis CPU per message
  say()
  say('2. Redis per message (with the plugin)')
  const cmdTotals = {}
  for (const r of [...rounds.A]) addStats(cmdTotals, r.stats)
  const mon = await monitorRedis(redis.port)
  const shapes = []
  for (const [label, perSession, total] of [[`${o.perSession} messages per session`, o.perSession, o.monitorMessages], ['1 message per session', 1, o.monitorSessions]]) {
    mon.reset()
    const r = await load({ accounts, sessions: o.sessions, perSession, maxMessages: total, port: withPlugin.port })
    await new Promise((resolve) => setTimeout(resolve, 300)) // the last MONITOR lines
    const client = { ...mon.counts.client }
    const script = { ...mon.counts.script }
    const trips = Object.values(client).reduce((a, b) => a + b, 0)
    shapes.push({ label, sent: r.sent, sessions: r.sessions, client, script, trips, errors: r.errors })
  }
  mon.stop()
  // trips = a * messages + b * sessions, from the two shapes
  const [s1, s2] = shapes
  const det = s1.sent * s2.sessions - s2.sent * s1.sessions
  const perMessage = det ? (s1.trips * s2.sessions - s2.trips * s1.sessions) / det : NaN
  const perSessionTrips = (s1.trips - perMessage * s1.sent) / s1.sessions
  const monShape = shapes[0]
  say(`  INFO commandstats after CONFIG RESETSTAT, summed over the ${rounds.A.length} throughput rounds with the plugin (${A.sent} messages,`)
  say(`  ${f1(A.sent / A.sessions)} messages per session); "from Haraka" / "inside the script" split by MONITOR in a separate run:`)
  const rows = [['command', 'calls/msg', 'from Haraka', 'inside script', 'usec/msg', 'usec/call']]
  const names = Object.keys(cmdTotals).sort((a, b) => cmdTotals[b].calls - cmdTotals[a].calls)
  for (const cmd of names) {
    const t = cmdTotals[cmd]
    rows.push([cmd, f3(t.calls / A.sent), f3((monShape.client[cmd] || 0) / monShape.sent), f3((monShape.script[cmd] || 0) / monShape.sent), f2(t.usec / A.sent), f2(t.usec / t.calls)])
  }
  table(rows)
  say('  (usec of evalsha includes the commands the script runs; those are also listed on their own lines)')
  const evalUsec = ((cmdTotals.evalsha && cmdTotals.evalsha.usec) || 0) + ((cmdTotals.eval && cmdTotals.eval.usec) || 0)
  const clientHgetallShare = (monShape.client.hgetall || 0) / ((monShape.client.hgetall || 0) + (monShape.script.hgetall || 0) || 1)
  const redisCmdUsec = evalUsec + ((cmdTotals.hgetall && cmdTotals.hgetall.usec) || 0) * clientHgetallShare
  say(`  Redis CPU per message: ${f1(perMsg('redis', A))} us of redis-server process time (/proc, includes networking), of which`)
  say(`  ${f1(redisCmdUsec / A.sent)} us executing commands (commandstats: the script and the HGETALLs Haraka sends)`)
  say('  round trips (commands Haraka sent), counted with MONITOR:')
  table([
    ['session shape', 'messages', 'sessions', 'round trips', 'per message', 'commands (calls)'],
    ...shapes.map((s) => [s.label, s.sent, s.sessions, s.trips, f2(s.trips / s.sent), Object.entries(s.client).map(([k, v]) => `${k} ${v}`).join(', ')]),
  ])
  say(`  => ${f2(perMessage)} round trips per message (MAIL FROM + queue_outbound) + ${f2(perSessionTrips)} per authenticated session (AUTH check)`)
  const idle = await idleStoreCost(redis, o.quick ? 500 : 3000)
  say(`  the same two calls alone, one at a time from node with nothing else running on Haraka's side (${idle.n} each):`)
  table([
    ['store call', 'redis usec/call', 'redis CPU us/call', 'round trip p50 ms', 'p99 ms'],
    ['record (evalsha)', f1(idle.record.usec), f1(idle.record.cpu), f3(idle.record.lat.p50), f3(idle.record.lat.p99)],
    ['getDisabled (hgetall)', f1(idle.getDisabled.usec), f1(idle.getDisabled.cpu), f3(idle.getDisabled.lat.p50), f3(idle.getDisabled.lat.p99)],
  ])
  say('  (under load the same commands take longer in commandstats: redis shares the 2 cores with Haraka, the sink and the client)')
  for (const s of shapes) target(s.trips / s.sent <= 2, `<= 2 Redis round trips per message, ${s.label}`, f2(s.trips / s.sent))
  results.redis = { commandstats: cmdTotals, messages: A.sent, redisCpuUsPerMsg: perMsg('redis', A), shapes, perMessage, perSessionTrips, idle }

  // ---- 3. memory per active account
  say()
  const memory = await memorySection(h, o)
  results.memory = memory

  // ---- 4. exactness under load
  say()
  say(`4. exactness: ${o.exactSessions} parallel sessions of one account against messages = ${o.exactLimit}/1m`)
  const exact = []
  for (const account of exactAccounts) {
    const mark = withPlugin.logMark()
    const r = await exactTrial(h, withPlugin.port, account, o.exactSessions)
    const rec = await redis.command('HGETALL', `hijack-guard:{${account}}:disabled`)
    r.disabled = Array.isArray(rec) && rec.length > 0
    await new Promise((resolve) => setTimeout(resolve, 200))
    const log = withPlugin.log().slice(mark)
    r.incidents = (log.match(new RegExp(`ACCOUNT DISABLED "${account.replace(/[.]/g, '\\.')}"`, 'g')) || []).length
    exact.push(r)
    say(`  ${account}: accepted ${r.accepted} (limit ${o.exactLimit}), refused at DATA ${r.refusedData}, refused at MAIL FROM ${r.refusedMail}, other ${r.other}; disabled ${r.disabled ? 'yes' : 'no'}; incidents logged ${r.incidents}`)
  }
  const exactOk = exact.every((r) => r.accepted === o.exactLimit)
  target(exactOk, 'accepted count == limit under parallel sessions', `${exact.map((r) => r.accepted).join(', ')} accepted, limit ${o.exactLimit}`)
  results.exact = exact

  // ---- targets
  say()
  say('targets')
  for (const t of targets) say(`  ${t.ok ? 'PASS' : 'MISS'}  ${t.text}: ${t.value}`)
  say()
  say(`done in ${f0((Date.now() - started) / 1000)} s; load average now ${os.loadavg().map(f2).join(' ')}`)
  results.targets = targets
  if (o.json) fs.writeFileSync(o.json, JSON.stringify(results, null, 2))
  return 0
}

// S parallel sessions of one account send until the plugin refuses them.
async function exactTrial (h, port, account, sessions) {
  const r = { accepted: 0, refusedData: 0, refusedMail: 0, other: 0 }
  async function one () {
    let s
    try {
      s = await h.openSession({ port, user: account, pass: 'pw' })
    } catch (err) {
      r.other++
      return
    }
    for (let i = 0; i < 100000; i++) {
      const x = await s.send({ from: account, to: [RCPT], subject: `burst ${i}`, body: FILL })
      if (x.code === 250) { r.accepted++; continue }
      if (x.stage === 'data' && x.code === 550) r.refusedData++
      else if (x.stage === 'mail' && x.code === 550) r.refusedMail++
      else r.other++
      break
    }
    await s.close()
  }
  await Promise.all(Array.from({ length: sessions }, one))
  return r
}

// The store's two mail-path calls on their own: n sequential calls each, over 200 accounts.
async function idleStoreCost (redis, n) {
  const { createRedisStore, parseConfig, accountKeys } = dist
  const config = parseConfig({ limits: { messages: '100000000/30m', recipients: '100000000/30m' }, redis: { host: '127.0.0.1', port: String(redis.port) } }, 'mx.test.example')
  const store = createRedisStore({ redis: config.redis, timeoutMs: 10000, log: { info () {}, warn () {}, error (m) { console.error(`store: ${m}`) } } })
  await store.ready(10000)
  const account = (i) => `idle${i % 200}@test.example`
  const calls = {
    record: (i) => store.record({ account: account(i), recipients: 1, rules: config.rules, mode: 'enforce', summary: summaryFor(i, 0), token: 'f'.repeat(32), tokenTtlMs: config.reactivate.tokenTtlMs }),
    getDisabled: (i) => store.getDisabled(account(i)),
  }
  const out = { n }
  for (const [name, call] of Object.entries(calls)) {
    for (let i = 0; i < 200; i++) await call(i) // the script is loaded, the accounts exist
    await redis.command('CONFIG', 'RESETSTAT')
    const cpu0 = procCpu(redis.pid)
    const samples = []
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint()
      await call(i)
      samples.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    const cpu = procCpu(redis.pid) - cpu0
    const stats = parseCommandstats(await redis.command('INFO', 'commandstats'))
    const top = name === 'record' ? stats.evalsha : stats.hgetall
    out[name] = { usec: top ? top.usec / top.calls : NaN, cpu: (cpu / n) * 1e6, lat: lat(samples) }
  }
  await store.close()
  return out
}

// ---------------------------------------------------------------------------
// 3. memory: the store used directly, on a redis-server of its own

const SUBJECTS = [
  'Re: Quarterly figures, please review before Friday',
  'Invoice 2024-0{n} for your records',
  'Meeting notes from Tuesday',
  'Fwd: Updated delivery schedule for next week',
  'Your order #{n} has shipped',
  'Lunch on Thursday?',
]
const DOMAINS = ['gmail.com', 'outlook.com', 'yahoo.com', 'example.org', 'partner-company.example', 'gmx.de']

function summaryFor (i, j) {
  return {
    ip: `198.51.${(i >> 8) & 255}.${i & 255}`,
    helo: `DESKTOP-${(i * 7919 + 1000000).toString(36).toUpperCase()}`,
    domains: [DOMAINS[(i + j) % DOMAINS.length], ...(j % 3 === 0 ? [DOMAINS[(i + j + 1) % DOMAINS.length]] : [])],
    subject: SUBJECTS[(i + j) % SUBJECTS.length].replace('{n}', String(1000 + ((i * 31 + j) % 9000))),
  }
}

async function memorySection (h, o) {
  const { createRedisStore, parseConfig, accountKeys } = dist
  const redis = await h.startRedis()
  const info = async () => parseInfo(await redis.command('INFO', 'memory'))
  const usedMemory = async () => Number((await info()).used_memory)

  say(`3. Redis memory per active account (the store used directly; ${o.accounts} accounts; a redis-server of its own)`)
  const scenarios = [
    { label: 'default (500/30m, 2500/30m, 30 buckets), 1 message', limits: {}, messages: 1, n: o.accounts },
    { label: 'default, 3 messages', limits: {}, messages: 3, n: o.accounts },
    { label: 'default, 10 messages (evidence list full)', limits: {}, messages: 10, n: o.accounts },
    { label: 'buckets = 10, 1 message', limits: { buckets: '10' }, messages: 1, n: o.accounts },
    { label: 'buckets = 60, 1 message', limits: { buckets: '60' }, messages: 1, n: o.accounts },
    { label: 'busy: default, all 30 buckets + evidence full', limits: {}, messages: 10, busy: true, n: o.busyAccounts },
    { label: 'busy: buckets = 10', limits: { buckets: '10' }, messages: 10, busy: true, n: o.busyAccounts },
    { label: 'busy: buckets = 60', limits: { buckets: '60' }, messages: 10, busy: true, n: o.busyAccounts },
    { label: 'busy: messages = 500/30m, 2000/24h', limits: { messages: '500/30m, 2000/24h' }, messages: 10, busy: true, n: o.busyAccounts },
  ]
  // buckets is capped at 60 (lib/config.ts): a busy account's two kinds of buckets, 120 fields,
  // stay within Redis's default hash-max-listpack-entries (128), so its counts stay compact
  const lp = await redis.command('CONFIG', 'GET', 'hash-max-listpack-entries')
  const listpackMax = Array.isArray(lp) ? Number(lp[1]) : NaN
  const rows = [['scenario', 'accounts', 'used_memory/acct', 'MEMORY USAGE/acct', 'counts', 'evidence', 'hash fields', 'encoding', 'record usec']]
  const out = []
  for (const sc of scenarios) {
    const config = parseConfig({ main: { store: 'redis' }, limits: sc.limits, redis: { host: '127.0.0.1', port: String(redis.port) } }, 'mx.test.example')
    const store = createRedisStore({ redis: config.redis, timeoutMs: 10000, log: { info () {}, warn () {}, error (m) { console.error(`store: ${m}`) } } })
    await store.ready(10000)
    await redis.command('FLUSHALL')
    await redis.command('MEMORY', 'PURGE')
    const before = await usedMemory()
    const names = Array.from({ length: sc.n }, (_, i) => `staff${String(i).padStart(5, '0')}@customer-company.example`)
    if (sc.busy) {
      // the state of an account that sent in every bucket of its windows: the fields the record
      // script would have written (each rule's bucket size, each kind, every bucket in the window)
      const t = await redis.command('TIME')
      const now = Number(t[0]) * 1000 + Math.floor(Number(t[1]) / 1000)
      const fields = new Map()
      for (const r of config.rules) {
        const cur = Math.floor(now / r.bucketMs)
        const kind = r.kind === 'messages' ? 'm' : 'r'
        // 70% of the limit spread over the older buckets, so the messages recorded below still fit
        const each = String(Math.max(1, Math.floor((0.7 * r.max) / r.buckets)))
        for (let idx = cur - r.buckets + 1; idx < cur; idx++) fields.set(`${r.bucketMs}.${idx}.${kind}`, each)
      }
      const args = [...fields].flatMap(([f, v]) => [f, v])
      await parallel(names, 50, (name) => redis.command('HSET', accountKeys(name).counts, ...args))
    }
    // record the messages through the store, as the plugin does at queue_outbound
    await redis.command('CONFIG', 'RESETSTAT')
    for (let j = 0; j < sc.messages; j++) {
      await parallel(names, 50, (name, i) => store.record({
        account: name,
        recipients: 1 + ((i + j) % 4),
        rules: config.rules,
        mode: 'enforce',
        summary: summaryFor(i, j),
        token: require('node:crypto').randomBytes(16).toString('hex'),
        tokenTtlMs: config.reactivate.tokenTtlMs,
      }).then((r) => { if (r.status !== 'ok') throw new Error(`record: ${r.status}`) }))
    }
    await new Promise((resolve) => setTimeout(resolve, 1000)) // let redis finish rehashing its dictionaries
    const recordStats = parseCommandstats(await redis.command('INFO', 'commandstats')).evalsha
    const after = await usedMemory()
    const sample = names.slice(0, Math.min(names.length, 1000))
    let counts = 0
    let evidence = 0
    await parallel(sample, 50, async (name) => {
      const k = accountKeys(name)
      // (read first: `x += await ...` would add to the value x had before the await)
      const c = Number(await redis.command('MEMORY', 'USAGE', k.counts, 'SAMPLES', '0')) || 0
      const e = Number(await redis.command('MEMORY', 'USAGE', k.evidence, 'SAMPLES', '0')) || 0
      counts += c
      evidence += e
    })
    const k0 = accountKeys(names[0])
    const hlen = await redis.command('HLEN', k0.counts)
    const encoding = await redis.command('OBJECT', 'ENCODING', k0.counts)
    const keys = Number((parseInfo(await redis.command('INFO', 'keyspace')).db0 || '').replace(/^keys=(\d+).*/, '$1')) || 0
    await store.close()
    const r = {
      label: sc.label,
      accounts: sc.n,
      perAccount: (after - before) / sc.n,
      memoryUsage: (counts + evidence) / sample.length,
      counts: counts / sample.length,
      evidence: evidence / sample.length,
      fields: hlen,
      encoding,
      keysPerAccount: keys / sc.n,
      recordUsec: recordStats ? recordStats.usec / recordStats.calls : NaN,
    }
    out.push(r)
    rows.push([r.label, r.accounts, f0(r.perAccount), f0(r.memoryUsage), f0(r.counts), f0(r.evidence), r.fields, r.encoding, f1(r.recordUsec)])
  }
  table(rows)
  say('  used_memory/acct: INFO memory used_memory after minus before, divided by the accounts (includes the keyspace and')
  say('  expiry dictionaries); MEMORY USAGE/acct: the two keys an active account has (counts hash + evidence list), mean')
  say(`  over up to 1000 accounts. ${out[0].keysPerAccount} keys per account; a disabled account adds its disable record.`)
  say(`  redis hash-max-listpack-entries = ${listpackMax}: a counts hash with more fields becomes a hash table.`)
  say('  record usec: redis time of one record script (commandstats), which reads every field of the counts hash.')
  await redis.stop()
  const def = out[0]
  const full = out[2]
  target(def.perAccount <= 2048, '<= 2 KB Redis memory per active account, default config, 1 message', `${f0(def.perAccount)} B`)
  target(full.perAccount <= 2048, '<= 2 KB Redis memory per active account, default config, 10+ messages (evidence full)', `${f0(full.perAccount)} B`)
  return out
}

async function parallel (items, width, fn) {
  let next = 0
  async function lane () {
    while (next < items.length) {
      const i = next++
      await fn(items[i], i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane))
}

// ---------------------------------------------------------------------------
// entry (last, so that every module-level binding above is initialized)

if (process.argv.includes('--sink-child')) {
  runSinkChild()
} else {
  main().then(
    (code) => finish(code),
    (err) => {
      console.error(`\nbench: could not run: ${err && err.stack ? err.stack : err}`)
      finish(1)
    },
  )
}
