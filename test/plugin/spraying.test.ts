// The plugin with Haraka's test fixtures: password spraying ([signals] auth_failures) in the AUTH
// wrapper, with a fake auth plugin and the compiled memory store (or a store that fails).

import assert from 'node:assert/strict'
import type { FixturePlugin } from 'haraka-test-fixtures'
import type { PasswdCallback } from '../../lib/haraka'
import type { Store } from '../../lib/store'
import { AUTH_MEMORY_CAP } from '../../lib/hooks/auth'
import { callHook, failingStore, fixtureSession, guardStore, makeGuard, type Guard } from '../../support/plugin'

type Check = (connection: unknown, user: string, passwd: string, cb: PasswdCallback) => void

interface FakeAuth {
  checks: number
  check_plain_passwd: Check
}

interface CheckAnswer {
  valid: boolean
  opts: Parameters<PasswdCallback>[1]
}

const PASSWORDS: Record<string, string> = { alice: 'right', bob: 'right', svc: 'right' }

function withAuth(ini: string, store?: (real: Store) => Store): Guard & { auth: FakeAuth } {
  const guard = makeGuard(`[alert]\nto = postmaster@test.example\n${ini}`)
  if (store) guard.plugin.guard.store = store(guardStore(guard.plugin))
  const auth: FakeAuth = {
    checks: 0,
    check_plain_passwd(_connection, user, passwd, cb) {
      auth.checks++
      cb(PASSWORDS[user] === passwd)
    },
  }
  guard.plugin.haraka_require = () => ({ registered_plugins: { 'auth/flat_file': auth, 'hijack-guard': guard.plugin } })
  return { ...guard, auth }
}

/** The SMTP code of a refused check, or undefined. */
const codeOf = (a: CheckAnswer): number | undefined => (typeof a.opts === 'object' ? a.opts.code : undefined)

const init = (plugin: FixturePlugin): Promise<unknown> => callHook(plugin, 'hook_init_master', {})

/** What the sessions logged: [level, text]. */
const sessionLogs: Array<[string, string]> = []

function check(auth: FakeAuth, user: string, pass: string, ip = '192.0.2.7'): Promise<CheckAnswer> {
  const connection = fixtureSession({
    relaying: false,
    mailFrom: 'someone@example.com',
    ip,
    log: (level, msg) => sessionLogs.push([level, String(msg)]),
  })
  return new Promise((resolve) =>
    auth.check_plain_passwd(connection, user, pass, (valid, opts) => resolve({ valid, opts })),
  )
}

/** The store with every call counted by member name. */
function counting(calls: string[]): (real: Store) => Store {
  return (real) =>
    new Proxy(real, {
      get(target, name, receiver) {
        const value = Reflect.get(target, name, receiver) as unknown
        if (typeof value !== 'function') return value
        return (...args: unknown[]) => {
          calls.push(String(name))
          return (value as (...a: unknown[]) => unknown).apply(target, args)
        }
      },
    })
}

const sprayAlerts = (g: Guard): string[] =>
  g.sent.map((m) => m.message).filter((m) => /^Subject: (Monitor: )?Password spraying against /m.test(m))

describe('plugin: password spraying ([signals] auth_failures)', function () {
  beforeEach(() => {
    sessionLogs.length = 0
  })

  it('block: alerts once at the limit, then answers 454 4.7.0 without checking the password; other logins go on', async function () {
    const g = withAuth('[signals]\nauth_failures = 3/1h\nauth_failures_action = block\n')
    await init(g.plugin)
    for (let i = 0; i < 3; i++) assert.equal((await check(g.auth, 'alice', 'wrong', `192.0.${i}.7`)).valid, false)
    const alerts = sprayAlerts(g)
    assert.equal(alerts.length, 1)
    assert.match(alerts[0] ?? '', /the login alice failed to authenticate 3 times/)
    for (const ip of ['192.0.0.7', '192.0.1.7', '192.0.2.7']) assert.ok(alerts[0]?.includes(ip), ip)
    const checks = g.auth.checks
    const right = await check(g.auth, 'alice', 'right')
    assert.equal(right.valid, false)
    assert.deepEqual(right.opts, {
      code: 454,
      message: '4.7.0 Too many failed logins for this account; try again later or contact postmaster@test.example',
    })
    assert.equal(g.auth.checks, checks, 'the password of a blocked login is not checked')
    assert.deepEqual(await check(g.auth, 'bob', 'right'), { valid: true, opts: undefined })
    assert.equal(sprayAlerts(g).length, 1)
  })

  it('a flood of failed AUTHs for more other logins than the process remembers leaves a block in place', async function () {
    this.timeout(120_000)
    const g = withAuth('[signals]\nauth_failures = 2/1h\nauth_failures_action = block\n')
    await init(g.plugin)
    for (let i = 0; i < 2; i++) await check(g.auth, 'alice', 'wrong')
    assert.equal(codeOf(await check(g.auth, 'alice', 'right')), 454)
    // One failure each (under the limit) for AUTH_MEMORY_CAP + 1 other logins.
    for (let i = 0; i <= AUTH_MEMORY_CAP; i++) await check(g.auth, `junk${i}`, 'wrong')
    const checks = g.auth.checks
    assert.equal(codeOf(await check(g.auth, 'alice', 'right')), 454, 'still blocked after the flood')
    assert.equal(g.auth.checks, checks, 'the password is still not checked')
  })

  it('alert (the default action): alerts once, never blocks', async function () {
    const g = withAuth('[signals]\nauth_failures = 3/1h\n')
    await init(g.plugin)
    for (let i = 0; i < 5; i++) await check(g.auth, 'alice', 'wrong')
    assert.equal(sprayAlerts(g).length, 1)
    assert.match(sprayAlerts(g)[0] ?? '', /still checked as usual/)
    assert.deepEqual(await check(g.auth, 'alice', 'right'), { valid: true, opts: undefined })
  })

  it('a successful AUTH makes no store call beyond the disabled lookup and the pending-password list; a failed one makes one', async function () {
    const calls: string[] = []
    const g = withAuth('[signals]\nauth_failures = 3/1h\nauth_failures_action = block\n', counting(calls))
    await init(g.plugin)
    calls.length = 0
    await check(g.auth, 'alice', 'right')
    // oldPasswords reads one shared list the Redis store caches: no round trip once it has it.
    assert.deepEqual(calls, ['getDisabled', 'oldPasswords'])
    calls.length = 0
    await check(g.auth, 'alice', 'wrong')
    assert.deepEqual(calls, ['getDisabled', 'authFailure'])
  })

  it('a success after failures from other networks is logged at WARN and audited; from the same network it is not', async function () {
    const g = withAuth('[signals]\nauth_failures = 10/1h\n')
    await init(g.plugin)
    await check(g.auth, 'alice', 'wrong', '198.51.100.1')
    await check(g.auth, 'alice', 'wrong', '198.51.100.2')
    await check(g.auth, 'alice', 'right', '198.51.100.9')
    assert.equal((await guardStore(g.plugin).auditLog({ account: 'alice' })).length, 0, 'same /24: a typo')
    await check(g.auth, 'alice', 'right', '203.0.113.5')
    const [entry] = await guardStore(g.plugin).auditLog({ account: 'alice' })
    assert.equal(entry?.action, 'auth-after-failures')
    assert.match(
      entry?.reason ?? '',
      /AUTH from 203\.0\.113\.5 after 2 failed AUTHs .*198\.51\.100\.1, 198\.51\.100\.2/,
    )
  })

  it('[exempt] accounts are counted and alerted, never blocked', async function () {
    const g = withAuth('[exempt]\naccounts = svc\n[signals]\nauth_failures = 2/1h\nauth_failures_action = block\n')
    await init(g.plugin)
    for (let i = 0; i < 3; i++) await check(g.auth, 'svc', 'wrong')
    assert.equal(sprayAlerts(g).length, 1)
    assert.deepEqual(await check(g.auth, 'svc', 'right'), { valid: true, opts: undefined })
  })

  it('monitor mode alerts ("Monitor:") and never blocks', async function () {
    const g = withAuth('[main]\nmode = monitor\n[signals]\nauth_failures = 2/1h\nauth_failures_action = block\n')
    await init(g.plugin)
    for (let i = 0; i < 3; i++) await check(g.auth, 'alice', 'wrong')
    assert.match(sprayAlerts(g)[0] ?? '', /^Subject: Monitor: Password spraying/m)
    assert.deepEqual(await check(g.auth, 'alice', 'right'), { valid: true, opts: undefined })
  })

  it('auth_failures empty: failures cost no store call', async function () {
    const calls: string[] = []
    const g = withAuth('[signals]\nauth_failures =\nauth_failures_action = block\n', counting(calls))
    await init(g.plugin)
    calls.length = 0
    for (let i = 0; i < 3; i++) await check(g.auth, 'alice', 'wrong')
    assert.ok(!calls.includes('authFailure'))
    assert.equal(sprayAlerts(g).length, 0)
  })

  it('a store that fails: the failure is answered as usual, logged, and logins are not blocked', async function () {
    const g = withAuth('[signals]\nauth_failures = 1/1h\nauth_failures_action = block\n', (real) => ({
      ...real,
      kind: real.kind,
      authFailure: (input) => failingStore().authFailure(input),
    }))
    await init(g.plugin)
    assert.deepEqual(await check(g.auth, 'alice', 'wrong'), { valid: false, opts: undefined })
    assert.ok(
      sessionLogs.some(([level, text]) => level === 'logerror' && /failed AUTH not counted/.test(text)),
      JSON.stringify(sessionLogs),
    )
    assert.deepEqual(await check(g.auth, 'alice', 'right'), { valid: true, opts: undefined })
  })
})
