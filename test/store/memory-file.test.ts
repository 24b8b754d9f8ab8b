// The memory store's state file as the operating system sees it: the lock never blocks the
// event loop, held-mail marks do not rewrite the file per message, the file keeps its owner and
// mode whoever writes it, and the startup check names the file and what to do.

import * as assert from 'node:assert/strict'
import * as childProcess from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import { StoreError } from '../../lib/store'
import { checkStateFile, createMemoryStore } from '../../lib/store/memory'
import { REPO_ROOT, tempRoot, tmpDir, waitUntil } from '../../support/process'
import { readStateFile } from './state-file'

const NOBODY = 65534
const asRoot = typeof process.getuid === 'function' && process.getuid() === 0
const DISABLE = { reason: 'manual', by: 'test', incident: 'i' }

/** The memory store's source: a child loads it through tsx, as this process does. */
const MEMORY_STORE = path.join(REPO_ROOT, 'lib', 'store', 'memory')

/**
 * Runs `code` (with `mod` = the memory store module, loaded from lib/ source through tsx) in a
 * child process as uid/gid nobody; `tmp` is a directory nobody can write (tsx's cache).
 */
function runAsNobody(tmp: string, code: string, ...args: string[]): childProcess.SpawnSyncReturns<string> {
  const src = `const mod = require(${JSON.stringify(MEMORY_STORE)});(async () => { ${code} })().then(() => process.exit(0), (e) => { process.stdout.write(String(e.message)); process.exit(2) })`
  return childProcess.spawnSync(process.execPath, ['-r', require.resolve('tsx/cjs'), '-e', src, ...args], {
    uid: NOBODY,
    gid: NOBODY,
    cwd: tmp,
    env: { ...process.env, TMPDIR: tmp },
    encoding: 'utf8',
    timeout: 20000,
  })
}

/** The text of a state file. */
function state(file: string): string {
  return fs.readFileSync(file, 'utf8')
}

describe('memory store: the state file on disk', function () {
  let root: string
  let dir: string
  let file: string
  let nobodyTmp: string

  beforeEach(function () {
    // World-traversable, so a child running as nobody can reach files inside: the temporary
    // root may be passed through (not listed), this test's directory is 0755.
    root = tmpDir('memfile')
    fs.chmodSync(tempRoot() ?? path.dirname(root), 0o711)
    fs.chmodSync(root, 0o755)
    dir = path.join(root, 'haraka')
    fs.mkdirSync(dir)
    file = path.join(dir, 'hijack-guard.state.json')
    nobodyTmp = path.join(root, 'tmp')
    fs.mkdirSync(nobodyTmp)
    if (asRoot) fs.chownSync(nobodyTmp, NOBODY, NOBODY)
  })

  afterEach(function () {
    fs.rmSync(root, { recursive: true, force: true })
  })

  it('waits for a lock held by another process on a timer: the event loop keeps running and the change lands once it is released', async function () {
    const store = createMemoryStore({ stateFile: file })
    fs.writeFileSync(`${file}.lock`, '')
    let ticks = 0
    const timer = setInterval(() => ticks++, 5)
    let settled = false
    const done = store.disable({ account: 'alice', ...DISABLE }).finally(() => (settled = true))
    try {
      await waitUntil(() => ticks >= 10, {
        timeoutMs: 2000,
        intervalMs: 10,
        message: 'timers to fire while the lock is held',
      })
      assert.equal(settled, false, 'the disable waits for the lock')
      assert.equal(fs.existsSync(file), false)
      fs.unlinkSync(`${file}.lock`)
      await done
    } finally {
      clearInterval(timer)
    }
    assert.ok(readStateFile(file).disabled.alice)
    assert.equal(fs.existsSync(`${file}.lock`), false)
    await store.close()
  })

  it('takes over a lock left by a process that died (older than 10 s)', async function () {
    const store = createMemoryStore({ stateFile: file })
    fs.writeFileSync(`${file}.lock`, '')
    const old = new Date(Date.now() - 60_000)
    fs.utimesSync(`${file}.lock`, old, old)
    await store.disable({ account: 'alice', ...DISABLE })
    assert.ok(readStateFile(file).disabled.alice)
    await store.close()
  })

  it('a disable seen by parallel calls at once: of 20 parallel disables of one account exactly one reports the change', async function () {
    const store = createMemoryStore({ stateFile: file })
    const results = await Promise.all(Array.from({ length: 20 }, () => store.disable({ account: 'alice', ...DISABLE })))
    assert.equal(results.filter(Boolean).length, 1)
    await store.close()
  })

  it('holding 200 queued messages does not rewrite the file per message; the marks reach the file within 1.5 s, and a disable in between is written before it resolves', async function () {
    const store = createMemoryStore({ stateFile: file })
    await store.disable({ account: 'spam', ...DISABLE })
    const ino = fs.statSync(file).ino
    for (let i = 0; i < 200; i++) await store.hold('spam', `q${i}.1`, 600_000)
    assert.equal(fs.statSync(file).ino, ino, 'no rewrite while holding')
    assert.equal(await store.heldCount('spam'), 200, 'this process counts them at once')
    await waitUntil(() => Object.keys(readStateFile(file).held?.spam ?? {}).length === 200, {
      timeoutMs: 1500,
      intervalMs: 10,
      message: 'the held marks in the file',
    })
    for (let i = 0; i < 100; i++) assert.equal(await store.release('spam', `q${i}.1`), true)
    assert.equal(await store.release('spam', 'q0.1'), false, 'a second release finds nothing')
    await store.disable({ account: 'bob', ...DISABLE })
    const written = readStateFile(file)
    assert.ok(written.disabled.bob, 'the disable is in the file when it resolves')
    assert.equal(Object.keys(written.held?.spam ?? {}).length, 100, 'the releases went out with it')
    // Another process (the CLI) sees the same counts.
    const cli = createMemoryStore({ stateFile: file })
    assert.equal(await cli.heldCount('spam'), 100)
    await cli.close()
    await store.close()
  })

  it('close() writes pending held marks at once', async function () {
    const store = createMemoryStore({ stateFile: file })
    await store.hold('spam', 'q1.1', 600_000)
    await store.close()
    assert.ok(readStateFile(file).held?.spam?.['q1.1'])
  })

  it('held marks noted here survive a change written by another process in between', async function () {
    const haraka = createMemoryStore({ stateFile: file })
    await haraka.hold('spam', 'q1.1', 600_000)
    const cli = createMemoryStore({ stateFile: file })
    await cli.disable({ account: 'bob', ...DISABLE })
    assert.equal(await haraka.heldCount('spam'), 1, "the pending mark is replayed over the CLI's file")
    assert.notEqual(await haraka.getDisabled('bob'), null)
    await haraka.close()
    const written = readStateFile(file)
    assert.ok(written.disabled.bob && written.held?.spam?.['q1.1'], state(file))
    await cli.close()
  })

  it('keeps the mode of an existing state file', async function () {
    fs.writeFileSync(file, '{"version":1,"disabled":{}}\n', { mode: 0o640 })
    fs.chmodSync(file, 0o640)
    const store = createMemoryStore({ stateFile: file })
    await store.disable({ account: 'alice', ...DISABLE })
    assert.equal(fs.statSync(file).mode & 0o777, 0o640)
    await store.close()
  })

  describe('as root, with a file of the user Haraka runs as', function () {
    before(function () {
      if (!asRoot) this.skip()
    })

    it('a write by root (the CLI under sudo) keeps the owner nobody, group and mode 0600; no temporary or lock file is left', async function () {
      fs.chownSync(dir, NOBODY, NOBODY)
      fs.writeFileSync(file, '{"version":1,"disabled":{}}\n', { mode: 0o600 })
      fs.chownSync(file, NOBODY, NOBODY)
      const store = createMemoryStore({ stateFile: file })
      await store.disable({ account: 'bob', ...DISABLE })
      const s = fs.statSync(file)
      assert.deepEqual([s.uid, s.gid, s.mode & 0o777], [NOBODY, NOBODY, 0o600])
      assert.deepEqual(fs.readdirSync(dir), ['hijack-guard.state.json'])
      await store.close()
      // nobody can still read and change it.
      const r = runAsNobody(
        nobodyTmp,
        `const s = mod.createMemoryStore({ stateFile: process.argv[1] }); if (!(await s.getDisabled('bob'))) throw new Error('bob not disabled'); await s.disable({ account: 'carol', reason: 'x', by: 'y', incident: 'z' }); await s.close()`,
        file,
      )
      assert.equal(r.status, 0, `${r.stdout} ${r.stderr}`)
      assert.ok(readStateFile(file).disabled.carol)
    })

    it('a new state file created by root in a directory of nobody belongs to nobody', async function () {
      fs.chownSync(dir, NOBODY, NOBODY)
      const store = createMemoryStore({ stateFile: file })
      await store.disable({ account: 'bob', ...DISABLE })
      assert.equal(fs.statSync(file).uid, NOBODY)
      await store.close()
    })

    it('a user who cannot give the file back to its owner is refused with a message naming the file, and nothing changes', function () {
      fs.chmodSync(dir, 0o777)
      const before = '{"version":1,"disabled":{}}\n'
      fs.writeFileSync(file, before, { mode: 0o644 })
      const r = runAsNobody(
        nobodyTmp,
        `const s = mod.createMemoryStore({ stateFile: process.argv[1] }); await s.disable({ account: 'bob', reason: 'x', by: 'y', incident: 'z' })`,
        file,
      )
      assert.equal(r.status, 2, `${r.stdout} ${r.stderr}`)
      assert.ok(r.stdout.includes(file) && /cannot keep the owner/.test(r.stdout), r.stdout)
      assert.equal(state(file), before)
      assert.equal(fs.statSync(file).uid, 0)
      assert.deepEqual(fs.readdirSync(dir), ['hijack-guard.state.json'], 'no temporary or lock file left')
    })

    it('checkStateFile run as nobody: a root-owned 0600 file is refused, naming the file and the fix', function () {
      fs.writeFileSync(file, '{"version":1,"disabled":{}}\n', { mode: 0o600 })
      const r = runAsNobody(nobodyTmp, 'await mod.checkStateFile(process.argv[1])', file)
      assert.equal(r.status, 2, `${r.stdout} ${r.stderr}`)
      assert.ok(r.stdout.includes(file), r.stdout)
      assert.match(r.stdout, /uid 65534.*state_file/)
    })

    it('checkStateFile run as nobody: a directory nobody cannot write is refused even when the file is readable', function () {
      fs.writeFileSync(file, '{"version":1,"disabled":{}}\n', { mode: 0o666 })
      fs.chmodSync(file, 0o666)
      const r = runAsNobody(nobodyTmp, 'await mod.checkStateFile(process.argv[1])', file)
      assert.equal(r.status, 2, `${r.stdout} ${r.stderr}`)
      assert.match(r.stdout, /directory of .* is not writable/)
    })
  })

  it('checkStateFile creates a missing state file (and its directory)', async function () {
    const nested = path.join(dir, 'var', 'state.json')
    await checkStateFile(nested)
    assert.deepEqual(readStateFile(nested).disabled, {})
    await checkStateFile(nested)
  })

  it('checkStateFile rejects a damaged state file with StoreError naming it, leaving it as it was', async function () {
    fs.writeFileSync(file, '{"disabled": ')
    await assert.rejects(checkStateFile(file), (err) => err instanceof StoreError && err.message.includes(file))
    assert.equal(state(file), '{"disabled": ')
  })
  it("an enable by the CLI (another process's store on the file) reaches watchEnables of the running store within 2.5 s; its own enable at once", async function () {
    const store = createMemoryStore({ stateFile: file })
    const heard: (string | null)[] = []
    store.watchEnables((account) => heard.push(account))
    for (const account of ['a@example.com', 'b@example.com'])
      assert.equal(await store.disable({ account, reason: 'test', by: 'cli:test', incident: 'i' }), true)
    const cli = createMemoryStore({ stateFile: file })
    assert.equal(await cli.enable('a@example.com'), true)
    await cli.close()
    await waitUntil(() => heard.includes('a@example.com'), {
      timeoutMs: 2500,
      message: () => `heard ${JSON.stringify(heard)}`,
    })
    assert.deepEqual(heard, ['a@example.com'])
    assert.equal(await store.enable('b@example.com'), true)
    assert.deepEqual(heard, ['a@example.com', 'b@example.com'])
    await store.close()
  })
})
