// End-to-end: the incident's password must change ([reactivate] require_new_password, issue 12
// item 1) on a real Haraka 3.3.4 with the packed plugin, redis-server, auth/flat_file, an SMTP
// client speaking AUTH PLAIN over loopback and a loopback sink. See test/e2e/README.md.
//
// A hijack trips with the stolen password; the admin re-enables with the CLI; AUTH with that
// password, which the backend still accepts, is refused 535 5.7.8 "must be changed"; the password
// is changed in auth_flat_file.ini while Haraka runs; the new one works and clears the record;
// `enable --allow-old-password` lets an old password in again.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { openSession, startWebhookReceiver, tryAuth, type HarakaInstance } from '../../support'
import { waitUntil } from '../../support/process'
import { alertPrefix, assert250, cliOk, e2eWorld, pluginIni, waitSubjects } from './helpers'

const alice = 'alice@test.example'
const bob = 'bob@test.example'
const STOLEN = 'Hunter2-xyzzy'

/** Three messages within messages = 3/1m, and the fourth that disables the account. */
async function hijack(
  srv: HarakaInstance,
  sink: Parameters<typeof waitSubjects>[0],
  user: string,
  pass: string,
): Promise<void> {
  const s = await openSession({ port: srv.port, user, pass })
  for (let i = 1; i <= 3; i++)
    assert250(await s.send({ from: user, to: ['x@outside.example'], subject: `pw ${i}` }), `${i}`)
  const over = await s.send({ from: user, to: ['x@outside.example'], subject: 'pw over' })
  assert.equal(over.code, 550, over.response)
  await s.close()
  await waitSubjects(sink, alertPrefix(user), 1)
}

/** Rewrites auth_flat_file.ini as an operator changing passwords would. */
function setPasswords(srv: HarakaInstance, users: Record<string, string>): void {
  const lines = ['[core]', 'methods=PLAIN,LOGIN', '', '[users]', ...Object.entries(users).map(([u, p]) => `${u}=${p}`)]
  fs.writeFileSync(path.join(srv.dir, 'config', 'auth_flat_file.ini'), `${lines.join('\n')}\n`)
}

describe('e2e: the incident password must change (issue 12)', function () {
  this.timeout(120_000)

  const e2e = e2eWorld()
  const { haraka } = e2e

  it('refuses the stolen password after the enable until it is changed in the auth backend; the new one clears it', async function () {
    const receiver = await startWebhookReceiver({ secret: 'pw-test-secret' })
    e2e.cleanup(() => receiver.close())
    const srv = await haraka({
      users: { [alice]: STOLEN, [bob]: STOLEN },
      pluginIni: `${pluginIni(e2e.redis.port, { afterEnableDefaults: true })}[webhook]\nurl = ${receiver.url}\nsecret = pw-test-secret\n`,
    })
    await hijack(srv, e2e.sink, alice, STOLEN)
    const [alert] = await waitSubjects(e2e.sink, alertPrefix(alice), 1)
    assert.match(alert?.body ?? '', /The password this session logged in with stays refused after the re-enable/)
    assert.ok(!(alert?.body ?? '').includes('xyzzy'), 'the alert never shows the password')

    const enabled = await cliOk(srv, ['enable', alice])
    assert.match(enabled.stdout, /The password in use at the incident stays refused until it is changed/)
    assert.match((await cliOk(srv, ['show', alice])).stdout, /^Password +change pending/m)

    const old = await tryAuth({ port: srv.port, user: alice, pass: STOLEN })
    assert.equal(old.code, 535, old.response)
    assert.match(
      old.response,
      /^535 5\.7\.8 Account alice@test\.example: this password was in use when the account was misused and must be changed/,
    )
    const refused = await waitUntil(() => receiver.named('password_refused')[0], {
      message: 'the password_refused event',
    })
    assert.ok(refused.verified, 'signed with the secret')
    assert.equal(refused.payload.account, alice)
    assert.equal(refused.payload.via, 'auth')

    setPasswords(srv, { [alice]: 'correct-horse-battery', [bob]: STOLEN })
    await waitUntil(
      async () => (await tryAuth({ port: srv.port, user: alice, pass: 'correct-horse-battery' })).code === 235,
      {
        timeoutMs: 20_000,
        intervalMs: 500,
        message: 'the new password works once flat_file has reloaded',
      },
    )
    assert.match((await cliOk(srv, ['show', alice])).stdout, /^Password +no change pending/m)
    const audit = (await cliOk(srv, ['--json', 'audit', alice])).stdout
    assert.match(audit, /"password-refused"/)
    assert.match(audit, /"password-changed"/)
    const s = await openSession({ port: srv.port, user: alice, pass: 'correct-horse-battery' })
    assert250(
      await s.send({ from: alice, to: ['x@outside.example'], subject: 'pw after' }),
      'mail with the new password',
    )
    await s.close()

    // bob: the admin lets the old password in again on purpose.
    await hijack(srv, e2e.sink, bob, STOLEN)
    const allowed = await cliOk(srv, ['enable', '--allow-old-password', bob])
    assert.match(allowed.stdout, /The password in use at the incident may log in again/)
    assert.equal((await tryAuth({ port: srv.port, user: bob, pass: STOLEN })).code, 235)
    assert.match((await cliOk(srv, ['--json', 'audit', bob])).stdout, /"password-allowed"/)
  })
})
