// End-to-end: password spraying ([signals] auth_failures, issue 11), with the real parts (a
// Haraka 3.3.4 process with the packed plugin, redis-server, an SMTP client over loopback from
// two loopback networks, a loopback sink). See test/e2e/README.md.
//
// - 20 failed AUTHs of one login from 127.1.0.1 and 127.2.0.1 send one alert naming the login,
//   the count and both addresses; more failures send no second one;
// - with auth_failures_action = block, the next AUTH of that login, even with the right
//   password, is answered 454 4.7.0 and the password is not checked; another login is not touched;
// - with action = alert, a success from a third network after those failures is logged at WARN
//   and written to the audit trail.

import assert from 'node:assert/strict'
import { tryAuth, type HarakaInstance, type SmtpResult } from '../../support'
import { cliOk, countMatches, pluginIni, waitSubjects, e2eWorld, type AuditEntry } from './helpers'

const PW = 'pw'
const alice = 'alice@test.example'
const bob = 'bob@test.example'
const SOURCES = ['127.1.0.1', '127.2.0.1']
const sprayPrefix = (account: string): string => `Password spraying against ${account}: `

/** `n` failed AUTHs of `user`, alternating between SOURCES, side by side (Haraka delays each failure by a second). */
async function failMany(srv: HarakaInstance, user: string, n: number): Promise<SmtpResult[]> {
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      tryAuth({ port: srv.port, user, pass: `wrong-${i}`, localAddress: SOURCES[i % SOURCES.length] }),
    ),
  )
  for (const r of results) assert.equal(r.code, 535, `a wrong password: ${r.code} ${r.response}`)
  return results
}

describe('e2e: password spraying (issue 11)', function () {
  this.timeout(90000)

  const e2e = e2eWorld()
  const { haraka } = e2e

  it('block: 20 failed AUTHs from two networks alert once; then even the right password gets 454 4.7.0; another login is not touched', async function () {
    const srv = await haraka({
      users: { [alice]: PW, [bob]: PW },
      pluginIni: pluginIni(e2e.redis.port, { signals: 'auth_failures = 20/1h\nauth_failures_action = block' }),
    })
    await failMany(srv, alice, 20)
    const [alert] = await waitSubjects(e2e.sink, sprayPrefix(alice), 1)
    assert.ok(alert)
    assert.match(alert.subject ?? '', /20 failed logins in 1 hour/)
    assert.deepEqual(alert.to, ['postmaster@test.example'])
    for (const source of SOURCES) assert.ok(alert.body.includes(source), `the alert names ${source}:\n${alert.body}`)
    assert.match(alert.body, /answered 454 4\.7\.0 without checking the password/)

    const right = await tryAuth({ port: srv.port, user: alice, pass: PW, localAddress: '127.1.0.1' })
    assert.equal(right.code, 454, `right password while blocked: ${right.response}`)
    assert.match(right.response, /^454 4\.7\.0 Too many failed logins for this account/)
    const wrong = await tryAuth({ port: srv.port, user: alice, pass: 'nope', localAddress: '127.3.0.1' })
    assert.equal(wrong.response, right.response, 'the same answer whatever the password: no oracle')
    assert.equal(countMatches(srv.log(), /too many failed logins \(password not checked\)/), 2)

    const other = await tryAuth({ port: srv.port, user: bob, pass: PW, localAddress: '127.1.0.1' })
    assert.equal(other.code, 235, `another login: ${other.response}`)
    assert.equal(countMatches(srv.log(), /password spraying alert for "alice@test\.example" queued/), 1, 'one alert')
  })

  it('alert: one alert per window, AUTH still checked, and a success from another network is evidence (WARN, audit)', async function () {
    const srv = await haraka({
      users: { [alice]: PW, [bob]: PW },
      pluginIni: pluginIni(e2e.redis.port, { signals: 'auth_failures = 20/1h' }),
    })
    await failMany(srv, alice, 20)
    await waitSubjects(e2e.sink, sprayPrefix(alice), 1)
    // Each failure is answered only once it is counted, and the alert queued: the 22nd failure's
    // answer means no second alert is coming.
    await failMany(srv, alice, 2)
    assert.equal(countMatches(srv.log(), /password spraying alert for "alice@test\.example" queued/), 1, 'one alert')

    const ok = await tryAuth({ port: srv.port, user: alice, pass: PW, localAddress: '127.3.0.1' })
    assert.equal(ok.code, 235, `action = alert: the right password still works: ${ok.response}`)
    assert.equal(countMatches(srv.log(), /possible password spraying success for "alice@test\.example"/), 1)
    const audit = await cliOk(srv, ['--json', 'audit', alice])
    const entries = JSON.parse(audit.stdout) as AuditEntry[]
    const evidence = entries.find((e) => e.action === 'auth-after-failures')
    assert.ok(evidence, `audit: ${audit.stdout}`)
    assert.match(evidence.reason ?? '', /AUTH from 127\.3\.0\.1 after 20 failed AUTHs/)

    const own = await tryAuth({ port: srv.port, user: bob, pass: 'nope', localAddress: '127.1.0.1' })
    assert.equal(own.code, 535)
    const bobOk = await tryAuth({ port: srv.port, user: bob, pass: PW, localAddress: '127.1.0.1' })
    assert.equal(bobOk.code, 235)
    assert.equal(countMatches(srv.log(), /possible password spraying success for "bob/), 0, 'same network: no evidence')
  })
})
