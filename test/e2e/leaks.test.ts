// End-to-end: issue 8's smaller leaks, with the real parts (a Haraka 3.3.4 process with the
// packed plugin, redis-server, an SMTP client over loopback, a loopback sink). See
// test/e2e/README.md.
//
// - AUTH of a disabled account answers the same whatever the password (no oracle);
// - a manual (CLI) disable says "by the postmaster", not "after unusual sending";
// - reactivation tokens are never in clear in Redis nor in the plugin's log lines, and the
//   clear token of the alert still re-enables;
// - monitor mode's report carries the stored evidence.

import assert from 'node:assert/strict'
import * as childProcess from 'node:child_process'
import * as os from 'node:os'
import * as path from 'node:path'
import {
  createHaraka,
  dumpLogsIfFailed,
  openSession,
  packPlugin,
  sendOne,
  startRedis,
  startSink,
  stopAll,
  tryAuth,
  type HarakaInstance,
  type HarakaOptions,
  type RedisServer,
  type Sink,
  type SinkMessage,
} from '../../support'
import {
  alertPrefix,
  assert250,
  assert535,
  assert550,
  countMatches,
  disabledKey,
  pluginIni,
  preauthName,
  reenabledSubject,
  replyRaw,
  sendAndSettle,
  waitSubjects,
} from './helpers'

const PW = 'pw'
const ADMIN = 'postmaster@test.example' // a login listed in [alert] to (so an admin)
const OUT = 'bob@outside.example'

interface CliResult {
  /** The exit code; null when it was killed or could not start. */
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** The CLI the package installed into the Haraka directory, run with a bound; never rejects. */
function cli(srv: HarakaInstance, args: readonly string[]): Promise<CliResult> {
  const bin = path.join(srv.dir, 'node_modules', '.bin', 'hijack-guard')
  const env = { ...process.env }
  delete env.HARAKA
  return new Promise((resolve) => {
    childProcess.execFile(
      bin,
      ['-c', srv.dir, ...args],
      { cwd: srv.dir, env, timeout: 20000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0
        resolve({ code, stdout, stderr })
      },
    )
  })
}

/** Sends one message of `user` per subject (one session); asserts each answer is 250. */
async function sendMany(srv: HarakaInstance, user: string, subjects: readonly string[]): Promise<void> {
  const s = await openSession({ port: srv.port, user, pass: PW })
  for (const subject of subjects) assert250(await s.send({ from: user, to: [OUT], subject }), subject)
  await s.close()
}

/** Every Redis key name and value, whatever its type, as one text. */
async function redisDump(redis: RedisServer): Promise<string> {
  const out: string[] = []
  for (const key of await redis.keys('*')) {
    out.push(key)
    const type = String(await redis.command(['TYPE', key]))
    if (type === 'string') out.push(String(await redis.command(['GET', key])))
    else if (type === 'hash') out.push(JSON.stringify(await redis.command(['HGETALL', key])))
    else if (type === 'list') out.push(JSON.stringify(await redis.command(['LRANGE', key, 0, -1])))
    else if (type === 'set') out.push(JSON.stringify(await redis.command(['SMEMBERS', key])))
    else out.push(`<${type}>`)
  }
  return out.join('\n')
}

/** The one value of a header of a sink message. */
function headerOf(message: SinkMessage, name: string): string {
  const value = message.headers[name]
  assert.ok(typeof value === 'string', `one ${name} header: ${JSON.stringify(value)}`)
  return value
}

describe('e2e: smaller leaks (issue 8)', function () {
  this.timeout(90000)

  let sink: Sink
  let redis: RedisServer
  const started: HarakaInstance[] = []

  /** A Haraka instance with the admin's login and test_preauth before the auth plugin, started. */
  async function haraka(opts: HarakaOptions): Promise<HarakaInstance> {
    const inst = await createHaraka({
      sink,
      ...opts,
      users: { [ADMIN]: PW, ...opts.users },
      beforePlugins: ['test_preauth'],
    })
    started.push(inst)
    await inst.start()
    return inst
  }

  before(async function () {
    this.timeout(240000) // npm pack (build) + npm install, once per run
    await packPlugin()
    sink = await startSink()
    redis = await startRedis()
  })

  after(async function () {
    await stopAll()
  })

  beforeEach(async function () {
    sink.clear()
    await redis.flushall()
  })

  afterEach(async function () {
    dumpLogsIfFailed(this)
    for (const r of started.splice(0).reverse()) await r.destroy()
  })

  it('AUTH of a disabled account: the right and a wrong password get the identical 535 5.7.8 "is disabled" answer', async function () {
    const alice = 'alice@test.example'
    const srv = await haraka({
      users: { [alice]: PW },
      pluginIni: pluginIni(redis.port, { limits: 'messages = 1/1m\nrecipients = 0' }),
    })
    await sendMany(srv, alice, ['o1 1'])
    const over = await sendOne({ port: srv.port, user: alice, pass: PW, from: alice, to: [OUT], subject: 'o1 over' })
    assert550(over, 'data', 'over the limit')
    // side by side: Haraka delays each failed AUTH by a second
    const [right, wrong] = await Promise.all([
      tryAuth({ port: srv.port, user: alice, pass: PW }),
      tryAuth({ port: srv.port, user: alice, pass: 'not-the-password' }),
    ])
    assert535(right, 'right password', { text: /is disabled after unusual sending; contact / })
    assert535(wrong, 'wrong password', { text: /is disabled after unusual sending; contact / })
    assert.equal(wrong.response, right.response)
    // the log says the password was not looked at
    assert.equal(
      countMatches(srv.log(), /refusing AUTH of disabled account "alice@test\.example" \(password not checked\)/),
      2,
    )
    // an enabled account's wrong password still gets the auth plugin's own answer
    const other = await tryAuth({ port: srv.port, user: ADMIN, pass: 'not-the-password' })
    assert.equal(other.code, 535)
    assert.doesNotMatch(other.response, /disabled/)
  })

  it('a CLI disable says "disabled by the postmaster" at AUTH and MAIL FROM, not "after unusual sending"', async function () {
    const carol = 'carol@test.example'
    const srv = await haraka({ users: { [carol]: PW }, pluginIni: pluginIni(redis.port) })
    const r = await cli(srv, ['disable', carol, '--reason', 'laptop stolen'])
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`)
    assert.equal(await redis.command(['HGET', disabledKey(carol), 'by']), `cli:${os.userInfo().username}`)
    const auth = await tryAuth({ port: srv.port, user: carol, pass: PW })
    assert535(auth, 'AUTH', { text: /Account carol@test\.example is disabled by the postmaster; contact / })
    assert.doesNotMatch(auth.response, /unusual sending|laptop/)
    // MAIL FROM of a session that logged in another way (the gate every auth path meets)
    const fresh = await openSession({ port: srv.port, name: preauthName(carol) })
    const mail = await fresh.send({ from: carol, to: [OUT], subject: 'o2' })
    await fresh.close()
    assert550(mail, 'mail', 'MAIL FROM')
    assert.match(mail.response, /Account carol@test\.example is disabled by the postmaster; contact /)
    assert.doesNotMatch(mail.response, /unusual sending|laptop/)
  })

  it("keeps the reactivation token out of Redis and out of the plugin's log; the clear token of the alert still re-enables", async function () {
    const dave = 'dave@test.example'
    const srv = await haraka({
      users: { [dave]: PW },
      pluginIni: pluginIni(redis.port, { limits: 'messages = 1/1m\nrecipients = 0' }),
    })
    await sendMany(srv, dave, ['o3 1'])
    assert550(
      await sendOne({ port: srv.port, user: dave, pass: PW, from: dave, to: [OUT], subject: 'o3 over' }),
      'data',
      'over',
    )
    const [alert] = await waitSubjects(sink, alertPrefix(dave), 1)
    assert.ok(alert)
    const replyTo = headerOf(alert, 'reply-to')
    const token = /^hijack-guard\+hg-([0-9a-f]{32})@/.exec(replyTo)?.[1]
    assert.ok(token, `a token in Reply-To: ${replyTo}`)
    const dump = await redisDump(redis)
    assert.ok(dump.includes('hijack-guard:token-sha256:'), dump)
    assert.ok(!dump.toLowerCase().includes(token), `the token is in clear in Redis:\n${dump}`)

    const reply = await sendAndSettle(srv, {
      user: ADMIN,
      pass: PW,
      from: ADMIN,
      to: [replyTo],
      raw: replyRaw({ from: ADMIN, to: replyTo, alert }),
    })
    assert.equal(reply.code, 250, JSON.stringify(reply))
    await waitSubjects(sink, reenabledSubject(dave), 1)
    assert.equal(await redis.command(['EXISTS', disabledKey(dave)]), 0, 're-enabled')
    assert.ok(!(await redisDump(redis)).toLowerCase().includes(token))

    // The plugin's own log lines never carry the token; Haraka's own lines at INFO do (the
    // hook result line of the accepted RCPT: see docs/security.md).
    const lines = srv
      .log()
      .split('\n')
      .filter((l) => l.toLowerCase().includes(token))
    const plugins = lines.filter((l) => /\[hijack-guard\]/.test(l) && !/ hook=\w+ plugin=hijack-guard /.test(l))
    // Haraka's own: the rcpt hook's result (INFO) and the recipient line (NOTICE), both the RCPT
    const core = lines.filter((l) => !plugins.includes(l))
    assert.deepEqual(plugins, [], 'log lines of the plugin with the token')
    assert.ok(
      core.every((l) => /hook=rcpt plugin=hijack-guard |\[core\] recipient <hijack-guard\+hg-/.test(l)),
      core.join('\n'),
    )
  })

  it('monitor mode mails one report that carries the stored evidence of the earlier messages', async function () {
    const erin = 'erin@test.example'
    const srv = await haraka({
      users: { [erin]: PW },
      pluginIni: pluginIni(redis.port, { main: 'mode = monitor', limits: 'messages = 2/1m\nrecipients = 0' }),
    })
    await sendMany(srv, erin, ['o4 first', 'o4 second', 'o4 third', 'o4 fourth'])
    const [report] = await waitSubjects(sink, `Monitor: account ${erin} `, 1)
    assert.ok(report)
    assert.match(report.body, /Evidence from its last 3 messages:/)
    for (const subject of ['o4 first', 'o4 second', 'o4 third']) {
      assert.ok(report.body.includes(JSON.stringify(subject)), `${subject} in\n${report.body}`)
    }
    await waitSubjects(sink, 'o4 ', 4)
    assert.equal(
      sink.messages.filter((m) => m.subject?.startsWith(`Monitor: account ${erin} `)).length,
      1,
      'one report per window',
    )
    assert.equal(await redis.command(['EXISTS', disabledKey(erin)]), 0, 'monitor mode never disables')
  })
})
