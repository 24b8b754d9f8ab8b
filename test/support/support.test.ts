// Proves the test-support layer (support/) on real parts: waits and temp dirs, a real
// redis-server driven through node-redis, Haraka instances with and without the packed plugin,
// the loopback sink and the SMTP client, and fakeStore.

import * as assert from 'node:assert/strict'
import * as childProcess from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  HOST,
  NotStubbedError,
  SmtpFailure,
  createHaraka,
  dumpLogsIfFailed,
  escapeRegExp,
  fakeStore,
  freePort,
  killPid,
  openSession,
  packPlugin,
  sendOne,
  startRedis,
  startSink,
  stopAll,
  tempRoot,
  tmpDir,
  tryAuth,
  waitUntil,
  type HarakaInstance,
  type RedisServer,
  type Sink,
} from '../../support'
import { callHook, makeGuard, replyText } from '../../support/plugin'
import * as fixtures from 'haraka-test-fixtures'
import { DENY, DENYDISCONNECT } from '../../lib/haraka'
import type { DisabledRecord } from '../../lib/store'

describe('test support', function () {
  this.timeout(30_000)

  let sink: Sink

  before(async function () {
    sink = await startSink()
  })

  after(async function () {
    await stopAll()
  })

  afterEach(function () {
    dumpLogsIfFailed(this)
  })

  describe('process', function () {
    it('waitUntil resolves the first truthy value', async function () {
      let n = 0
      assert.equal(await waitUntil(() => ++n >= 3 && n, { intervalMs: 1 }), 3)
    })

    it('waitUntil rejects after its bound, naming what it waited for', async function () {
      const t0 = Date.now()
      await assert.rejects(
        waitUntil(() => false, { timeoutMs: 100, message: () => 'the moon' }),
        /timed out after 100 ms: the moon/,
      )
      assert.ok(Date.now() - t0 >= 100)
    })

    it('waitUntil rejects at once with what the condition throws', async function () {
      await assert.rejects(
        waitUntil(() => {
          throw new Error('broken')
        }),
        /broken/,
      )
    })

    it('waitUntil with ignoreErrors keeps polling through errors and names the last one', async function () {
      let n = 0
      const fails = (): number => {
        if (++n < 3) throw new Error(`attempt ${n}`)
        return n
      }
      assert.equal(await waitUntil(fails, { intervalMs: 1, ignoreErrors: true }), 3)
      const never = (): boolean => {
        throw new Error('still down')
      }
      await assert.rejects(waitUntil(never, { timeoutMs: 50, ignoreErrors: true }), /\(last error: still down\)/)
    })

    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      it(`on ${signal}, kills what it started and removes the temporary root`, async function () {
        // a separate process that starts a redis-server and makes a temp dir, then waits
        const script = [
          `const s = require(${JSON.stringify(path.resolve(__dirname, '../../support'))})`,
          's.startRedis().then((r) => { s.tmpDir("x"); console.log(JSON.stringify({ root: s.tempRoot(), pid: r.pid })) })',
          'setInterval(() => {}, 1000)',
        ].join('\n')
        const child = childProcess.spawn(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
          cwd: path.resolve(__dirname, '../..'),
          stdio: ['ignore', 'pipe', 'inherit'],
        })
        let out = ''
        child.stdout.on('data', (d: Buffer) => (out += d.toString()))
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
        try {
          const line = await waitUntil(() => out.split('\n').find((l) => l.startsWith('{')), {
            timeoutMs: 15_000,
            message: 'the child started',
          })
          const { root, pid } = JSON.parse(line) as { root: string; pid: number }
          assert.ok(fs.existsSync(root))
          assert.ok(killPid(pid, 0), 'redis-server runs')
          child.kill(signal)
          assert.equal(await exited, signal === 'SIGTERM' ? 143 : 130)
          assert.equal(fs.existsSync(root), false, `${root} is removed`)
          await waitUntil(() => !killPid(pid, 0), { timeoutMs: 2000, message: `redis-server ${pid} is gone` })
        } finally {
          child.kill('SIGKILL')
        }
      })
    }

    it('freePort answers a loopback port nobody listens on', async function () {
      const port = await freePort()
      assert.ok(port > 0 && port < 65536)
      const r = await sendOne({ port, from: 'a@test.example', to: 'b@test.example', timeoutMs: 1000 })
      assert.equal(r.stage, 'connect')
      assert.equal(r.code, null)
    })

    it('tmpDir makes directories under one root', function () {
      const a = tmpDir('x')
      const b = tmpDir('x')
      assert.notEqual(a, b)
      const root = tempRoot()
      assert.ok(root)
      for (const d of [a, b]) {
        assert.equal(path.dirname(d), root)
        assert.ok(fs.statSync(d).isDirectory())
      }
    })
  })

  describe('redis', function () {
    let redis: RedisServer

    before(async function () {
      redis = await startRedis({ args: ['--maxmemory', '16mb'] })
    })

    after(async function () {
      await redis.stop()
    })

    it('starts redis-server on loopback with the extra arguments and no persistence', async function () {
      const client = await redis.client()
      assert.equal(redis.url, `redis://${HOST}:${redis.port}`)
      const config = async (name: string): Promise<string | undefined> => (await client.configGet(name))[name]
      assert.equal(await config('maxmemory'), String(16 * 1024 * 1024))
      assert.equal(await config('save'), '')
      assert.equal(await config('appendonly'), 'no')
      assert.equal(await config('bind'), HOST)
    })

    it('answers SET/GET through node-redis and raw commands through command()', async function () {
      const client = await redis.client()
      assert.equal(await client.set('k', 'v'), 'OK')
      assert.equal(await client.get('k'), 'v')
      await client.hSet('h', { a: '1', b: '2' })
      assert.deepEqual({ ...((await redis.command(['HGETALL', 'h'])) as object) }, { a: '1', b: '2' })
      assert.equal(await redis.command(['EXISTS', 'k']), 1)
      assert.deepEqual(await redis.keys(), ['h', 'k'])
      await redis.flushall()
      assert.deepEqual(await redis.keys(), [])
    })

    it('stops, comes back on the same port with a new pid, and restarts', async function () {
      await (await redis.client()).set('gone', '1')
      const { port } = redis
      const pid = redis.pid
      await redis.stop()
      assert.equal(redis.alive(), false)
      assert.equal(redis.pid, null)
      await assert.rejects(redis.command(['PING']))
      await redis.start()
      assert.equal(redis.port, port)
      assert.notEqual(redis.pid, pid)
      assert.equal(await redis.command(['PING']), 'PONG')
      assert.equal(await (await redis.client()).get('gone'), null, 'nothing was saved')
      await redis.restart()
      assert.equal(redis.port, port)
      assert.equal(await (await redis.client()).ping(), 'PONG')
    })

    it('pauses (no answer within the bound) and resumes', async function () {
      redis.pause()
      try {
        await assert.rejects(redis.command(['PING'], { timeoutMs: 300 }), /no reply within 300 ms/)
      } finally {
        redis.resume()
      }
      assert.equal(await redis.command(['PING']), 'PONG')
    })

    it('stops a paused server', async function () {
      const other = await startRedis()
      other.pause()
      await other.stop()
      assert.equal(other.alive(), false)
    })
  })

  describe('fakeStore', function () {
    it('rejects every member that is not stubbed, naming it', async function () {
      const store = fakeStore()
      assert.equal(store.kind, 'memory')
      await assert.rejects(
        store.getDisabled('alice'),
        (err: unknown) => err instanceof NotStubbedError && err.member === 'getDisabled',
      )
      await assert.rejects(store.close(), /fakeStore: close is not stubbed/)
    })

    it('uses the overrides', async function () {
      const store = fakeStore({ kind: 'redis', getDisabled: async () => null })
      assert.equal(store.kind, 'redis')
      assert.equal(await store.getDisabled('alice'), null)
      await assert.rejects(store.heldCount('alice'), NotStubbedError)
    })
  })

  describe('plugin fixtures (the compiled plugin through haraka-test-fixtures)', function () {
    const connectionFor = (login: string) => {
      const c = fixtures.makeConnection({
        ip: '192.0.2.7',
        helo: 'client.example',
        relaying: true,
        notes: { auth_user: login },
        mailFrom: login,
        rcptTo: ['bob@example.net'],
        silent: true,
      })
      c.transaction?.add_header('Subject', 'hello')
      return c
    }
    const mail = (plugin: Parameters<typeof callHook>[0], c: fixtures.FixtureConnection) =>
      callHook(plugin, 'hook_mail', c, [c.transaction?.mail_from, {}])

    it('counts with the compiled memory store and refuses over the limit, alerting through the mail seam', async function () {
      const { plugin, dir, sent } = makeGuard('[limits]\nmessages=1/1m\n[alert]\nto=postmaster@example.com\n')
      assert.equal(path.dirname(dir), tempRoot())
      assert.equal((await callHook(plugin, 'count_message', connectionFor('alice@example.com'))).rc, undefined)
      const over = await callHook(plugin, 'count_message', connectionFor('alice@example.com'))
      assert.equal(over.rc, DENY)
      assert.match(replyText(over.msg), /^550 5\.7\.1 Account alice@example\.com reached its limit/)
      const [alert] = await waitUntil(() => sent.length > 0 && sent, { message: 'the alert through the mail seam' })
      assert.deepEqual(alert?.to, ['postmaster@example.com'])
    })

    it('takes a fakeStore at the store seam', async function () {
      const record: DisabledRecord = {
        account: 'alice@example.com',
        reason: 'limit',
        by: 'limit',
        at: Date.now(),
        incident: 'i1',
        counts: [],
        evidence: [],
      }
      const { plugin } = makeGuard('[limits]\nmessages=1/1m\n', {
        store: fakeStore({ getDisabled: async () => record }),
      })
      const m = await mail(plugin, connectionFor('alice@example.com'))
      assert.equal(m.rc, DENYDISCONNECT)
      assert.match(replyText(m.msg), /^550 5\.7\.1 Account alice@example\.com is disabled/)
    })

    it('sees an unstubbed store call fail as a store failure, not a crash', async function () {
      const { plugin } = makeGuard('[limits]\nmessages=1/1m\n', { store: fakeStore() })
      const c = connectionFor('alice@example.com')
      const m = await mail(plugin, c)
      assert.equal(m.rc, undefined, 'on_store_error = open: MAIL FROM goes on')
      // A store failure is recorded as a msg result (an err result would log at ERROR each time).
      assert.match(
        fixtures.getResult(c, plugin).msg.join('\n'),
        /store unavailable at MAIL FROM .*getDisabled is not stubbed/,
      )
    })
  })

  describe('Haraka without the plugin: auth/flat_file', function () {
    let haraka: HarakaInstance
    const alice = { user: 'alice@test.example', pass: 'alice-pw' }

    before(async function () {
      haraka = await createHaraka({
        plugin: false,
        sink,
        users: { [alice.user]: alice.pass },
        extraPlugins: ['test_deny_mail'],
      })
      await haraka.start()
    })

    after(async function () {
      await haraka.destroy()
      assert.equal(fs.existsSync(haraka.dir), false)
    })

    beforeEach(function () {
      sink.clear()
    })

    it('relays an authenticated message to two outside domains and both reach the sink', async function () {
      const r = await sendOne({
        port: haraka.port,
        ...alice,
        from: alice.user,
        to: ['bob@outside.example', 'carol@elsewhere.example'],
        subject: 'support relay check',
        body: 'hello from support',
      })
      assert.equal(r.stage, 'ok', r.response)
      assert.equal(r.code, 250)
      assert.match(r.response, /Message Queued/)
      const messages = await sink.waitFor(2, 10_000)
      for (const rcpt of ['bob@outside.example', 'carol@elsewhere.example']) {
        const m = messages.find((x) => x.to.join(',') === rcpt)
        assert.ok(m, `no delivery for ${rcpt}`)
        assert.equal(m.from, alice.user)
        assert.equal(m.subject, 'support relay check')
        assert.match(m.body, /hello from support/)
        assert.equal(m.helo, 'mx.test.example')
      }
      assert.ok(haraka.alive())
    })

    it('keeps one session open for several messages', async function () {
      const s = await openSession({ port: haraka.port, ...alice })
      assert.equal(s.auth?.code, 235)
      for (let i = 0; i < 3; i++) {
        const r = await s.send({ from: alice.user, to: 'bob@outside.example', subject: `multi ${i}` })
        assert.equal(r.stage, 'ok', r.response)
        assert.equal(r.code, 250)
      }
      await s.close()
      const messages = await sink.waitFor(3, 10_000)
      assert.deepEqual(messages.map((m) => m.subject).sort(), ['multi 0', 'multi 1', 'multi 2'])
    })

    it('answers 535 to a wrong password, in tryAuth, sendOne and openSession', async function () {
      // Haraka waits 1 s before a 535: run the three side by side
      const wrong = { port: haraka.port, user: alice.user, pass: 'wrong' }
      const [a, r] = await Promise.all([
        tryAuth(wrong),
        sendOne({ ...wrong, from: alice.user, to: 'bob@outside.example' }),
        assert.rejects(
          openSession(wrong),
          (err: unknown) => err instanceof SmtpFailure && err.code === 535 && err.stage === 'auth',
        ),
      ])
      assert.equal(a.stage, 'auth')
      assert.equal(a.code, 535, a.response)
      assert.match(a.response, /^535 5\.7\.8 /)
      assert.equal(r.stage, 'auth')
      assert.equal(r.code, 535)
      assert.equal(sink.messages.length, 0)
    })

    it('reports 550 at MAIL FROM followed by a hang-up as stage mail, also inside a session', async function () {
      const mark = haraka.logMark()
      const r = await sendOne({ port: haraka.port, ...alice, from: 'hangup@test.example', to: 'bob@outside.example' })
      assert.equal(r.stage, 'mail', JSON.stringify(r))
      assert.equal(r.code, 550)
      assert.match(r.response, /go away/)
      await haraka.waitForLog(/disconnect ip=127\.0\.0\.1 .*relay=Y/, { since: mark })

      const s = await openSession({ port: haraka.port, ...alice })
      const r1 = await s.send({ from: 'hangup@test.example', to: 'bob@outside.example' })
      assert.equal(r1.stage, 'mail')
      assert.equal(r1.code, 550)
      await waitUntil(() => s.closed, { timeoutMs: 2000, message: 'the server hung up' })
      const r2 = await s.send({ from: alice.user, to: 'bob@outside.example' })
      assert.equal(r2.code, null)
      await s.close()
    })

    it('reports a refused recipient at stage rcpt', async function () {
      const r = await sendOne({ port: haraka.port, from: 'x@outside.example', to: 'bob@outside.example' })
      assert.equal(r.stage, 'rcpt', JSON.stringify(r))
      assert.equal(r.code, 550)
    })

    it('delivers inbound mail for a local domain to the sink', async function () {
      const r = await sendOne({
        port: haraka.port,
        from: 'x@outside.example',
        to: 'postmaster@test.example',
        subject: 'inbound',
      })
      assert.equal(r.stage, 'ok', r.response)
      const [m] = await sink.waitFor(1, 10_000)
      assert.deepEqual(m?.to, ['postmaster@test.example'])
      assert.equal(m?.subject, 'inbound')
    })

    it('makes Haraka retry while the sink refuses, and delivers once it accepts', async function () {
      // Haraka's smallest retry interval is 5 s
      const outbound = '[main]\nenable_tls=false\nlocal_mx_ok=true\ninet_prefer=v4\ntemp_fail_intervals=5s*6\n'
      const retrying = await createHaraka({
        plugin: false,
        sink,
        users: { [alice.user]: alice.pass },
        config: { 'outbound.ini': outbound },
      })
      await retrying.start()
      sink.refuse(451)
      try {
        const r = await sendOne({
          port: retrying.port,
          ...alice,
          from: alice.user,
          to: 'bob@outside.example',
          subject: 'later',
        })
        assert.equal(r.code, 250, r.response)
        await waitUntil(() => sink.refused >= 1, { timeoutMs: 10_000, message: 'a refused MAIL FROM' })
        assert.equal(sink.messages.length, 0)
      } finally {
        sink.accept()
      }
      const [m] = await sink.waitFor(1, 15_000)
      assert.equal(m?.subject, 'later', JSON.stringify(m?.headers))
      await retrying.destroy()
    })

    it('restarts on the same port and waits for log lines', async function () {
      const mark = haraka.logMark()
      const pid = haraka.pid
      await haraka.restart()
      assert.notEqual(haraka.pid, pid)
      await haraka.waitForLog(/Listening on 127\.0\.0\.1:\d+/, { since: mark })
      const r = await sendOne({
        port: haraka.port,
        ...alice,
        from: alice.user,
        to: 'bob@outside.example',
        subject: 'after restart',
      })
      assert.equal(r.code, 250, r.response)
      const [m] = await sink.waitFor(1, 10_000)
      assert.equal(m?.subject, 'after restart')
    })

    it('waitForLog rejects at its bound with the count it saw', async function () {
      await assert.rejects(haraka.waitForLog(/no such line ever/, { timeoutMs: 100 }), /saw 0/)
    })
  })

  describe('Haraka without the plugin: test_auth_any', function () {
    let haraka: HarakaInstance

    before(async function () {
      haraka = await createHaraka({ plugin: false, sink, auth: 'any' })
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
      const a = await tryAuth({ port: haraka.port, user, pass: 'secret' })
      assert.equal(a.code, 235, a.response)
      const r = await sendOne({
        port: haraka.port,
        user,
        pass: 'secret',
        from: 'weird@test.example',
        to: 'bob@outside.example',
        subject: 'weird login',
      })
      assert.equal(r.stage, 'ok', r.response)
      assert.equal(r.code, 250)
      const [m] = await sink.waitFor(1, 10_000)
      assert.equal(m?.from, 'weird@test.example')
      assert.deepEqual(m?.to, ['bob@outside.example'])
      assert.equal(m?.subject, 'weird login')
      // the login reached Haraka byte for byte (test_auth_any logs it as JSON)
      await haraka.waitForLog(new RegExp(`login=${escapeRegExp(JSON.stringify(user))}`), { count: 2 })
    })

    it('accepts AUTH LOGIN too', async function () {
      const [a, b] = await Promise.all([
        tryAuth({ port: haraka.port, user: 'someone', pass: 'secret', method: 'LOGIN' }),
        tryAuth({ port: haraka.port, user: 'someone', pass: 'nope', method: 'LOGIN' }),
      ])
      assert.equal(a.code, 235, a.response)
      assert.equal(b.code, 535, b.response)
    })
  })

  describe('Haraka with the packed plugin', function () {
    let redis: RedisServer
    let haraka: HarakaInstance
    const alice = { user: 'alice@test.example', pass: 'alice-pw' }

    before(async function () {
      this.timeout(240_000) // npm pack (build) + npm install, once per run
      redis = await startRedis()
      const pluginIni = `[main]\nstore=redis\n[redis]\nport=${redis.port}\n[limits]\nmessages=20/1m\n[alert]\nto=postmaster@test.example\n`
      haraka = await createHaraka({ sink, users: { [alice.user]: alice.pass }, pluginIni })
      await haraka.start()
    })

    after(async function () {
      await haraka.destroy()
      await redis.stop()
    })

    it('installs the tarball into the instance, once per run', async function () {
      const tarball = await packPlugin()
      assert.match(path.basename(tarball), /^haraka-plugin-hijack-guard-.*\.tgz$/)
      assert.equal(await packPlugin(), tarball)
      const pkg = path.join(haraka.dir, 'node_modules', 'haraka-plugin-hijack-guard')
      assert.ok(fs.lstatSync(pkg).isDirectory(), `${pkg} is a real directory`)
      assert.ok(fs.realpathSync(pkg).startsWith(haraka.dir + path.sep), `${pkg} lives in the instance`)
      assert.deepEqual(haraka.plugins, [
        'test_loopback',
        'auth/flat_file',
        'hijack-guard',
        'rcpt_to.in_host_list',
        'queue/smtp_forward',
      ])
      await haraka.waitForLog(/loading hijack-guard/)
    })

    it('gives every instance its own copy of the installed plugin', async function () {
      const other = await createHaraka({
        sink,
        pluginIni: '[main]\nstore=memory\n[alert]\nto=postmaster@test.example\n',
      })
      try {
        assert.notEqual(other.dir, haraka.dir)
        const pkg = path.join(other.dir, 'node_modules', 'haraka-plugin-hijack-guard')
        assert.ok(fs.lstatSync(pkg).isDirectory(), `${pkg} is a real directory`)
        assert.ok(fs.realpathSync(pkg).startsWith(other.dir + path.sep), `${pkg} lives in the instance`)
        assert.ok(other.plugins.includes('hijack-guard'))
      } finally {
        await other.destroy()
      }
    })

    it('relays a message sent with AUTH to the sink and counts it in Redis', async function () {
      sink.clear()
      const r = await sendOne({
        port: haraka.port,
        ...alice,
        from: alice.user,
        to: 'bob@outside.example',
        subject: 'with the plugin',
      })
      assert.equal(r.stage, 'ok', r.response)
      assert.equal(r.code, 250)
      const [m] = await sink.waitFor(1, 10_000)
      assert.equal(m?.subject, 'with the plugin')
      assert.equal(m?.from, alice.user)
      const keys = await redis.keys('hijack-guard:*')
      assert.ok(keys.includes('hijack-guard:{alice@test.example}:counts'), JSON.stringify(keys))
    })

    it('answers 535 to a wrong password', async function () {
      const a = await tryAuth({ port: haraka.port, user: alice.user, pass: 'wrong' })
      assert.equal(a.stage, 'auth')
      assert.equal(a.code, 535, a.response)
      assert.match(a.response, /^535 5\.7\.8 /)
    })
  })
})
