// Smoke test of `npm run demo`: the demo's scenario, run non-interactively, and its outcome.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import * as path from 'node:path'

const DEMO = path.resolve(__dirname, '..', '..', 'demo', 'demo.ts')
const TSX = path.resolve(__dirname, '..', '..', 'node_modules', '.bin', 'tsx')

interface DemoRun {
  readonly code: number | string
  readonly stdout: string
  readonly stderr: string
}

function runDemo(env: NodeJS.ProcessEnv): Promise<DemoRun> {
  return new Promise((resolve) => {
    execFile(TSX, [DEMO, '--fast'], { env: { ...process.env, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr })
    })
  })
}

function assertStory(run: DemoRun): void {
  assert.equal(run.code, 0, `demo exited ${run.code}\n${run.stdout}\n${run.stderr}`)
  const out = run.stdout
  assert.match(
    out,
    /message 26 -> 550 5\.7\.1 Account alice@example\.com reached its limit of 25 messages in 10 minutes/,
  )
  assert.match(out, /same session tries again: MAIL FROM -> 550 5\.7\.1 Account alice@example\.com is disabled/)
  assert.match(out, /a new login with the right password -> 535 5\.7\.8 /)
  assert.match(out, /bob@example\.com is not affected -> 250 /)
  assert.match(
    out,
    /Subject: Account alice@example\.com disabled: reached 25 messages in 10 minutes \[hg-[0-9a-f]{32}\]/,
  )
  assert.match(out, /Reply-To: hijack-guard\+hg-[0-9a-f]{32}@mx\.example\.com/)
  assert.match(out, /logged in as postmaster@example\.com\) -> 250 /)
  assert.match(out, /confirmation: "Account alice@example\.com re-enabled"/)
  assert.match(out, /AUTH with the password the attacker used -> 535 5\.7\.8 .*must be changed/)
  assert.match(out, /AUTH with the new password \+ message from alice@example\.com -> 250 /)
  assert.match(out, /spam messages that reached the outside world: 25 \(the limit\)/)
}

describe('npm run demo', function () {
  this.timeout(150_000)

  it('stops the hijack, alerts, and re-enables on the admin reply (Redis store)', async function () {
    const run = await runDemo({})
    assertStory(run)
    assert.match(run.stdout, /redis-server on port \d+ \(the store\)/)
  })

  it('falls back to the memory store when redis-server is not installed, and tells so', async function () {
    const run = await runDemo({ REDIS_SERVER: path.join(__dirname, 'no-such-redis-server') })
    assertStory(run)
    assert.match(run.stdout, /redis-server is not installed: using the embedded memory store/)
  })
})
