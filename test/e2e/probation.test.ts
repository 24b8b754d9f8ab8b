// End-to-end: probation after an enable ([reactivate] probation, probation_factor; issue 12
// item 2) on a real Haraka 3.3.4 with the packed plugin, redis-server, an SMTP client over
// loopback and a loopback sink: after the CLI enable the account's limits are halved, so the
// second incident is caught at half the messages, and `show` and the audit trail say so.

import assert from 'node:assert/strict'
import { openSession, type HarakaInstance } from '../../support'
import { alertPrefix, assert250, cliOk, e2eWorld, pluginIni, waitSubjects } from './helpers'

const alice = 'alice@test.example'
const PW = 'pw'

/** Sends until a message is refused; answers how many were accepted. */
async function sendUntilRefused(srv: HarakaInstance, tag: string, most: number): Promise<number> {
  const s = await openSession({ port: srv.port, user: alice, pass: PW })
  let accepted = 0
  for (let i = 1; i <= most; i++) {
    const r = await s.send({ from: alice, to: ['x@outside.example'], subject: `${tag} ${i}` })
    if (r.code !== 250) {
      assert.equal(r.code, 550, r.response)
      break
    }
    assert250(r, `${tag} ${i}`)
    accepted++
  }
  await s.close()
  return accepted
}

describe('e2e: probation after an enable (issue 12)', function () {
  this.timeout(90_000)

  const e2e = e2eWorld()

  it('messages = 4/1m: 4 before the first disable; after the CLI enable, on probation x0.5, 2 before the next', async function () {
    const srv = await e2e.haraka({
      users: { [alice]: PW },
      pluginIni: pluginIni(e2e.redis.port, {
        limits: 'messages = 4/1m\nrecipients = 0',
        reactivate: 'probation = 1h\nprobation_factor = 0.5',
        afterEnableDefaults: true,
      }),
    })
    assert.equal(await sendUntilRefused(srv, 'first', 6), 4)
    await waitSubjects(e2e.sink, alertPrefix(alice), 1)
    const enabled = await cliOk(srv, ['enable', '--allow-old-password', alice])
    assert.match(enabled.stdout, /^On probation until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(limits x0\.5\)\.$/m)
    assert.match((await cliOk(srv, ['show', alice])).stdout, /^Probation until .*: limits x0\.5$/m)
    const shown = (await cliOk(srv, ['show', alice])).stdout
    assert.match(shown, /^ {2}messages 0\/2 in 1 minute$/m)
    assert.match(shown, /^ {2}networks 0\/5 in 6 hours$/m, 'networks are not scaled')
    assert.match(shown, /^Replies +re-enabled by reply 0 of 3 times allowed in 30 days$/m)

    assert.equal(await sendUntilRefused(srv, 'second', 6), 2, 'half the limit while on probation')
    const alerts = await waitSubjects(e2e.sink, alertPrefix(alice), 2)
    assert.match(alerts[1]?.subject ?? '', /reached 2 messages in 1 minute/)
    const audit = JSON.parse((await cliOk(srv, ['--json', 'audit', alice])).stdout) as Array<{
      action: string
      reason?: string
    }>
    assert.ok(
      audit.some((e) => e.action === 'enable' && /^probation until .* \(limits x0\.5\)$/.test(e.reason ?? '')),
      JSON.stringify(audit),
    )
  })
})
