'use strict'

// End-to-end harness: real Haraka processes (with the packed plugin installed
// the way an operator installs it), real redis-server processes, a real SMTP
// client (nodemailer's SMTPConnection) and a loopback SMTP sink standing in
// for the outside world. Everything listens on and talks to 127.0.0.1 only.

const childProcess = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const util = require('node:util')

const SMTPConnection = require('nodemailer/lib/smtp-connection')
const { SMTPServer } = require('smtp-server')

const REPO_ROOT = path.resolve(__dirname, '..', '..')
const HARAKA_BIN = path.join(REPO_ROOT, 'node_modules', '.bin', 'haraka')
const REDIS_SERVER = process.env.REDIS_SERVER || 'redis-server'
const PLUGIN_PACKAGE = 'haraka-plugin-hijack-guard'
const PLUGIN_NAME = 'hijack-guard'
const HOST = '127.0.0.1'
const KEEP = process.env.HIJACK_GUARD_E2E_KEEP === '1'

// ---------------------------------------------------------------------------
// temp root, resource registry, cleanup

let tmpRoot = null
let seq = 0
const resources = new Set() // objects with stop() and killSync()

function tmpDir (prefix) {
  if (!tmpRoot) tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hijack-guard-e2e-'))
  const dir = path.join(tmpRoot, `${prefix}-${++seq}`)
  fs.mkdirSync(dir, { recursive: true })
  return dir
}

function killSync (pid, signal) {
  if (!pid) return
  try { process.kill(pid, signal) } catch { /* already gone */ }
}

function cleanupSync () {
  for (const r of resources) {
    try { r.killSync() } catch { /* best effort */ }
  }
  resources.clear()
  if (tmpRoot && !KEEP) {
    try { fs.rmSync(tmpRoot, { recursive: true, force: true }) } catch { /* best effort */ }
  }
  tmpRoot = null
}

process.once('exit', cleanupSync)
for (const [sig, num] of [['SIGINT', 2], ['SIGTERM', 15]]) {
  process.on(sig, function onSignal () {
    cleanupSync()
    // nobody else handles it: behave like the default handler
    if (process.listenerCount(sig) === 1) process.exit(128 + num)
  })
}

// Stop everything this harness started and that is still running.
async function stopAll () {
  const list = [...resources].reverse()
  for (const r of list) {
    try { await r.stop() } catch { /* keep going */ }
  }
}

// ---------------------------------------------------------------------------
// small utilities

function freePort () {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, HOST, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Poll fn until it returns a truthy value (which is returned). fn may be async.
// If fn throws, waitUntil rejects at once with that error.
async function waitUntil (fn, { timeoutMs = 5000, intervalMs = 25, message } = {}) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() >= deadline) {
      const what = typeof message === 'function' ? message() : message
      throw new Error(`waitUntil: timed out after ${timeoutMs} ms${what ? `: ${what}` : ''}`)
    }
    await delay(Math.min(intervalMs, Math.max(1, deadline - Date.now())))
  }
}

function countMatches (text, regex) {
  const flags = regex.flags.includes('g') ? regex.flags : `${regex.flags}g`
  const re = new RegExp(regex.source, flags)
  let n = 0
  while (re.exec(text) !== null) {
    n++
    if (re.lastIndex === 0) break
  }
  return n
}

function escapeRegExp (s) {
  return String(s).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

function tail (text, lines = 60) {
  return text.split('\n').slice(-lines).join('\n')
}

function run (cmd, args, { cwd, timeoutMs = 240000, env } = {}) {
  return new Promise((resolve, reject) => {
    const child = childProcess.spawn(cmd, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { out += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', (err) => { clearTimeout(timer); reject(err) })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) return resolve(out)
      reject(new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: code=${code} signal=${signal}\n${tail(out, 80)}`))
    })
  })
}

// Wait for a spawned child to exit, bounded; resolves true if it exited.
function waitExit (child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => { child.removeListener('exit', onExit); resolve(false) }, timeoutMs)
    function onExit () { clearTimeout(timer); resolve(true) }
    child.once('exit', onExit)
  })
}

// Read the first reply line of an SMTP server; resolves the line or null.
function probeGreeting (port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    let buf = ''
    let done = false
    const sock = net.connect({ host: HOST, port })
    const finish = (v) => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (v) sock.end('QUIT\r\n')
      else sock.destroy()
      resolve(v)
    }
    const timer = setTimeout(() => finish(null), timeoutMs)
    sock.setEncoding('utf8')
    sock.on('data', (d) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl !== -1) finish(buf.slice(0, nl).trim())
    })
    sock.on('error', () => finish(null))
    sock.on('close', () => finish(null))
  })
}

// ---------------------------------------------------------------------------
// minimal RESP client (one command per connection) for redis housekeeping

function respEncode (args) {
  let out = `*${args.length}\r\n`
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a))
    out += `$${b.length}\r\n${b.toString('binary')}\r\n`
  }
  return Buffer.from(out, 'binary')
}

function respParse (buf, pos) {
  const nl = buf.indexOf('\r\n', pos)
  if (nl === -1) return null
  const type = String.fromCharCode(buf[pos])
  const line = buf.toString('utf8', pos + 1, nl)
  const next = nl + 2
  switch (type) {
    case '+': return { value: line, pos: next }
    case '-': return { value: new Error(line), pos: next }
    case ':': return { value: Number(line), pos: next }
    case '$': {
      const len = Number(line)
      if (len < 0) return { value: null, pos: next }
      if (buf.length < next + len + 2) return null
      return { value: buf.toString('utf8', next, next + len), pos: next + len + 2 }
    }
    case '*': {
      const n = Number(line)
      if (n < 0) return { value: null, pos: next }
      const arr = []
      let p = next
      for (let i = 0; i < n; i++) {
        const r = respParse(buf, p)
        if (!r) return null
        arr.push(r.value)
        p = r.pos
      }
      return { value: arr, pos: p }
    }
    default:
      throw new Error(`RESP: unexpected type byte ${JSON.stringify(type)}`)
  }
}

function redisCommand (port, args, { timeoutMs = 2000 } = {}) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    let done = false
    const sock = net.connect({ host: HOST, port })
    const finish = (err, v) => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      if (err) reject(err)
      else resolve(v)
    }
    const timer = setTimeout(() => finish(new Error(`redis ${args[0]}: timeout after ${timeoutMs} ms`)), timeoutMs)
    sock.on('connect', () => sock.write(respEncode(args)))
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d])
      let r
      try { r = respParse(buf, 0) } catch (err) { return finish(err) }
      if (!r) return
      if (r.value instanceof Error) finish(r.value)
      else finish(null, r.value)
    })
    sock.on('error', (err) => finish(err))
    sock.on('close', () => finish(new Error(`redis ${args[0]}: connection closed without a reply`)))
  })
}

// ---------------------------------------------------------------------------
// redis-server

async function startRedis (opts = {}) {
  const port = opts.port || await freePort()
  const dir = tmpDir('redis')
  let child = null
  let logText = ''

  const r = {
    port,
    dir,
    host: HOST,
    url: `redis://${HOST}:${port}`,
    get pid () { return child && r.alive() ? child.pid : null },
    alive () { return !!child && child.exitCode === null && child.signalCode === null },
    log () { return logText },

    async start ({ timeoutMs = 5000 } = {}) {
      if (r.alive()) throw new Error(`redis on ${port} is already running (pid ${child.pid})`)
      const args = [
        '--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no',
        '--dir', dir, '--daemonize', 'no', ...(opts.args || []),
      ]
      child = childProcess.spawn(REDIS_SERVER, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
      const me = child
      me.stdout.on('data', (d) => { logText += d })
      me.stderr.on('data', (d) => { logText += d })
      let spawnError = null
      me.on('error', (err) => { spawnError = err })
      resources.add(r)
      await waitUntil(async () => {
        if (spawnError) throw new Error(`cannot run ${REDIS_SERVER}: ${spawnError.message}`)
        if (me.exitCode !== null || me.signalCode !== null) {
          throw new Error(`redis-server exited (code ${me.exitCode}, signal ${me.signalCode}):\n${tail(logText)}`)
        }
        try {
          return (await redisCommand(port, ['PING'], { timeoutMs: 500 })) === 'PONG'
        } catch {
          return false
        }
      }, { timeoutMs, intervalMs: 20, message: () => `redis-server on ${port} did not answer PING\n${tail(logText)}` })
      return r
    },

    async stop ({ timeoutMs = 5000 } = {}) {
      if (!child) return
      const me = child
      if (me.exitCode === null && me.signalCode === null) {
        me.kill('SIGTERM')
        if (!await waitExit(me, timeoutMs)) {
          me.kill('SIGKILL')
          await waitExit(me, 2000)
        }
      }
      resources.delete(r)
    },

    async restart (o) {
      await r.stop()
      return r.start(o)
    },

    killSync () { if (r.alive()) killSync(child.pid, 'SIGKILL') },
    command (...args) { return redisCommand(port, args) },
    flushall () { return redisCommand(port, ['FLUSHALL']) },
    keys (pattern = '*') { return redisCommand(port, ['KEYS', pattern]) },
  }

  await r.start()
  return r
}

// ---------------------------------------------------------------------------
// npm pack + Haraka instance templates (built once per mocha run)

let packPromise = null
function packPlugin () {
  if (!packPromise) {
    packPromise = (async () => {
      // a tarball packed elsewhere (e.g. once by CI) may be handed in
      const given = process.env.HIJACK_GUARD_E2E_TARBALL
      if (given) {
        if (!fs.existsSync(given)) throw new Error(`HIJACK_GUARD_E2E_TARBALL=${given} does not exist`)
        return path.resolve(given)
      }
      const dest = tmpDir('pack')
      await run('npm', ['pack', '--pack-destination', dest], { cwd: REPO_ROOT })
      const tgz = fs.readdirSync(dest).filter((f) => f.endsWith('.tgz'))
      if (tgz.length !== 1) throw new Error(`npm pack produced ${JSON.stringify(tgz)} in ${dest}`)
      return path.join(dest, tgz[0])
    })()
    packPromise.catch(() => { packPromise = null })
  }
  return packPromise
}

const templates = new Map() // 'base' | 'plugin' -> Promise<dir>
function harakaTemplate (withPlugin) {
  const key = withPlugin ? 'plugin' : 'base'
  if (!templates.has(key)) {
    const p = (async () => {
      const dir = path.join(tmpDir(`template-${key}`), 'haraka')
      await run(process.execPath, [HARAKA_BIN, '-i', dir], { cwd: REPO_ROOT })
      if (withPlugin) {
        const tarball = await packPlugin()
        await run('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], { cwd: dir })
        const pj = path.join(dir, 'node_modules', PLUGIN_PACKAGE, 'package.json')
        if (!fs.existsSync(pj)) throw new Error(`npm install ${tarball} did not create ${pj}`)
      }
      return dir
    })()
    p.catch(() => templates.delete(key))
    templates.set(key, p)
  }
  return templates.get(key)
}

// ---------------------------------------------------------------------------
// test-only Haraka plugins written into DIR/plugins

const TEST_LOOPBACK_PLUGIN = `'use strict'
// test-only: keeps every lookup and every delivery on loopback

exports.register = function () {
  this.load_cfg()
}

exports.load_cfg = function () {
  this.cfg = this.config.get('test_loopback.ini', () => this.load_cfg())
}

// answer reverse DNS without DNS
exports.hook_lookup_rdns = function (next, connection) {
  const ip = String(connection.remote.ip || '')
  if (/^(127\\.|::1$|::ffff:127\\.)/.test(ip)) return next(OK, 'localhost')
  next(OK, 'unknown.test.invalid')
}

// route ALL outbound mail to the loopback sink
exports.hook_get_mx = function (next, hmail, domain) {
  const port = parseInt(this.cfg.main.sink_port, 10)
  if (!port) return next(DENYSOFT, 'test_loopback: no sink configured')
  next(OK, { exchange: this.cfg.main.sink_host || '127.0.0.1', port, priority: 0 })
}
`

const TEST_AUTH_ANY_PLUGIN = `'use strict'
// test-only: accepts any login with the password 'secret' (AUTH PLAIN/LOGIN on loopback)

exports.register = function () {
  this.inherits('auth/auth_base')
}

exports.hook_capabilities = function (next, connection) {
  if (!connection.remote.is_local && !connection.remote.is_private && !connection.tls.enabled) return next()
  connection.capabilities.push('AUTH PLAIN LOGIN')
  connection.notes.allowed_auth_methods = ['PLAIN', 'LOGIN']
  next()
}

exports.get_plain_passwd = function (user, connection, cb) {
  connection.loginfo(this, 'login=' + JSON.stringify(user))
  cb('secret')
}
`

function authPluginNames (auth) {
  const list = Array.isArray(auth) ? auth : [auth || 'flat_file']
  return list.map((a) => {
    if (a === 'flat_file') return 'auth/flat_file'
    if (a === 'any') return 'test_auth_any'
    return a
  })
}

// ---------------------------------------------------------------------------
// Haraka instance

const instances = new Set()

async function createHaraka (opts = {}) {
  const withPlugin = opts.plugin !== false
  const template = await harakaTemplate(withPlugin)
  const dir = path.join(tmpDir('haraka'), 'haraka')
  fs.cpSync(template, dir, { recursive: true, verbatimSymlinks: true })

  const port = opts.port || await freePort()
  const sinkPort = opts.sinkPort || (opts.sink && opts.sink.port) || 0
  const me = opts.me || 'mx.test.example'
  const localDomains = opts.localDomains || ['test.example']
  const cfgDir = path.join(dir, 'config')
  const write = (name, text) => fs.writeFileSync(path.join(cfgDir, name), text)

  write('smtp.ini', [
    '[main]',
    `listen=${HOST}:${port}`,
    `nodes=${opts.nodes === undefined ? 0 : opts.nodes}`,
    `public_ip=${HOST}`,
    'force_shutdown_timeout=5',
    '',
    '[headers]',
    'max_lines=1000',
    'max_received=100',
    '',
  ].join('\n'))
  write('me', `${me}\n`)
  if (opts.lineLength) {
    // connection.ini [max] line_length (default 512) also caps the AUTH line: a login + password
    // of more than ~370 bytes no longer fits in AUTH PLAIN: 521 Command line too long
    const ci = fs.readFileSync(path.join(cfgDir, 'connection.ini'), 'utf8')
    write('connection.ini', ci.replace(/^line_length=\d+$/m, `line_length=${opts.lineLength}`))
  }
  write('host_list', `${localDomains.join('\n')}\n`)
  write('log.ini', `[main]\nlevel=${opts.logLevel || 'info'}\ntimestamps=false\nformat=default\n`)
  write('outbound.ini', [
    '[main]',
    'enable_tls=false',
    'local_mx_ok=true',
    'inet_prefer=v4',
    'connect_timeout=5',
    'temp_fail_intervals=none',
    '',
  ].join('\n'))
  write('test_loopback.ini', `[main]\nsink_host=${HOST}\nsink_port=${sinkPort}\n`)
  // inbound (non-relayed) mail for localDomains goes to the sink too
  write('smtp_forward.ini', [
    '[main]',
    `host=${HOST}`,
    `port=${sinkPort || 1}`,
    'enable_tls=false',
    'enable_outbound=false',
    '',
  ].join('\n'))

  const users = opts.users || {}
  write('auth_flat_file.ini', [
    '[core]',
    'methods=PLAIN,LOGIN',
    '',
    '[users]',
    ...Object.entries(users).map(([u, p]) => `${u}=${p}`),
    '',
  ].join('\n'))

  fs.writeFileSync(path.join(dir, 'plugins', 'test_loopback.js'), TEST_LOOPBACK_PLUGIN)
  fs.writeFileSync(path.join(dir, 'plugins', 'test_auth_any.js'), TEST_AUTH_ANY_PLUGIN)
  // more test-only plugins: { name: source }; list them in beforePlugins / extraPlugins
  for (const [name, src] of Object.entries(opts.testPlugins || {})) {
    fs.writeFileSync(path.join(dir, 'plugins', `${name}.js`), src)
  }

  if (opts.pluginIni !== undefined) write(`${PLUGIN_NAME}.ini`, opts.pluginIni)

  const plugins = [
    'test_loopback',
    ...(opts.beforePlugins || []),
    ...authPluginNames(opts.auth),
    ...(withPlugin ? [PLUGIN_NAME] : []),
    ...(opts.extraPlugins || []),
    'rcpt_to.in_host_list',
    'queue/smtp_forward',
  ]
  write('plugins', `${plugins.join('\n')}\n`)

  // arbitrary extra config files, written last (they win)
  for (const [name, text] of Object.entries(opts.config || {})) {
    const file = path.join(cfgDir, name)
    fs.mkdirSync(path.dirname(file), { recursive: true })
    fs.writeFileSync(file, text)
  }

  const logFile = path.join(dir, 'haraka.log')
  let child = null
  let memLog = ''
  let stopping = false
  // logToFile: Haraka writes its log straight into DIR/haraka.log (no pipe through this
  // process, nothing kept in memory; log() reads the file). For long or busy runs (benchmarks).
  const direct = opts.logToFile === true
  const readLog = () => {
    if (!direct) return memLog
    try { return fs.readFileSync(logFile, 'utf8') } catch { return '' }
  }

  const append = (d) => {
    const s = d.toString()
    if (!direct) memLog += s
    try { fs.appendFileSync(logFile, s) } catch { /* dir removed */ }
  }

  const h = {
    port,
    dir,
    host: HOST,
    sinkPort,
    plugins,
    logFile,
    crashed: false, // true when the process exited without stop()
    exitCode: null, // exit code / signal of the last run, once it has exited
    exitSignal: null,
    get pid () { return child && h.alive() ? child.pid : null },
    alive () { return !!child && child.exitCode === null && child.signalCode === null },
    log () { return readLog() },
    // a position in the log, for waitForLog({ since })
    logMark () { return readLog().length },

    async start ({ timeoutMs = opts.startTimeoutMs || 15000 } = {}) {
      if (h.alive()) throw new Error(`haraka on ${port} is already running (pid ${child.pid})`)
      stopping = false
      append(`\n==== harness: starting haraka -c ${dir} ====\n`)
      const logFd = direct ? fs.openSync(logFile, 'a') : null
      try {
        child = childProcess.spawn(process.execPath, [HARAKA_BIN, '-c', dir], {
          cwd: dir,
          env: { ...process.env, ...(opts.env || {}) },
          stdio: direct ? ['ignore', logFd, logFd] : ['ignore', 'pipe', 'pipe'],
          detached: true, // own process group, so cluster workers can be killed with it
        })
      } finally {
        if (logFd !== null) fs.closeSync(logFd)
      }
      const proc = child
      if (!direct) {
        proc.stdout.on('data', append)
        proc.stderr.on('data', append)
      }
      let spawnError = null
      proc.on('error', (err) => { spawnError = err })
      h.crashed = false
      h.exitCode = null
      h.exitSignal = null
      proc.on('exit', (code, signal) => {
        if (!stopping) h.crashed = true
        h.exitCode = code
        h.exitSignal = signal
        append(`\n==== harness: haraka exited code=${code} signal=${signal} ====\n`)
      })
      resources.add(h)
      const t0 = Date.now()
      try {
        await waitUntil(async () => {
          if (spawnError) throw spawnError
          if (proc.exitCode !== null || proc.signalCode !== null) {
            throw new Error(`haraka exited during startup (code ${proc.exitCode}, signal ${proc.signalCode})`)
          }
          const line = await probeGreeting(port, 1000)
          if (line && !line.startsWith('220')) throw new Error(`haraka greeted with: ${line}`)
          return !!line
        }, { timeoutMs, intervalMs: 50, message: `haraka did not answer 220 on ${HOST}:${port}` })
      } catch (err) {
        await h.stop()
        err.message += `\n---- haraka log (${dir}) ----\n${tail(readLog(), 80)}`
        throw err
      }
      h.startMs = Date.now() - t0
      return h
    },

    async stop ({ timeoutMs = 8000 } = {}) {
      if (!child) return
      const proc = child
      stopping = true
      if (proc.exitCode === null && proc.signalCode === null) {
        killSync(proc.pid, 'SIGINT')
        if (!await waitExit(proc, timeoutMs)) {
          append('\n==== harness: haraka did not exit on SIGINT, sending SIGKILL ====\n')
          killSync(-proc.pid, 'SIGKILL')
          killSync(proc.pid, 'SIGKILL')
          await waitExit(proc, 2000)
        }
      }
      // cluster workers (opts.nodes > 0) leave when the master exits; make sure
      if (opts.nodes) {
        const groupGone = () => { try { process.kill(-proc.pid, 0); return false } catch { return true } }
        try {
          await waitUntil(groupGone, { timeoutMs: 3000, intervalMs: 25 })
        } catch {
          killSync(-proc.pid, 'SIGKILL')
        }
      }
      resources.delete(h)
    },

    async restart (o) {
      await h.stop()
      return h.start(o)
    },

    killSync () {
      if (!child) return
      killSync(-child.pid, 'SIGKILL')
      killSync(child.pid, 'SIGKILL')
    },

    // Wait until regex matched `count` times in the log (from `since`, a logMark()).
    async waitForLog (regex, { count = 1, timeoutMs = 5000, since = 0 } = {}) {
      const n = () => countMatches(readLog().slice(since), regex)
      return waitUntil(() => {
        if (n() >= count) return true
        if (child && !h.alive()) {
          // one last look: the exit message was appended after the final output
          if (n() >= count) return true
          throw new Error(`haraka exited while waiting for ${regex} x${count} (saw ${n()})\n${tail(readLog(), 60)}`)
        }
        return false
      }, { timeoutMs, intervalMs: 25, message: () => `${regex} x${count} in haraka log (saw ${n()})\n${tail(readLog(), 60)}` })
    },

    // Write (or replace) a config file in DIR/config.
    writeConfig (name, text) { write(name, text) },

    // Stop and remove the instance directory.
    async destroy () {
      await h.stop()
      instances.delete(h)
      if (!KEEP) fs.rmSync(path.dirname(dir), { recursive: true, force: true })
    },
  }
  instances.add(h)
  return h
}

// For afterEach: print the tails of the Haraka logs when the test failed.
function dumpLogsIfFailed (ctx, lines = 80) {
  const t = ctx && ctx.currentTest
  if (!t || t.state !== 'failed') return
  for (const h of instances) {
    // running ones, and ones that died without being asked to stop
    if (!h.alive() && !h.crashed) continue
    console.error(`\n---- haraka ${h.dir} (port ${h.port}) log tail ----\n${tail(h.log(), lines)}`)
  }
}

// ---------------------------------------------------------------------------
// SMTP sink (the "outside world")

function parseHeaders (raw) {
  const end = raw.search(/\r?\n\r?\n/)
  const head = end === -1 ? raw : raw.slice(0, end)
  const headers = {}
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const i = line.indexOf(':')
    if (i <= 0) continue
    const k = line.slice(0, i).trim().toLowerCase()
    const v = line.slice(i + 1).trim()
    if (k in headers) headers[k] = [].concat(headers[k], v)
    else headers[k] = v
  }
  const body = end === -1 ? '' : raw.slice(end).replace(/^\r?\n\r?\n/, '')
  return { headers, body }
}

async function startSink (opts = {}) {
  const messages = []
  // keepMessages: false counts messages without keeping or parsing them (benchmarks)
  const keep = opts.keepMessages !== false
  let count = 0
  // while set ({ code, message }), every MAIL FROM is answered with it (see sink.refuse)
  let refusal = opts.refuse ? { code: opts.refuse, message: 'sink: try again later' } : null
  let refused = 0
  // refuseRcpt: addresses answered 550 at RCPT TO (an unknown user at the next hop)
  const refuseRcpt = new Set((opts.refuseRcpt || []).map((a) => a.toLowerCase()))
  const server = new SMTPServer({
    secure: false,
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    hideSTARTTLS: true,
    disableReverseLookup: true,
    banner: 'loopback sink',
    logger: false,
    closeTimeout: 500,
    onMailFrom (address, session, callback) {
      if (!refusal) return callback()
      refused++
      const err = new Error(refusal.message)
      err.responseCode = refusal.code
      callback(err)
    },
    onRcptTo (address, session, callback) {
      if (!refuseRcpt.has(String(address.address).toLowerCase())) return callback()
      const err = new Error('sink: no such user')
      err.responseCode = 550
      callback(err)
    },
    onData (stream, session, callback) {
      if (!keep) {
        stream.on('data', () => {})
        stream.on('error', callback)
        stream.on('end', () => { count++; callback(null, 'sink: ok') })
        return
      }
      const chunks = []
      stream.on('data', (c) => chunks.push(c))
      stream.on('error', callback)
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8')
        const { headers, body } = parseHeaders(raw)
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw,
          headers,
          subject: typeof headers.subject === 'string' ? headers.subject : undefined,
          body,
          helo: session.hostNameAppearsAs,
          receivedAt: Date.now(),
        })
        count++
        callback(null, 'sink: ok')
      })
    },
  })
  server.on('error', () => { /* client errors are not the sink's business */ })
  const port = opts.port || await freePort()
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, HOST, () => { server.removeListener('error', reject); resolve() })
  })

  let stopped = false
  const sink = {
    port,
    host: HOST,
    messages,
    // messages received since the start or the last clear(), kept or not (keepMessages)
    get count () { return count },
    // resolves the messages array once it holds at least n messages
    waitFor (n = 1, timeoutMs = 5000) {
      const got = () => (keep ? messages.length : count)
      return waitUntil(() => got() >= n && messages, {
        timeoutMs,
        intervalMs: 20,
        message: () => `sink got ${got()} of ${n} messages`,
      })
    },
    clear () { messages.length = 0; count = 0 },
    // answer every MAIL FROM with `code` (451: Haraka retries per outbound.ini
    // temp_fail_intervals) until accept() is called
    refuse (code = 451, message = code < 500 ? 'sink: try again later' : 'sink: refused') {
      refusal = { code, message }
    },
    accept () { refusal = null },
    // how many MAIL FROM commands were refused so far
    get refused () { return refused },
    stop () {
      if (stopped) return Promise.resolve()
      stopped = true
      resources.delete(sink)
      return new Promise((resolve) => {
        server.close(() => resolve())
        // close open client connections too
        if (server.connections) for (const c of server.connections) { try { c.close() } catch { /* gone */ } }
      })
    },
    killSync () { try { server.close() } catch { /* gone */ } },
  }
  resources.add(sink)
  return sink
}

// ---------------------------------------------------------------------------
// SMTP client (nodemailer SMTPConnection, AUTH forced, no TLS)

const STAGES = { EHLO: 'connect', HELO: 'connect', AUTH: 'auth', MAIL: 'mail', RCPT: 'rcpt', DATA: 'data', RSET: 'rset', QUIT: 'quit' }

function codeOf (response) {
  const m = /^(\d{3})/.exec(String(response || ''))
  return m ? Number(m[1]) : null
}

function buildMessage ({ from, to, subject = 'test', body = 'test body', headers = {}, raw }) {
  if (raw !== undefined) return raw
  const lines = [
    `From: <${from}>`,
    `To: ${to.map((t) => `<${t}>`).join(', ')}`,
    `Subject: ${subject}`,
    `Date: ${new Date().toUTCString()}`,
    `Message-ID: <${Date.now()}.${Math.random().toString(36).slice(2)}@client.test.example>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    '',
    ...String(body).split(/\r?\n/),
    '',
  ]
  return lines.join('\r\n')
}

// Open a connection; resolves { conn, state } once the greeting/EHLO is done.
function connect ({ port, host = HOST, name = 'client.test.example', timeoutMs = 10000 }) {
  return new Promise((resolve) => {
    const state = { stage: 'connect', closed: false, lastError: null, pending: null, transcript: [] }
    const logger = {}
    for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal']) {
      logger[level] = (entry, message, ...args) => {
        if (!entry || (entry.tnx !== 'client' && entry.tnx !== 'server')) return
        const text = util.format(message, ...args)
        state.transcript.push(`${entry.tnx === 'client' ? 'C' : 'S'}: ${text}`)
        if (entry.tnx === 'client') {
          const verb = String(text).split(/[\s:]/)[0].toUpperCase()
          if (STAGES[verb]) state.stage = STAGES[verb]
        }
      }
    }
    const conn = new SMTPConnection({
      host,
      port,
      name,
      secure: false,
      ignoreTLS: true,
      connectionTimeout: Math.min(timeoutMs, 5000),
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
      logger,
      transactionLog: true,
    })
    // The server may answer and then hang up (e.g. 550 + disconnect at MAIL FROM):
    // nodemailer then emits 'error' (ECONNECTION) after the answer was delivered.
    // Settle whatever is pending with the last server answer, never throw.
    conn.on('error', (err) => {
      state.lastError = err
      settlePending(state, err)
    })
    conn.on('end', () => {
      state.closed = true
      settlePending(state, null)
    })
    state.pending = (err) => {
      if (err) return resolve({ conn, state, error: err })
      resolve({ conn, state })
    }
    conn.connect((err) => {
      const p = state.pending
      state.pending = null
      if (p) p(err)
    })
  })
}

function settlePending (state, err) {
  const p = state.pending
  if (!p) return
  state.pending = null
  p(err || Object.assign(new Error('connection closed'), { code: 'ECONNECTION' }))
}

function resultFromError (state, err, stageOverride) {
  const response = err.response || err.message
  let stage = stageOverride || state.stage
  if (err.command === 'MAIL FROM') stage = 'mail'
  else if (err.command === 'RCPT TO') stage = 'rcpt'
  else if (err.command === 'DATA') stage = 'data'
  else if (err.command && /^AUTH/.test(err.command)) stage = 'auth'
  return {
    stage,
    code: err.responseCode || codeOf(err.response) || null,
    response: String(response || ''),
    error: err.responseCode ? undefined : err,
  }
}

function op (state, fn) {
  return new Promise((resolve) => {
    if (state.closed || state.conn._destroyed) {
      return resolve({ err: Object.assign(new Error('connection closed'), { code: 'ECONNECTION' }) })
    }
    state.pending = (err, value) => resolve({ err, value })
    fn((err, value) => {
      const p = state.pending
      state.pending = null
      if (p) p(err, value)
    })
  })
}

async function doAuth (conn, state, { user, pass, method = 'PLAIN' }) {
  const { err } = await op(state, (cb) => conn.login({ user, pass, method }, cb))
  if (err) return resultFromError(state, err, 'auth')
  return { stage: 'auth', code: codeOf(conn.lastServerResponse) || 235, response: String(conn.lastServerResponse || '') }
}

// Open an (optionally authenticated) session. Rejects if the connection or AUTH fails
// (use tryAuth / sendOne to look at AUTH failures).
async function openSession (opts) {
  const { conn, state, error } = await connect(opts)
  state.conn = conn
  if (error) {
    conn.close()
    const r = resultFromError(state, error, 'connect')
    throw Object.assign(new Error(`connect to ${opts.port} failed: ${r.code || ''} ${r.response}`), r)
  }
  let auth = null
  if (opts.user !== undefined) {
    auth = await doAuth(conn, state, opts)
    if (auth.code !== 235) {
      conn.close()
      throw Object.assign(new Error(`AUTH as ${JSON.stringify(opts.user)} failed: ${auth.code} ${auth.response}`), auth)
    }
  }
  return makeSession(conn, state, auth)
}

function makeSession (conn, state, auth) {
  return {
    auth,
    transcript: state.transcript,
    get closed () { return state.closed || conn._destroyed },
    // -> { stage, code, response, accepted, rejected, rejectedErrors }; never throws on 4xx/5xx
    async send (msg) {
      const to = [].concat(msg.to)
      const envelope = { from: msg.from, to }
      state.stage = 'mail'
      const { err, value } = await op(state, (cb) => conn.send(envelope, buildMessage({ ...msg, to }), cb))
      if (err) {
        const r = resultFromError(state, err)
        if (err.rejected) r.rejected = err.rejected
        if (err.rejectedErrors) r.rejectedErrors = err.rejectedErrors.map((e) => ({ recipient: e.recipient, code: e.responseCode, response: e.response }))
        return r
      }
      return {
        stage: 'ok',
        code: codeOf(value.response),
        response: String(value.response || ''),
        accepted: value.accepted,
        rejected: value.rejected,
        rejectedErrors: (value.rejectedErrors || []).map((e) => ({ recipient: e.recipient, code: e.responseCode, response: e.response })),
      }
    },
    async rset () {
      const { err } = await op(state, (cb) => conn.reset(cb))
      if (err) return resultFromError(state, err, 'rset')
      return { stage: 'rset', code: codeOf(conn.lastServerResponse), response: String(conn.lastServerResponse || '') }
    },
    // QUIT and wait (bounded) for the server to close
    async close (timeoutMs = 2000) {
      if (state.closed || conn._destroyed) return
      const ended = new Promise((resolve) => conn.once('end', resolve))
      try { conn.quit() } catch { /* already closing */ }
      const timer = new Promise((resolve) => setTimeout(resolve, timeoutMs).unref())
      await Promise.race([ended, timer])
      conn.close()
    },
  }
}

// AUTH only: -> { code, response }
async function tryAuth (opts) {
  const { conn, state, error } = await connect(opts)
  state.conn = conn
  if (error) {
    conn.close()
    const r = resultFromError(state, error, 'connect')
    return { code: r.code, response: r.response, stage: 'connect' }
  }
  const r = await doAuth(conn, state, opts)
  await makeSession(conn, state, r).close()
  return { code: r.code, response: r.response, stage: r.stage }
}

// connect, AUTH, send one message, QUIT: -> { stage, code, response, ... }
// stage: 'connect' | 'auth' | 'mail' | 'rcpt' | 'data' | 'ok'
async function sendOne (opts) {
  const { conn, state, error } = await connect(opts)
  state.conn = conn
  if (error) {
    conn.close()
    return resultFromError(state, error, 'connect')
  }
  const session = makeSession(conn, state, null)
  if (opts.user !== undefined) {
    const a = await doAuth(conn, state, opts)
    if (a.code !== 235) {
      await session.close()
      return a
    }
  }
  const r = await session.send(opts)
  await session.close()
  r.transcript = state.transcript
  return r
}

module.exports = {
  REPO_ROOT,
  HOST,
  freePort,
  waitUntil,
  escapeRegExp,
  startRedis,
  redisCommand,
  packPlugin,
  createHaraka,
  startSink,
  openSession,
  sendOne,
  tryAuth,
  stopAll,
  dumpLogsIfFailed,
}
