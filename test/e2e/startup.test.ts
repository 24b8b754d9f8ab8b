// Issue 8, items 4, 5 and 7 and the store-unavailable log flood, end to end: a real Haraka with
// the packed plugin, the CLI the package installs, a real Redis, real SMTP sessions on
// loopback. The tests that run Haraka as `nobody` (smtp.ini user/group) need root and are
// skipped otherwise. An internal exception under on_store_error = closed cannot be provoked
// from outside a real Haraka: test/plugin/store-failure.test.ts covers it at plugin level.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {
  createHaraka,
  dumpLogsIfFailed,
  escapeRegExp,
  openSession,
  packPlugin,
  sendOne,
  startRedis,
  startSink,
  stopAll,
  tryAuth,
  type HarakaInstance,
  type SendResult,
  type Sink,
} from '../../support'
import { describeCli, runCli, type CliResult } from '../../support/cli'
import { assert250, assert535, assert550, countMatches, pluginIni, preauthName } from './helpers'

const PW = 'pw'
const OUT = 'rcpt@outside.example'
const NOBODY = 65534
const asRoot = process.getuid?.() === 0
const STATE = 'hijack-guard.state.json'

/** Runs the CLI the package installed into the Haraka directory, as this process's user; asserts exit 0. */
async function hgOk(srv: HarakaInstance, args: readonly string[]): Promise<CliResult> {
  const r = await runCli(srv, args)
  assert.equal(r.code, 0, describeCli(r))
  return r
}

/** The state file's owner, group and mode. */
function ownerOf(file: string): { uid: number; gid: number; mode: number } {
  const s = fs.statSync(file)
  return { uid: s.uid, gid: s.gid, mode: s.mode & 0o777 }
}

/** The accounts disabled in a memory store's state file. */
function disabledInStateFile(file: string): string[] {
  const state: unknown = JSON.parse(fs.readFileSync(file, 'utf8'))
  const disabled: unknown =
    state !== null && typeof state === 'object' && 'disabled' in state ? state.disabled : undefined
  assert.ok(disabled !== null && typeof disabled === 'object', `no "disabled" object in ${file}`)
  return Object.keys(disabled).sort()
}

describe('e2e: startup checks, the CLI as root, hot reload and store-unavailable lines (issue 8, items 4, 5, 7)', function () {
  this.timeout(60000)

  let sink: Sink
  const started: HarakaInstance[] = []

  before(async function () {
    this.timeout(240000) // npm pack (build) + npm install, once per run
    await packPlugin()
    sink = await startSink()
  })

  after(async function () {
    for (const r of started.splice(0)) await r.destroy()
    await sink.stop()
    await stopAll()
  })

  afterEach(async function () {
    dumpLogsIfFailed(this)
    for (const r of started.splice(0).reverse()) await r.destroy()
  })

  /**
   * A Haraka instance (not started) with the preauth test plugin; `asNobody` drops privileges to
   * nobody/nogroup in smtp.ini, with the instance directory owned by nobody and every directory
   * above it traversable.
   */
  async function instance({
    users = {},
    ini,
    asNobody = false,
  }: {
    users?: Record<string, string>
    ini: string
    asNobody?: boolean
  }): Promise<HarakaInstance> {
    const srv = await createHaraka({ sink, users, pluginIni: ini, beforePlugins: ['test_preauth'] })
    started.push(srv)
    if (asNobody) {
      for (let d = path.dirname(srv.dir); d.startsWith(os.tmpdir()) && d !== os.tmpdir(); d = path.dirname(d)) {
        fs.chmodSync(d, fs.statSync(d).mode | 0o111)
      }
      fs.chownSync(srv.dir, NOBODY, NOBODY)
      const smtp = fs.readFileSync(path.join(srv.dir, 'config', 'smtp.ini'), 'utf8')
      assert.ok(smtp.includes('[main]\n'), `smtp.ini has no [main] section:\n${smtp}`)
      srv.writeConfig('smtp.ini', smtp.replace('[main]\n', '[main]\nuser=nobody\ngroup=nogroup\n'))
    }
    return srv
  }

  /** Starts `srv` expecting Haraka to refuse: resolves with its log once it has exited. */
  async function refusedStart(srv: HarakaInstance): Promise<string> {
    await assert.rejects(srv.start(), /haraka exited during startup/)
    assert.equal(srv.alive(), false)
    assert.notEqual(srv.exitCode, 0, 'a non-zero exit code')
    return srv.log()
  }

  /** Sends `max` messages from account (250), then one more (550 5.7.1 at DATA: now disabled). */
  async function trip(srv: HarakaInstance, account: string, max = 3): Promise<void> {
    const s = await openSession({ port: srv.port, user: account, pass: PW })
    for (let i = 1; i <= max; i++) {
      assert250(await s.send({ from: account, to: [OUT], subject: `trip ${account} ${i}` }), `${account} message ${i}`)
    }
    assert550(
      await s.send({ from: account, to: [OUT], subject: `trip ${account} over` }),
      'data',
      `${account} over the limit`,
    )
    await s.close()
  }

  /** MAIL FROM of `account` in a session logged in without AUTH (the AUTH gate would answer first). */
  async function mailFrom(srv: HarakaInstance, account: string): Promise<SendResult> {
    const s = await openSession({ port: srv.port, name: preauthName(account) })
    const r = await s.send({ from: account, to: [OUT], subject: `mail from ${account}` })
    await s.close()
    return r
  }

  // -------------------------------------------------------------------------------------------
  // item 4: a store that cannot open at startup

  it('store = memory with a state file that is not valid JSON: Haraka exits non-zero at startup and the log names the file; the file is left as it was', async function () {
    const srv = await instance({ ini: pluginIni(null, { store: 'memory' }) })
    const file = path.join(srv.dir, STATE)
    fs.writeFileSync(file, '{"version":1,"disabled":{"bob@test.example":')
    const log = await refusedStart(srv)
    assert.match(log, new RegExp(`\\[CRIT\\].*hijack-guard cannot start: .*${escapeRegExp(file)} is not valid JSON`))
    assert.match(log, /init_master returned error/)
    assert.equal(fs.readFileSync(file, 'utf8'), '{"version":1,"disabled":{"bob@test.example":')
  })

  describe('Haraka running as nobody (smtp.ini user = nobody, group = nogroup)', function () {
    before(function () {
      if (!asRoot) this.skip()
    })

    it('a state file that nobody cannot read (root, 0600): Haraka refuses to start, naming the file and what to do', async function () {
      const srv = await instance({ ini: pluginIni(null, { store: 'memory' }), asNobody: true })
      const file = path.join(srv.dir, STATE)
      fs.writeFileSync(file, '{"version":1,"disabled":{}}\n', { mode: 0o600 })
      const log = await refusedStart(srv)
      assert.match(log, new RegExp(`hijack-guard cannot start: cannot read ${escapeRegExp(file)}: EACCES`))
      assert.match(log, /uid 65534 .*chown that user .*state_file/)
    })

    it('a state file in a directory nobody cannot write: Haraka refuses to start, naming the file', async function () {
      const srv = await instance({
        ini: pluginIni(null, { store: 'memory', main: 'state_file = var/state.json' }),
        asNobody: true,
      })
      const dir = path.join(srv.dir, 'var')
      fs.mkdirSync(dir, { mode: 0o755 })
      fs.writeFileSync(path.join(dir, 'state.json'), '{"version":1,"disabled":{}}\n', { mode: 0o666 })
      fs.chmodSync(path.join(dir, 'state.json'), 0o666)
      const log = await refusedStart(srv)
      assert.match(
        log,
        new RegExp(
          `hijack-guard cannot start: the directory of ${escapeRegExp(path.join(dir, 'state.json'))} is not writable`,
        ),
      )
    })

    // item 5: the CLI run as root keeps the file usable for Haraka
    it("the CLI run as root disables bob in a running Haraka: the state file stays nobody's, bob is refused (MAIL FROM 550, AUTH 535) and Haraka still writes the file (carol trips)", async function () {
      const bob = 'bob@test.example'
      const carol = 'carol@test.example'
      const srv = await instance({
        users: { [bob]: PW, [carol]: PW },
        ini: pluginIni(null, { store: 'memory', limits: 'messages = 3/1m\nrecipients = 0' }),
        asNobody: true,
      })
      await srv.start()
      // Haraka answers 220 as soon as it listens; init_master runs just after.
      await srv.waitForLog(/AUTH of disabled accounts refused in/)
      const file = path.join(srv.dir, STATE)
      assert.deepEqual(
        ownerOf(file),
        { uid: NOBODY, gid: NOBODY, mode: 0o600 },
        'Haraka created the state file at startup, as nobody',
      )
      assert250(await mailFrom(srv, bob), 'bob before the disable')

      await hgOk(srv, ['disable', bob, '--reason', 'phished'])
      assert.deepEqual(ownerOf(file), { uid: NOBODY, gid: NOBODY, mode: 0o600 }, 'the CLI kept the owner and mode')
      assert.deepEqual(
        fs.readdirSync(srv.dir).filter((f) => f.startsWith(STATE)),
        [STATE],
        'no lock or temporary file left',
      )

      const refused = await mailFrom(srv, bob)
      assert550(refused, 'mail', 'bob at MAIL FROM after the CLI disable')
      assert.match(refused.response, /is disabled/)
      assert535(await tryAuth({ port: srv.port, user: bob, pass: PW }), 'bob at AUTH after the CLI disable')

      await trip(srv, carol)
      assert.deepEqual(disabledInStateFile(file), [bob, carol])
      assert.deepEqual(ownerOf(file), { uid: NOBODY, gid: NOBODY, mode: 0o600 })
      assert.doesNotMatch(srv.log(), /store unavailable|EACCES/)
      assert.ok(srv.alive())
    })

    it('the CLI run by a user who cannot give the state file back to its owner exits 4 naming the file, and changes nothing', async function () {
      const srv = await instance({ ini: pluginIni(null, { store: 'memory' }), asNobody: true })
      const file = path.join(srv.dir, STATE)
      const before = '{"version":1,"disabled":{}}\n'
      fs.writeFileSync(file, before, { mode: 0o644 })
      const r = await runCli(srv, ['disable', 'bob@test.example'], { uid: NOBODY, gid: NOBODY })
      assert.equal(r.code, 4, describeCli(r))
      assert.match(
        r.stderr,
        new RegExp(`cannot keep the owner of ${escapeRegExp(file)} \\(uid 0, gid 0\\).*nothing was changed`),
      )
      assert.equal(fs.readFileSync(file, 'utf8'), before)
      assert.deepEqual(ownerOf(file), { uid: 0, gid: 0, mode: 0o644 })
      assert.deepEqual(
        fs.readdirSync(srv.dir).filter((f) => f.startsWith(STATE)),
        [STATE],
        'no lock or temporary file left',
      )
    })
  })

  // -------------------------------------------------------------------------------------------
  // item 7: a hot reload to a store that cannot open

  it('a hot reload to a state_file that is not valid JSON: Haraka keeps running with the old store and config, logs ERROR, and enforcement is unchanged', async function () {
    const bob = 'bob@test.example'
    const carol = 'carol@test.example'
    const srv = await instance({
      users: { [bob]: PW, [carol]: PW },
      ini: pluginIni(null, { store: 'memory', limits: 'messages = 3/1m\nrecipients = 0' }),
    })
    await srv.start()
    await hgOk(srv, ['disable', bob])
    assert535(await tryAuth({ port: srv.port, user: bob, pass: PW }), 'bob before the reload')

    const bad = path.join(srv.dir, 'bad.json')
    fs.writeFileSync(bad, 'not JSON at all')
    const mark = srv.logMark()
    srv.writeConfig(
      'hijack-guard.ini',
      pluginIni(null, { store: 'memory', main: 'state_file = bad.json', limits: 'messages = 50/1m\nrecipients = 0' }),
    )
    await srv.waitForLog(
      new RegExp(
        `\\[ERROR\\].*reload failed, keeping the previous configuration and store: .*${escapeRegExp(bad)} is not valid JSON`,
      ),
      { since: mark, timeoutMs: 20000 },
    )
    assert.ok(srv.alive(), 'Haraka is still running')
    assert.doesNotMatch(srv.log().slice(mark), /reloaded: /)

    assert535(await tryAuth({ port: srv.port, user: bob, pass: PW }), 'bob after the failed reload')
    assert550(await mailFrom(srv, bob), 'mail', 'bob at MAIL FROM after the failed reload')
    await trip(srv, carol) // the old limit (3/1m), counted in the old store
    assert.deepEqual(disabledInStateFile(path.join(srv.dir, STATE)), [bob, carol])
    assert.equal(fs.readFileSync(bad, 'utf8'), 'not JSON at all')
    assert.ok(srv.alive())
  })

  // -------------------------------------------------------------------------------------------
  // smaller leak: "store unavailable" lines

  it('Redis down, on_store_error = open, 50 messages in 5 sessions: all relayed, at most two "store unavailable" ERROR lines', async function () {
    const fast = 'fast@test.example'
    const redis = await startRedis()
    const ini = pluginIni(redis.port, {
      main: 'on_store_error = open\nstore_timeout = 1s',
      limits: 'messages = 500/1m\nrecipients = 0',
    })
    const srv = await instance({ users: { [fast]: PW }, ini })
    try {
      await srv.start()
      assert250(
        await sendOne({ port: srv.port, user: fast, pass: PW, from: fast, to: [OUT], subject: 'flood up' }),
        'Redis up',
      )
      await redis.stop()
      const mark = srv.logMark()
      for (let session = 0; session < 5; session++) {
        const s = await openSession({ port: srv.port, user: fast, pass: PW })
        for (let i = 0; i < 10; i++) {
          assert250(
            await s.send({ from: fast, to: [OUT], subject: `flood down ${session}.${i}` }),
            `message ${session}.${i}`,
          )
        }
        await s.close()
      }
      const log = srv.log().slice(mark)
      const lines = countMatches(log, /\[ERROR\].*store unavailable/)
      assert.ok(
        lines >= 1 && lines <= 2,
        `${lines} "store unavailable" ERROR lines:\n${log
          .split('\n')
          .filter((l) => /store unavailable/.test(l))
          .slice(0, 10)
          .join('\n')}`,
      )
      assert.doesNotMatch(log, /Unhandled|unhandledRejection|Caught exception/)
      assert.ok(srv.alive())
    } finally {
      await redis.stop()
    }
  })
})
