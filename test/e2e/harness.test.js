'use strict'

// Proves the e2e harness itself against a Haraka WITHOUT hijack-guard:
// AUTH over loopback, relaying to an outside domain, delivery to the sink,
// failure reporting, and the redis helper.

const assert = require('node:assert')
const fs = require('node:fs')
const path = require('node:path')

const h = require('./harness')

// a test-only plugin that refuses one sender with 550 and hangs up
const DENY_MAIL_PLUGIN = `'use strict'
exports.hook_mail = function (next, connection, params) {
  if (params[0].user === 'hangup') return next(DENYDISCONNECT, 'go away')
  next()
}
`

describe('e2e harness', function () {
  this.timeout(30000)

  let sink
  let haraka

  before(async function () {
    sink = await h.startSink()
  })

  after(async function () {
    await h.stopAll()
  })

  afterEach(function () {
    h.dumpLogsIfFailed(this)
  })

  describe('auth/flat_file', function () {
    before(async function () {
      haraka = await h.createHaraka({
        plugin: false,
        sink,
        users: { 'alice@test.example': 'alice-pw' },
        testPlugins: { test_deny_mail: DENY_MAIL_PLUGIN },
        extraPlugins: ['test_deny_mail'],
      })
      await haraka.start()
    })

    after(async function () {
      await haraka.destroy()
    })

    beforeEach(function () {
      sink.clear()
    })

    it('relays an authenticated message to an outside domain and it reaches the sink', async function () {
      const r = await h.sendOne({
        port: haraka.port,
        user: 'alice@test.example',
        pass: 'alice-pw',
        from: 'alice@test.example',
        to: ['bob@outside.example', 'carol@elsewhere.example'],
        subject: 'harness relay check',
        body: 'hello from the harness',
      })
      assert.strictEqual(r.stage, 'ok', r.response)
      assert.strictEqual(r.code, 250)
      assert.match(r.response, /Message Queued/)

      // one delivery per destination domain
      const msgs = await sink.waitFor(2, 10000)
      const byRcpt = Object.fromEntries(msgs.map((m) => [m.to.join(','), m]))
      for (const rcpt of ['bob@outside.example', 'carol@elsewhere.example']) {
        const m = byRcpt[rcpt]
        assert.ok(m, `no delivery for ${rcpt}: ${JSON.stringify(msgs.map((x) => x.to))}`)
        assert.strictEqual(m.from, 'alice@test.example')
        assert.strictEqual(m.subject, 'harness relay check')
        assert.match(m.body, /hello from the harness/)
        assert.strictEqual(m.helo, 'mx.test.example')
      }
      assert.ok(haraka.alive())
    })

    it('keeps one session open for several messages', async function () {
      const s = await h.openSession({ port: haraka.port, user: 'alice@test.example', pass: 'alice-pw' })
      assert.strictEqual(s.auth.code, 235)
      for (let i = 0; i < 3; i++) {
        const r = await s.send({ from: 'alice@test.example', to: ['bob@outside.example'], subject: `multi ${i}` })
        assert.strictEqual(r.code, 250, r.response)
        assert.strictEqual(r.stage, 'ok')
      }
      await s.close()
      const msgs = await sink.waitFor(3, 10000)
      assert.deepStrictEqual(msgs.map((m) => m.subject).sort(), ['multi 0', 'multi 1', 'multi 2'])
    })

    it('answers 535 to a wrong password', async function () {
      // Haraka waits 1 s before a 535: run the three checks side by side
      const creds = { port: haraka.port, user: 'alice@test.example', pass: 'wrong' }
      const [a, r] = await Promise.all([
        h.tryAuth(creds),
        h.sendOne({ ...creds, from: 'alice@test.example', to: ['bob@outside.example'] }),
        assert.rejects(h.openSession(creds), (err) => err.code === 535 && err.stage === 'auth'),
      ])
      assert.strictEqual(a.code, 535, a.response)
      assert.match(a.response, /5\.7\.8/)
      assert.strictEqual(r.stage, 'auth')
      assert.strictEqual(r.code, 535)
      assert.strictEqual(sink.messages.length, 0)
    })

    it('reports 550 at MAIL FROM followed by a hang-up as stage mail, not as a socket error', async function () {
      const mark = haraka.logMark()
      const r = await h.sendOne({
        port: haraka.port,
        user: 'alice@test.example',
        pass: 'alice-pw',
        from: 'hangup@test.example',
        to: ['bob@outside.example'],
      })
      assert.strictEqual(r.stage, 'mail', JSON.stringify(r))
      assert.strictEqual(r.code, 550)
      assert.match(r.response, /go away/)
      await haraka.waitForLog(/disconnect ip=127\.0\.0\.1 .*relay=Y/, { since: mark })

      // and inside an open session: the next send reports the closed connection, no throw
      const s = await h.openSession({ port: haraka.port, user: 'alice@test.example', pass: 'alice-pw' })
      const r1 = await s.send({ from: 'hangup@test.example', to: ['bob@outside.example'] })
      assert.strictEqual(r1.stage, 'mail')
      assert.strictEqual(r1.code, 550)
      await h.waitUntil(() => s.closed, { timeoutMs: 2000 })
      const r2 = await s.send({ from: 'alice@test.example', to: ['bob@outside.example'] })
      assert.strictEqual(r2.code, null)
      await s.close()
    })

    it('reports a refused recipient at stage rcpt', async function () {
      // without AUTH: not relaying, so an outside domain is refused
      const r = await h.sendOne({ port: haraka.port, from: 'x@outside.example', to: ['bob@outside.example'] })
      assert.strictEqual(r.stage, 'rcpt', JSON.stringify(r))
      assert.strictEqual(r.code, 550)
    })

    it('delivers inbound mail for a local domain to the sink', async function () {
      const r = await h.sendOne({ port: haraka.port, from: 'x@outside.example', to: ['postmaster@test.example'], subject: 'inbound' })
      assert.strictEqual(r.stage, 'ok', r.response)
      const [m] = await sink.waitFor(1, 10000)
      assert.deepStrictEqual(m.to, ['postmaster@test.example'])
      assert.strictEqual(m.subject, 'inbound')
    })

    it('restarts on the same port and waits for log lines', async function () {
      const mark = haraka.logMark()
      await haraka.restart()
      await haraka.waitForLog(/Listening on 127\.0\.0\.1:\d+/, { since: mark })
      const r = await h.sendOne({
        port: haraka.port,
        user: 'alice@test.example',
        pass: 'alice-pw',
        from: 'alice@test.example',
        to: ['bob@outside.example'],
        subject: 'after restart',
      })
      assert.strictEqual(r.code, 250, r.response)
      const [m] = await sink.waitFor(1, 10000)
      assert.strictEqual(m.subject, 'after restart')
    })
  })

  describe('test_auth_any', function () {
    before(async function () {
      haraka = await h.createHaraka({ plugin: false, sink, auth: 'any' })
      await haraka.start()
    })

    after(async function () {
      await haraka.destroy()
    })

    beforeEach(function () {
      sink.clear()
    })

    it('accepts a login that no ini file can hold, and relays', async function () {
      const user = 'we{ir}d: name ü' + 'x'.repeat(300)
      const a = await h.tryAuth({ port: haraka.port, user, pass: 'secret' })
      assert.strictEqual(a.code, 235, a.response)

      const r = await h.sendOne({
        port: haraka.port,
        user,
        pass: 'secret',
        from: 'weird@test.example',
        to: ['bob@outside.example'],
        subject: 'weird login',
      })
      assert.strictEqual(r.stage, 'ok', r.response)
      assert.strictEqual(r.code, 250)
      const [m] = await sink.waitFor(1, 10000)
      assert.strictEqual(m.from, 'weird@test.example')
      assert.deepStrictEqual(m.to, ['bob@outside.example'])
      assert.strictEqual(m.subject, 'weird login')
      // the login reached Haraka byte for byte (test_auth_any logs it as JSON)
      const logged = new RegExp(`login=${h.escapeRegExp(JSON.stringify(user))}`)
      await haraka.waitForLog(logged, { count: 2 })
    })

    it('accepts AUTH LOGIN too', async function () {
      const a = await h.tryAuth({ port: haraka.port, user: 'someone', pass: 'secret', method: 'LOGIN' })
      assert.strictEqual(a.code, 235, a.response)
      const b = await h.tryAuth({ port: haraka.port, user: 'someone', pass: 'nope', method: 'LOGIN' })
      assert.strictEqual(b.code, 535, b.response)
    })
  })

  describe('packed plugin', function () {
    it('installs the tarball into each instance and Haraka loads it from there', async function () {
      this.timeout(240000) // npm pack (build) + npm install, once per run
      const tarball = await h.packPlugin()
      assert.match(path.basename(tarball), /^haraka-plugin-hijack-guard-.*\.tgz$/)
      assert.strictEqual(await h.packPlugin(), tarball, 'packPlugin() is cached')

      const ini = '[main]\nstore=memory\n[alert]\nto=postmaster@test.example\n'
      const a = await h.createHaraka({ sink, users: { 'alice@test.example': 'pw' }, pluginIni: ini })
      const b = await h.createHaraka({ sink, users: { 'alice@test.example': 'pw' }, pluginIni: ini })
      for (const inst of [a, b]) {
        const pkg = path.join(inst.dir, 'node_modules', 'haraka-plugin-hijack-guard')
        assert.ok(fs.lstatSync(pkg).isDirectory(), `${pkg} is a real directory`)
        assert.ok(fs.realpathSync(pkg).startsWith(inst.dir + path.sep), `${pkg} lives in the instance`)
        assert.ok(inst.plugins.includes('hijack-guard'))
      }
      await a.start()
      await a.waitForLog(/loading hijack-guard/)
      sink.clear()
      const r = await h.sendOne({
        port: a.port,
        user: 'alice@test.example',
        pass: 'pw',
        from: 'alice@test.example',
        to: ['bob@outside.example'],
        subject: 'with the plugin',
      })
      assert.strictEqual(r.code, 250, r.response)
      const [m] = await sink.waitFor(1, 10000)
      assert.strictEqual(m.subject, 'with the plugin')
      await a.destroy()
      await b.destroy()
    })
  })

  describe('redis-server helper', function () {
    it('starts, answers commands, stops and comes back on the same port', async function () {
      const redis = await h.startRedis()
      assert.strictEqual(await redis.command('PING'), 'PONG')
      assert.strictEqual(await redis.command('SET', 'k', 'v'), 'OK')
      assert.deepStrictEqual(await redis.keys('*'), ['k'])
      assert.strictEqual(await redis.flushall(), 'OK')
      assert.deepStrictEqual(await redis.keys('*'), [])

      const port = redis.port
      const pid1 = redis.pid
      await redis.stop()
      assert.strictEqual(redis.alive(), false)
      await assert.rejects(redis.command('PING'))
      await redis.start()
      assert.strictEqual(redis.port, port)
      assert.notStrictEqual(redis.pid, pid1)
      assert.strictEqual(await redis.command('PING'), 'PONG')
      await redis.restart()
      assert.strictEqual(await redis.command('PING'), 'PONG')
      await redis.stop()
    })
  })
})
