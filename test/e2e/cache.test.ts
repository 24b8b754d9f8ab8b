// End-to-end: the disable lookups of MAIL FROM and AUTH answered from the cache Redis keeps true
// (lib/store/redis/tracking.ts), with the real parts: a Haraka 3.3.4 process with the packed
// plugin, redis-server, the CLI the package installs, a nodemailer client, the loopback sink.
// What an attacker would try: a disable written elsewhere while a session is open, and one
// written while Haraka could not hear Redis; and what it costs: Redis round trips counted with
// MONITOR. See test/e2e/README.md.

import assert from 'node:assert/strict'
import { monitorRedis, openSession, startTcpProxy, tryAuth, type Monitor, type Session } from '../../support'
import { assert250, assert535, assert550, cliOk, disabledKey, e2eWorld, pluginIni } from './helpers'

const PW = 'pw'
const ALICE = 'alice@test.example'
const BOB = 'bob@test.example'
const CAROL = 'carol@test.example'
const WARM = 'warm@test.example'
const OUT = 'someone@outside.example'
const LIMITS = 'messages = 1000/1m\nrecipients = 0'

/** Sends `n` messages in session `s`, each answered 250. */
async function sendMany(s: Session, from: string, n: number, tag: string): Promise<void> {
  for (let i = 1; i <= n; i++) assert250(await s.send({ from, to: [OUT], subject: `${tag} ${i}` }), `${tag} ${i}`)
}

/** The commands Haraka sent to Redis since the last reset, by name (MONITOR, caught up). */
async function sent(monitor: Monitor): Promise<{ total: number; byName: Record<string, number>; lookups: string[] }> {
  await monitor.caughtUp()
  const byName = monitor.counts().client
  const lookups = monitor.commands.filter((c) => c.from !== 'lua' && c.name === 'hgetall').map((c) => c.args[0] ?? '')
  return { total: Object.values(byName).reduce((a, b) => a + b, 0), byName, lookups }
}

describe('e2e: disable lookups from the cache Redis keeps true', function () {
  this.timeout(60000)

  const e2e = e2eWorld({ users: { [ALICE]: PW, [BOB]: PW, [CAROL]: PW, [WARM]: PW } })

  it('the CLI disables an account while its session is open: the next MAIL FROM gets 550 5.7.1, AUTH 535; enable lets it in again', async function () {
    const srv = await e2e.haraka({ pluginIni: pluginIni(e2e.redis.port, { limits: LIMITS }) })
    const s = await openSession({ port: srv.port, user: ALICE, pass: PW })
    // looked up at AUTH and at each MAIL FROM: cached as enabled now
    await sendMany(s, ALICE, 3, 'before')
    await cliOk(srv, ['disable', ALICE, '--reason', 'phished'])
    const refused = await s.send({ from: ALICE, to: [OUT], subject: 'after the disable' })
    assert550(refused, 'mail', 'MAIL FROM in the open session')
    assert.match(refused.response, /is disabled/)
    assert535(await tryAuth({ port: srv.port, user: ALICE, pass: PW }), 'AUTH after the disable')
    await s.close()

    // and back: the enable reaches the cached "disabled" the same way
    await cliOk(srv, ['enable', ALICE])
    const again = await openSession({ port: srv.port, user: ALICE, pass: PW })
    await sendMany(again, ALICE, 1, 'enabled again')
    await again.close()
  })

  it('Redis restarted while Haraka could not reach it, a disable written to the new one: the next MAIL FROM gets 550 5.7.1', async function () {
    const proxy = await startTcpProxy(e2e.redis.port)
    e2e.cleanup(() => proxy.stop())
    const srv = await e2e.haraka({ pluginIni: pluginIni(proxy.port, { limits: LIMITS }) })
    const s = await openSession({ port: srv.port, user: BOB, pass: PW })
    await sendMany(s, BOB, 2, 'before')
    // cut off, so no invalidation can reach Haraka; then Redis restarts empty and gets the disable
    proxy.cut()
    await e2e.redis.restart()
    await (
      await e2e.redis.client()
    ).hSet(disabledKey(BOB), {
      account: BOB,
      reason: 'written while Haraka was cut off',
      by: 'redis-cli',
      at: String(Date.now()),
      incident: 'restart-test',
    })
    const mark = srv.logMark()
    proxy.heal()
    await srv.waitForLog(/connected again/, { since: mark, timeoutMs: 10000 })
    assert550(
      await s.send({ from: BOB, to: [OUT], subject: 'after the restart' }),
      'mail',
      'MAIL FROM after the restart',
    )
    await s.close()
  })

  it('MONITOR: 20 messages in one session cost 20 EVALSHA and at most the AUTH lookup; a 1-message session at most 2', async function () {
    const srv = await e2e.haraka({ pluginIni: pluginIni(e2e.redis.port, { limits: LIMITS }) })
    // Redis learns the scripts once (a NOSCRIPT answer, then EVAL): not part of the steady state
    const warm = await openSession({ port: srv.port, user: WARM, pass: PW })
    await sendMany(warm, WARM, 1, 'warm-up')
    await warm.close()
    const monitor = await monitorRedis(e2e.redis.port)
    e2e.cleanup(async () => monitor.stop())

    // a session of 20 messages of an account this Haraka has not looked up yet
    const s = await openSession({ port: srv.port, user: ALICE, pass: PW })
    await sendMany(s, ALICE, 20, 'twenty')
    await s.close()
    const twenty = await sent(monitor)
    console.log(`      [measured] 20-message session: ${twenty.total} commands ${JSON.stringify(twenty.byName)}`)
    assert.equal(twenty.byName.evalsha, 20, 'one counting script per message')
    assert.deepEqual(twenty.lookups, [disabledKey(ALICE)], 'one lookup: the AUTH of an account not cached yet')
    assert.equal(twenty.total, 21, 'nothing else')
    assert.ok(twenty.total / 20 <= 1.05, `${twenty.total / 20} round trips per message`)

    // one-message sessions: a new account (AUTH looks it up), then a cached one (nothing but the script)
    for (const [account, most] of [
      [CAROL, 2],
      [ALICE, 1],
    ] as const) {
      monitor.reset()
      const one = await openSession({ port: srv.port, user: account, pass: PW })
      await sendMany(one, account, 1, `one ${account}`)
      await one.close()
      const r = await sent(monitor)
      console.log(`      [measured] 1-message session of ${account}: ${r.total} commands ${JSON.stringify(r.byName)}`)
      assert.equal(r.byName.evalsha, 1)
      assert.ok(r.total <= most, `${r.total} round trips for a 1-message session of ${account} (at most ${most})`)
    }
  })
})
