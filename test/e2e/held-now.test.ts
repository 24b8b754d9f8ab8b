// End-to-end: held mail leaves at once. A disabled account's queued mail is held by a real Haraka
// 3.3.4 whose [held] retry is 10 minutes, so its own timer cannot be what sends it; an enable
// (the CLI, another process; or a reply to the alert) reaches the running Haraka, which hands the
// held messages back to outbound's delivery queue, and the sink has them within 10 s. With Redis
// (one process, and two cluster workers) the enable arrives as a CLIENT TRACKING invalidation of
// the account's disabled key; with the memory store through the state file. See test/e2e/README.md.

import assert from 'node:assert/strict'
import {
  openSession,
  startWebhookReceiver,
  tail,
  waitUntil,
  type HarakaInstance,
  type WebhookReceiver,
} from '../../support'
import {
  alertPrefix,
  assert250,
  at,
  bySubject,
  cliOk,
  e2eWorld,
  pluginIni,
  replyToAlert,
  RETRYING_OUTBOUND,
  waitQueueEmpty,
  waitSubjects,
} from './helpers'

const PW = 'pw'
const ADMIN = 'postmaster@test.example' // a flat_file login listed in [alert] to: an admin
/** What the issue asks: an enable releases the held mail within this. */
const RELEASE_MS = 10000

describe('e2e: held mail leaves at once after an enable ([held] retry = 10m)', function () {
  this.timeout(90000)

  const e2e = e2eWorld({ users: { [ADMIN]: PW } })
  const { haraka } = e2e

  const start = (acct: string, store: 'redis' | 'memory', nodes = 0, hook?: WebhookReceiver): Promise<HarakaInstance> =>
    haraka({
      users: { [acct]: PW },
      nodes,
      pluginIni:
        pluginIni(e2e.redis.port, { store, held: 'retry = 10m' }) +
        (hook ? `[webhook]\nurl = ${hook.url}\nsecret = held-secret\n` : ''),
      config: { 'outbound.ini': RETRYING_OUTBOUND },
    })

  // The held count `hijack-guard --json list` shows for the account (undefined: not listed).
  async function listedHeld(srv: HarakaInstance, acct: string): Promise<number | null | undefined> {
    const rows = JSON.parse((await cliOk(srv, ['--json', 'list'])).stdout) as { account: string; held?: number }[]
    return rows.find((r) => r.account === acct)?.held
  }

  // The account queues three messages while the sink answers 451 (outbound retries every 5 s),
  // then goes over its limit; the next attempts find it disabled and hold the messages for 10
  // minutes. The sink then accepts again (the alert's retry proves it). Returns the subjects.
  async function queueThenHold(srv: HarakaInstance, acct: string): Promise<string[]> {
    e2e.sink.refuse(451)
    const s = await openSession({ port: srv.port, user: acct, pass: PW })
    const queued: string[] = []
    for (let i = 1; i <= 3; i++) {
      const subject = `now ${acct} ${i}`
      assert250(await s.send({ from: acct, to: [`r${i}@d${i}.outside.example`], subject }), `message ${i}`)
      queued.push(subject)
    }
    const over = await s.send({ from: acct, to: ['r4@d4.outside.example'], subject: `now ${acct} 4` })
    assert.equal(over.code, 550, `the fourth message goes over: ${JSON.stringify(over)}`)
    await s.close()
    await waitUntil(async () => (await listedHeld(srv, acct)) === queued.length, {
      timeoutMs: 30000,
      intervalMs: 250,
      message: () => `held count of ${acct} did not reach ${queued.length}\n${tail(srv.log(), 30)}`,
    })
    await srv.waitForLog(/next look in 600 s or at its enable/, { count: queued.length, timeoutMs: 5000 })
    e2e.sink.accept()
    await waitSubjects(e2e.sink, alertPrefix(acct), 1, { timeoutMs: 15000 })
    assert.equal(bySubject(e2e.sink, `now ${acct}`).length, 0, 'nothing held reached the sink yet')
    return queued
  }

  // The held messages reach the sink within RELEASE_MS of `since`, each once; the queue empties.
  async function assertReleased(srv: HarakaInstance, acct: string, queued: string[], since: number): Promise<void> {
    const delivered = await waitSubjects(e2e.sink, `now ${acct}`, queued.length, { timeoutMs: RELEASE_MS })
    const took = Date.now() - since
    assert.ok(took <= RELEASE_MS, `released in ${took} ms`)
    await waitQueueEmpty(srv, { timeoutMs: 15000, intervalMs: 50 })
    assert.deepEqual(delivered.map((m) => m.subject).sort(), [...queued].sort(), 'each held message once')
    assert.equal(bySubject(e2e.sink, `now ${acct}`).length, queued.length)
    assert.match(srv.log(), /retrying \d held message\(s\) of "[^"]+" now: it may have been enabled/)
  }

  for (const [store, nodes] of [
    ['redis', 0],
    ['redis', 2],
    ['memory', 0],
  ] as const) {
    it(`store = ${store}${nodes ? `, nodes = ${nodes}` : ''}: \`hijack-guard enable\` (another process) sends the held mail within 10 s`, async function () {
      const acct = `cli-${store}-${nodes}@test.example`
      const srv = await start(acct, store, nodes)
      const queued = await queueThenHold(srv, acct)
      const since = Date.now()
      const enabled = await cliOk(srv, ['enable', acct])
      assert.match(enabled.stdout, /3 held messages go out within seconds/)
      await assertReleased(srv, acct, queued, since)
    })
  }

  it("store = redis: the admin's reply to the alert sends the held mail within 10 s; the webhook hears enabled and held_released, each once", async function () {
    const hook = await startWebhookReceiver({ secret: 'held-secret' })
    e2e.cleanup(() => hook.close())
    const acct = 'reply-redis@test.example'
    const srv = await start(acct, 'redis', 0, hook)
    const queued = await queueThenHold(srv, acct)
    const alert = at(bySubject(e2e.sink, alertPrefix(acct)), 0, 'the alert')
    const since = Date.now()
    const reply = await replyToAlert(srv, alert, { user: ADMIN, pass: PW })
    assert.equal(reply.code, 250, JSON.stringify(reply))
    await assertReleased(srv, acct, queued, since)
    await waitUntil(() => hook.named('held_released').length >= queued.length, { message: 'held_released events' })
    const released = hook.named('held_released')
    assert.equal(released.length, queued.length, 'one event per held message')
    assert.equal(new Set(released.map((e) => e.payload.message)).size, queued.length, 'each message once')
    assert.ok(released.every((e) => e.verified && e.payload.account === acct))
    const enabled = hook.named('enabled')
    assert.deepEqual(
      enabled.map((e) => [e.payload.account, e.payload.via]),
      [[acct, 'reply']],
    )
  })

  it('store = memory: the reply to the alert sends the held mail within 10 s', async function () {
    const acct = 'reply-memory@test.example'
    const srv = await start(acct, 'memory')
    const queued = await queueThenHold(srv, acct)
    const alert = at(bySubject(e2e.sink, alertPrefix(acct)), 0, 'the alert')
    const since = Date.now()
    const reply = await replyToAlert(srv, alert, { user: ADMIN, pass: PW })
    assert.equal(reply.code, 250, JSON.stringify(reply))
    await assertReleased(srv, acct, queued, since)
  })
})
