// End-to-end: [reactivate] auto_enable_after (issue 12 item 5) on a real Haraka 3.3.4 with the
// packed plugin, redis-server, auth/flat_file, an SMTP client over loopback and a loopback sink.
// An account a limit disabled is enabled by itself after the delay, audited as `auto`, the
// postmaster is told, and the password in use at the incident is still refused until changed.

import assert from 'node:assert/strict'
import { openSession, tryAuth } from '../../support'
import { waitUntil } from '../../support/process'
import { alertPrefix, assert250, cliOk, e2eWorld, pluginIni, waitSubjects } from './helpers'

const alice = 'alice@test.example'
const STOLEN = 'Hunter2-xyzzy'

describe('e2e: automatic re-enable (issue 12)', function () {
  this.timeout(90_000)

  const e2e = e2eWorld()

  it('auto_enable_after = 3s: the account comes back by itself, audited as auto; the stolen password stays refused', async function () {
    const srv = await e2e.haraka({
      users: { [alice]: STOLEN },
      pluginIni: pluginIni(e2e.redis.port, { reactivate: 'auto_enable_after = 3s', afterEnableDefaults: true }),
    })
    const s = await openSession({ port: srv.port, user: alice, pass: STOLEN })
    for (let i = 1; i <= 3; i++)
      assert250(await s.send({ from: alice, to: ['x@outside.example'], subject: `a ${i}` }), `${i}`)
    assert.equal((await s.send({ from: alice, to: ['x@outside.example'], subject: 'a over' })).code, 550)
    await s.close()
    await waitSubjects(e2e.sink, alertPrefix(alice), 1)
    assert.equal((await tryAuth({ port: srv.port, user: alice, pass: STOLEN })).code, 535, 'disabled at first')

    const [notice] = await waitSubjects(e2e.sink, `Account ${alice} re-enabled automatically`, 1)
    assert.match(notice?.body ?? '', /The password in use at the incident stays refused until it is changed/)
    assert.match((await cliOk(srv, ['list'])).stdout, /^0 disabled accounts$/m)
    const audit = JSON.parse((await cliOk(srv, ['--json', 'audit', alice])).stdout) as Array<{
      action: string
      actor: string
    }>
    assert.equal(audit.filter((e) => e.action === 'enable' && e.actor === 'auto').length, 1)
    const old = await tryAuth({ port: srv.port, user: alice, pass: STOLEN })
    assert.equal(old.code, 535)
    assert.match(old.response, /must be changed/)
    // Looked at every second: no second enable, no second notice.
    await waitUntil(() => srv.log().includes('ACCOUNT RE-ENABLED "alice@test.example" automatically'), {
      message: 'logged',
    })
    assert.equal(srv.log().split('ACCOUNT RE-ENABLED "alice@test.example" automatically').length - 1, 1)
  })
})
