// The plugin with Haraka's test fixtures: [reactivate] require_new_password. The password of the
// session whose message disabled the account is kept as a salted hash; after an enable, an AUTH
// the backend accepts with it is refused 535 5.7.8 until another password is accepted.

import assert from 'node:assert/strict'
import type { FixtureConnection } from 'haraka-test-fixtures'
import type { PasswdCallback } from '../../lib/haraka'
import { waitUntil } from '../../support/process'
import { callHook, fixtureSession, guardStore, makeGuard, type Guard } from '../../support/plugin'

type Check = (connection: unknown, user: string, passwd: string, cb: PasswdCallback) => void

/** A backend with changeable passwords; CRAM-MD5 accepts whatever digest it is given. */
function withBackend(ini: string): Guard & { passwords: Record<string, string>; plain: Check; cram: Check } {
  const guard = makeGuard(`[alert]\nto = postmaster@test.example\n[limits]\nmessages = 1/1m\n${ini}`)
  const passwords: Record<string, string> = { 'alice@test.example': 'Hunter2-xyzzy' }
  const backend = {
    check_plain_passwd: ((_c, user, passwd, cb) => cb(passwords[user] === passwd)) as Check,
    check_cram_md5_passwd: ((_c, user, _digest, cb) => cb(user in passwords)) as Check,
  }
  guard.plugin.haraka_require = () => ({
    registered_plugins: { 'auth/flat_file': backend, 'hijack-guard': guard.plugin },
  })
  return {
    ...guard,
    passwords,
    plain: (...a) => backend.check_plain_passwd(...a),
    cram: (...a) => backend.check_cram_md5_passwd(...a),
  }
}

interface Answer {
  valid: boolean
  code?: number
  message?: string
}

function session(): FixtureConnection {
  return fixtureSession({
    login: 'alice@test.example',
    relaying: true,
    mailFrom: 'alice@test.example',
    rcptTo: ['x@out.example'],
  })
}

function auth(check: Check, connection: FixtureConnection, pass: string): Promise<Answer> {
  return new Promise((resolve) =>
    check(connection, 'alice@test.example', pass, (valid, opts) =>
      resolve({ valid, ...(typeof opts === 'object' ? { code: opts.code, message: opts.message } : {}) }),
    ),
  )
}

/** Logs in on one session and sends two messages: the second goes over messages = 1/1m and disables. */
async function trip(g: ReturnType<typeof withBackend>, check: Check, pass: string): Promise<void> {
  await callHook(g.plugin, 'hook_init_master', {})
  const c = session()
  assert.equal((await auth(check, c, pass)).valid, true)
  assert.equal((await callHook(g.plugin, 'count_message', c)).rc, undefined)
  assert.notEqual((await callHook(g.plugin, 'count_message', c)).rc, undefined)
  await waitUntil(() => g.sent.some((m) => /^Subject: Account alice@test\.example disabled/m.test(m.message)), {
    timeoutMs: 10_000,
    message: 'the alert',
  })
}

const alertOf = (g: Guard): string =>
  g.sent.find((m) => /^Subject: Account .* disabled/m.test(m.message))?.message ?? ''

describe('plugin: the incident password must change ([reactivate] require_new_password)', function () {
  this.timeout(30_000)

  it('refuses the old password after the enable with 535 5.7.8 and the reason; a new password clears it', async function () {
    const g = withBackend('')
    await trip(g, g.plain, 'Hunter2-xyzzy')
    const store = guardStore(g.plugin)
    assert.equal((await store.oldPasswords('alice@test.example')).length, 1)
    assert.match(alertOf(g), /The password this session logged in with stays refused after the re-enable/)
    assert.match(alertOf(g), /enable --allow-old-password alice@test\.example/)
    assert.ok(!alertOf(g).includes('xyzzy'), 'the alert never shows the password')

    await store.enable('alice@test.example')
    const old = await auth(g.plain, session(), 'Hunter2-xyzzy')
    assert.deepEqual(old, {
      valid: false,
      code: 535,
      message:
        '5.7.8 Account alice@test.example: this password was in use when the account was misused and must be changed before it can log in again; contact postmaster@test.example',
    })
    assert.equal(
      (await auth(g.plain, session(), 'wrong')).code,
      undefined,
      'a wrong password is the backend’s plain 535',
    )

    g.passwords['alice@test.example'] = 'brand-new'
    assert.deepEqual(await auth(g.plain, session(), 'brand-new'), { valid: true })
    assert.deepEqual(await store.oldPasswords('alice@test.example'), [], 'the password was changed: forgotten')
    const actions = (await store.auditLog({ account: 'alice@test.example' })).map((e) => e.action)
    assert.ok(actions.includes('password-refused') && actions.includes('password-changed'), actions.join(','))
  })

  it('refuses the stolen password under another spelling of the login too, and a new one under any spelling clears it', async function () {
    const g = withBackend('')
    await trip(g, g.plain, 'Hunter2-xyzzy')
    await guardStore(g.plugin).enable('alice@test.example')
    // The backend accepts the same mailbox under another spelling (case, as many backends do).
    g.passwords['ALICE@Test.Example'] = 'Hunter2-xyzzy'
    const other = await new Promise<Answer>((resolve) =>
      g.plain(session(), 'ALICE@Test.Example', 'Hunter2-xyzzy', (valid, opts) =>
        resolve({ valid, ...(typeof opts === 'object' ? { code: opts.code } : {}) }),
      ),
    )
    assert.deepEqual(other, { valid: false, code: 535 })
    g.passwords['ALICE@Test.Example'] = 'changed-now'
    const changed = await new Promise<boolean>((resolve) =>
      g.plain(session(), 'ALICE@Test.Example', 'changed-now', (valid) => resolve(valid)),
    )
    assert.equal(changed, true)
    assert.deepEqual(await guardStore(g.plugin).oldPasswords('alice@test.example'), [])
  })

  it('keeps nothing and refuses nothing with require_new_password = false', async function () {
    const g = withBackend('[reactivate]\nrequire_new_password = false\n')
    await trip(g, g.plain, 'Hunter2-xyzzy')
    const store = guardStore(g.plugin)
    assert.deepEqual(await store.oldPasswords('alice@test.example'), [])
    assert.ok(!/stays refused/.test(alertOf(g)))
    await store.enable('alice@test.example')
    assert.deepEqual(await auth(g.plain, session(), 'Hunter2-xyzzy'), { valid: true })
  })

  it('says in the alert when the session hid its password (CRAM-MD5), and keeps nothing', async function () {
    const g = withBackend('')
    await trip(g, g.cram, 'digest')
    assert.deepEqual(await guardStore(g.plugin).oldPasswords('alice@test.example'), [])
    assert.match(alertOf(g), /logged in without showing its password \(CRAM-MD5 or a proxy login\)/)
  })
})
