'use strict'

// End-to-end: a hot reload that changes a window, the buckets or adds an [account:] override
// must not give an account a fresh quota (issue 8, item 8). Real Haraka with the packed plugin,
// real redis-server (or the memory store), a real SMTP client, a loopback sink. The reload is
// awaited on Haraka's log ("hijack-guard.ini reloaded", about 5 s after the file changes).

const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const path = require('node:path')

const h = require('./harness')
const { assert250, assert535, assert550, countMatches, disabledKey, pluginIni, waitSubjects } = require('./helpers')

const PW = 'pw'
const OUT = 'bob@outside.example'
const RELOADED = /hijack-guard\.ini reloaded: /
const RELOAD_TIMEOUT_MS = 20000

describe('e2e: a reload that changes the windows keeps the counts', function () {
  this.timeout(90000)

  let sink
  let redis
  const started = []

  before(async function () {
    this.timeout(240000) // npm pack (build) + npm install, once per run
    await h.packPlugin()
    sink = await h.startSink()
    redis = await h.startRedis()
  })

  after(async function () {
    for (const r of started.splice(0)) await r.destroy()
    await redis.stop()
    await sink.stop()
    await h.stopAll()
  })

  beforeEach(async function () {
    sink.clear()
    await redis.flushall()
  })

  afterEach(async function () {
    h.dumpLogsIfFailed(this)
    for (const r of started.splice(0).reverse()) await r.destroy()
  })

  async function haraka (store, limits, users) {
    const srv = await h.createHaraka({
      sink,
      users,
      pluginIni: pluginIni(store === 'redis' ? redis.port : null, { store, limits }),
    })
    started.push(srv)
    await srv.start()
    return srv
  }

  /** Rewrites config/hijack-guard.ini and waits (bounded) until the plugin logs the reload. */
  async function reload (srv, store, limits) {
    const since = srv.logMark()
    srv.writeConfig('hijack-guard.ini', pluginIni(store === 'redis' ? redis.port : null, { store, limits }))
    await srv.waitForLog(RELOADED, { since, timeoutMs: RELOAD_TIMEOUT_MS })
    assert.doesNotMatch(srv.log().slice(since), /keeping the previous configuration/)
  }

  /** The live message count `hijack-guard show --json` reports, by the CLI the package installed. */
  function cliCount (srv, account) {
    const bin = path.join(srv.dir, 'node_modules', '.bin', 'hijack-guard')
    const env = { ...process.env }
    delete env.HARAKA
    return new Promise((resolve, reject) => {
      childProcess.execFile(bin, ['-c', srv.dir, '--json', 'show', account], { cwd: srv.dir, env, timeout: 20000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
        if (err) return reject(new Error(`hijack-guard show ${account}: ${err.message}\n${stdout}${stderr}`))
        const c = JSON.parse(stdout).counts.find((x) => x.kind === 'messages')
        resolve(`${c.count} of ${c.text}`)
      })
    })
  }

  /** The message over the limit is refused 550 5.7.1, the account is disabled, and stays so. */
  async function assertRefusedAndDisabled (srv, s, store, account, subject) {
    const over = await s.send({ from: account, to: [OUT], subject })
    assert550(over, 'data', 'the message over the limit after the reload')
    assert.match(over.response, /reached its limit of 20 messages/)
    assert.equal(countMatches(srv.log(), /ACCOUNT DISABLED/), 1)
    if (store === 'redis') assert.equal(await redis.command('EXISTS', disabledKey(account)), 1)
    assert535(await h.tryAuth({ port: srv.port, user: account, pass: PW }), 'AUTH of the disabled account')
  }

  for (const store of ['redis', 'memory']) {
    it(`store = ${store}: 19 of messages = 20/1m (30 buckets), then 20/2m with buckets = 10: the 21st is refused 550 5.7.1 and the account disabled`, async function () {
      const alice = 'alice@test.example'
      const srv = await haraka(store, 'messages = 20/1m\nbuckets = 30\nrecipients = 0', { [alice]: PW })
      const s = await h.openSession({ port: srv.port, user: alice, pass: PW })
      for (let i = 1; i <= 19; i++) assert250(await s.send({ from: alice, to: [OUT], subject: `rw-${store} ${i}` }), `message ${i}`)

      await reload(srv, store, 'messages = 20/2m\nbuckets = 10\nrecipients = 0')
      assert.match(srv.log(), /reloaded: .*messages 20\/2m/)
      if (store === 'redis') assert.equal(await cliCount(srv, alice), '19 of 20/2m', 'the CLI counts across the change too')

      assert250(await s.send({ from: alice, to: [OUT], subject: `rw-${store} 20` }), 'the 20th message, still under the limit')
      await assertRefusedAndDisabled(srv, s, store, alice, `rw-${store} 21`)
      assert.equal((await waitSubjects(sink, `rw-${store} `, 20)).length, 20)
      assert.ok(srv.alive())
    })

    it(`store = ${store}: 19 of messages = 20/1m, then an [account:] override 20/3m with buckets = 6: refused and disabled at the 21st; another account keeps the base rules`, async function () {
      const alice = 'alice@test.example'
      const bob = 'bob@test.example'
      const base = 'messages = 20/1m\nbuckets = 30\nrecipients = 0'
      const srv = await haraka(store, base, { [alice]: PW, [bob]: PW })
      const s = await h.openSession({ port: srv.port, user: alice, pass: PW })
      for (let i = 1; i <= 19; i++) assert250(await s.send({ from: alice, to: [OUT], subject: `ro-${store} ${i}` }), `message ${i}`)
      await reload(srv, store, `${base}\n\n[account:${alice}]\nmessages = 20/3m\nbuckets = 6`)
      if (store === 'redis') assert.equal(await cliCount(srv, alice), '19 of 20/3m', 'the CLI counts across the change too')

      assert250(await s.send({ from: alice, to: [OUT], subject: `ro-${store} 20` }), 'the 20th message, still under the limit')
      await assertRefusedAndDisabled(srv, s, store, alice, `ro-${store} 21`)
      const b = await h.openSession({ port: srv.port, user: bob, pass: PW })
      for (let i = 1; i <= 20; i++) assert250(await b.send({ from: bob, to: [OUT], subject: `ro-${store} bob ${i}` }), `bob ${i}`)
      assert550(await b.send({ from: bob, to: [OUT], subject: `ro-${store} bob 21` }), 'data', "bob's 21st under the base rules")
      await b.close()
      assert.ok(srv.alive())
    })
  }
})
