// Smoke test of `npm run simulate`: runs `tsx sim/index.ts --quick --json FILE` and checks the
// result's shape and its bookkeeping (every profile there, numbers that add up), and the one
// outcome that holds whatever the tuning: a burst hijack is disabled with no more than the
// message limit escaped per account. The tuned targets are printed by the simulator, not asserted
// here. Then a short `--store redis` run: both stores must decide the same.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseConfig } from '../../lib/config'
import { readShippedIni } from '../../sim/ini'
import { PROFILES } from '../../sim/profiles'
import type { ProfileResult, Target } from '../../sim/simulate'

const ROOT = path.resolve(__dirname, '..', '..')
const SIM = path.join(ROOT, 'sim', 'index.ts')
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx')
const TIMEOUT_MS = 120_000

interface Run {
  readonly code: number | string
  readonly stdout: string
  readonly stderr: string
}

function simulate(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(TSX, [SIM, ...args], { timeout: TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal ?? 1) : 0, stdout, stderr })
    })
  })
}

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0

describe('simulator: npm run simulate', function () {
  this.timeout(TIMEOUT_MS + 10_000)
  let dir: string

  before(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hijack-guard-sim-'))
  })

  after(function () {
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('--quick --json: every profile, numbers that add up, a burst hijack disabled with at most the limit escaped', async function () {
    const file = path.join(dir, 'sim.json')
    const run = await simulate(['--quick', '--json', file])
    assert.equal(run.code, 0, `exit code ${run.code}\n${run.stdout}\n${run.stderr}`)
    const result = JSON.parse(fs.readFileSync(file, 'utf8')) as { profiles: ProfileResult[]; targets: Target[] }

    assert.deepEqual(
      result.profiles.map((p) => [p.name, p.kind]),
      PROFILES.map((p) => [p.name, p.kind]),
    )
    for (const p of result.profiles) {
      for (const key of ['attempted', 'accepted', 'escaped', 'accounts', 'disabledAccounts', 'falseDisables'] as const)
        assert.ok(isCount(p[key]), `${p.name}.${key} = ${String(p[key])}`)
      assert.equal(typeof p.disabled, 'boolean', `${p.name}.disabled`)
      assert.ok(p.accepted <= p.attempted, `${p.name}: accepted ${p.accepted} > attempted ${p.attempted}`)
      assert.ok(p.disabledAccounts <= p.accounts, p.name)
      if (p.kind === 'hijack') {
        assert.equal(p.escaped, p.accepted, `${p.name}: escaped is the spam accepted`)
        assert.equal(p.falseDisables, 0, p.name)
        assert.ok(p.maxEscapedPerAccount <= p.escaped, p.name)
        if (p.disabled) {
          assert.equal(p.disabledAccounts, p.accounts, p.name)
          assert.ok(typeof p.minutesToDisable === 'number' && p.minutesToDisable >= 0, `${p.name}.minutesToDisable`)
        } else {
          assert.equal(p.minutesToDisable, null, `${p.name}: not disabled, no time`)
        }
      } else {
        assert.equal(p.escaped, 0, p.name)
        assert.equal(p.minutesToDisable, null, p.name)
        assert.equal(p.falseDisables, p.disabledAccounts, p.name)
        assert.equal(p.disabled, p.disabledAccounts > 0, p.name)
        assert.ok(p.attempted > 0, `${p.name} sent something`)
      }
    }

    const limit = Math.min(
      ...parseConfig(readShippedIni())
        .rules.filter((r) => r.kind === 'messages')
        .map((r) => r.max),
    )
    const burst = result.profiles.find((p) => p.name === 'burst-hijack')
    assert.ok(burst)
    assert.equal(burst.disabled, true, 'every burst-hijacked account is disabled')
    assert.ok(
      burst.maxEscapedPerAccount <= limit,
      `at most ${limit} escaped per account, got ${burst.maxEscapedPerAccount}`,
    )
    assert.ok(burst.escaped <= limit * burst.accounts)

    const spraying = result.profiles.find((p) => p.name === 'spraying')
    assert.ok(spraying)
    assert.equal(spraying.authFailures, spraying.authAttempts, 'every spraying AUTH failed')
    assert.equal(spraying.authAttempts, 200 * spraying.accounts, 'one attempt per login from each of 200 networks')

    assert.ok(result.targets.length >= 5)
    for (const t of result.targets) {
      assert.ok(t.pass === true || t.pass === false || t.pass === null, t.target)
      const line = `${t.pass === null ? 'n/a ' : t.pass ? 'PASS' : 'MISS'}  ${t.target}`
      assert.ok(run.stdout.includes(line), `the report has the line "${line}"`)
    }
  })

  it('--store redis: the Redis store and the memory store decide the same on a compressed trace', async function () {
    const run = await simulate(['--store', 'redis', '--quick', '--profile', 'burst-hijack', '--profile', 'spraying'])
    assert.equal(run.code, 0, `exit code ${run.code}\n${run.stdout}\n${run.stderr}`)
    assert.match(run.stdout, /burst-hijack\s+same .*disabled 2\/2 of 2/)
    assert.match(run.stdout, /spraying\s+same /)
    assert.match(run.stdout, /both stores decided the same/)
  })
})
