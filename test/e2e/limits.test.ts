// End-to-end: the sending limits, the disable and its enforcement, with the real parts
// (a Haraka 3.3.4 process with the packed plugin installed by npm, redis-server, a nodemailer
// client speaking AUTH PLAIN over loopback, and a loopback SMTP sink as the outside world).
// See test/e2e/README.md.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  escapeRegExp,
  freePort,
  openSession,
  sendOne,
  tryAuth,
  waitUntil,
  type RedisServer,
  type SendResult,
} from '../../support'
import {
  assert250,
  assert535,
  assert550,
  bySubject,
  countMatches,
  countsKey,
  disabledKey,
  pluginIni,
  preauthName,
  redisNowMs,
  waitQueueEmpty,
  waitSubjects,
  e2eWorld,
} from './helpers'

const PW = 'pw'
const OUT = 'bob@outside.example'

const disabledLine = (account: string): RegExp =>
  new RegExp(`ACCOUNT DISABLED ${escapeRegExp(JSON.stringify(account))}: `)

/**
 * { index: count } of the message buckets of one account's counts hash for one bucket size: the
 * slots of its messages series (docs/store.md, "Counters"), each named by the bucket index it
 * holds (the series' newest bucket, field `<series>@`, tells which).
 */
async function messageBuckets(redis: RedisServer, account: string, bucketMs: number): Promise<Record<number, number>> {
  const hash = await (await redis.client()).hGetAll(countsKey(account))
  const out: Record<number, number> = {}
  for (const [field, value] of Object.entries(hash)) {
    const m = /^m(\d+)x(\d+)\.(\d+)$/.exec(field)
    if (!m || Number(m[1]) !== bucketMs) continue
    const buckets = Number(m[2])
    const last = Number(hash[`m${m[1]}x${m[2]}@`])
    const index = last - (((((last % buckets) - Number(m[3])) % buckets) + buckets) % buckets)
    out[index] = Number(value)
  }
  return out
}

const sum = (obj: Record<number, number>): number => Object.values(obj).reduce((a, b) => a + b, 0)

/** The value of fn() and how long it took, in ms. */
async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = process.hrtime.bigint()
  const value = await fn()
  return { value, ms: Number(process.hrtime.bigint() - t0) / 1e6 }
}

describe('e2e: sending limits', function () {
  this.timeout(60000)

  // every instance: test_preauth before the auth plugin; not started (the tests start it).
  // The suite's Redis is shared; tests that stop Redis start their own (extraRedis).
  const e2e = e2eWorld({ beforePlugins: ['test_preauth'], start: false })
  const { haraka, extraRedis } = e2e

  // -------------------------------------------------------------------------------------------
  // 1

  it('messages = 20/1m: 20 accepted, the 21st refused 550 5.7.1, then MAIL FROM 550 5.7.1 + hang-up and AUTH 535 5.7.8; another account keeps sending', async function () {
    const alice = 'alice@test.example'
    const bob = 'bob@test.example'
    const srv = await haraka({
      users: { [alice]: PW, [bob]: PW },
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 20/1m\nrecipients = 0' }),
    })
    await srv.start()
    const port = srv.port

    // logged in before the flag is set, then idle
    const idle = await openSession({ port, user: alice, pass: PW })
    const s = await openSession({ port, user: alice, pass: PW })

    // bob sends all along
    const bobRun = (async () => {
      const bs = await openSession({ port, user: bob, pass: PW })
      const rs: SendResult[] = []
      for (let i = 1; i <= 10; i++) rs.push(await bs.send({ from: bob, to: [OUT], subject: `s1 bob ${i}` }))
      await bs.close()
      return rs
    })()
    bobRun.catch(() => undefined) // awaited below; no unhandled rejection if alice's part fails first

    for (let i = 1; i <= 20; i++) {
      assert250(await s.send({ from: alice, to: [OUT], subject: `s1 alice ${i}` }), `alice message ${i}`)
    }
    const r21 = await s.send({ from: alice, to: [OUT], subject: 's1 alice 21' })
    assert550(r21, 'data', 'the 21st message')
    assert.match(r21.response, /reached its limit of 20 messages in 1 minute/)
    assert.match(r21.response, /contact postmaster@test\.example/)

    for (const [i, r] of (await bobRun).entries()) assert250(r, `bob message ${i + 1} while alice hits her limit`)

    // the same session: next MAIL FROM is refused and the server hangs up
    const r22 = await s.send({ from: alice, to: [OUT], subject: 's1 alice 22' })
    assert550(r22, 'mail', 'MAIL FROM in the session that went over')
    assert.match(r22.response, /is disabled/)
    await waitUntil(() => s.closed, { timeoutMs: 3000, message: 'server did not close the session' })

    // a session authenticated before the flag was set
    const r23 = await idle.send({ from: alice, to: [OUT], subject: 's1 alice 23' })
    assert550(r23, 'mail', 'MAIL FROM in a session authenticated before the disable')
    assert.match(r23.response, /is disabled/)
    await waitUntil(() => idle.closed, { timeoutMs: 3000, message: 'server did not close the idle session' })

    // a new session (an auth path the AUTH gate cannot see): MAIL FROM 550 5.7.1 and hang-up
    const fresh = await openSession({ port, name: preauthName(alice) })
    const r24 = await fresh.send({ from: alice, to: [OUT], subject: 's1 alice 24' })
    assert550(r24, 'mail', 'MAIL FROM in a new session')
    await waitUntil(() => fresh.closed, { timeoutMs: 3000, message: 'server did not close the new session' })

    // a fresh AUTH with the right password (bob sends meanwhile)
    const [auth, ...bobAfter] = await Promise.all([
      tryAuth({ port, user: alice, pass: PW }),
      ...[1, 2, 3].map((i) =>
        sendOne({ port, user: bob, pass: PW, from: bob, to: [OUT], subject: `s1 bob after ${i}` }),
      ),
    ])
    assert535(auth, 'AUTH of the disabled account')
    for (const r of bobAfter) assert250(r, 'bob after the disable')

    // the sink: alice's 20 and bob's 13, nothing else from alice
    assert.equal((await waitSubjects(e2e.sink, 's1 alice ', 20)).length, 20)
    assert.equal((await waitSubjects(e2e.sink, 's1 bob ', 13)).length, 13)
    await waitQueueEmpty(srv)
    const aliceSubjects = bySubject(e2e.sink, 's1 alice ')
      .map((m) => m.subject)
      .sort()
    assert.deepEqual(aliceSubjects, Array.from({ length: 20 }, (_, i) => `s1 alice ${i + 1}`).sort())
    assert.equal(bySubject(e2e.sink, 's1 bob ').length, 13)

    assert.equal(countMatches(srv.log(), disabledLine(alice)), 1, 'one ACCOUNT DISABLED line for alice')
    assert.equal(countMatches(srv.log(), /ACCOUNT DISABLED/), 1, 'no other account disabled')
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(alice)]), 1)
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(bob)]), 0)
    assert.ok(srv.alive())
  })

  // -------------------------------------------------------------------------------------------
  // 2

  it('20 parallel sessions of one account against messages = 50/1m: exactly 50 accepted, one flip', async function () {
    const carol = 'carol@test.example'
    const srv = await haraka({
      users: { [carol]: PW },
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 50/1m\nrecipients = 0' }),
    })
    await srv.start()
    const sessions = await Promise.all(
      Array.from({ length: 20 }, () => openSession({ port: srv.port, user: carol, pass: PW })),
    )
    const results = (
      await Promise.all(
        sessions.map(async (s, n) => {
          const rs: SendResult[] = []
          for (let i = 1; i <= 5 && !s.closed; i++) {
            const r = await s.send({ from: carol, to: [OUT], subject: `s2 ${n}.${i}` })
            rs.push(r)
            if (r.stage === 'mail') break // refused at MAIL FROM: the server hangs up
          }
          await s.close()
          return rs
        }),
      )
    ).flat()

    const accepted = results.filter((r) => r.code === 250)
    const refused = results.filter((r) => r.code !== 250)
    assert.equal(accepted.length, 50, `accepted ${accepted.length} of ${results.length}`)
    for (const r of refused) {
      assert.equal(r.code, 550, JSON.stringify(r))
      assert.match(r.response, /^550 5\.7\.1 /)
      assert.ok(r.stage === 'data' || r.stage === 'mail', JSON.stringify(r))
    }
    // exactly one message saw the limit (it flipped the flag); the rest saw a disabled account
    assert.equal(refused.filter((r) => /reached its limit of 50 messages/.test(r.response)).length, 1)
    assert.equal(refused.filter((r) => /is disabled/.test(r.response)).length, refused.length - 1)

    await srv.waitForLog(disabledLine(carol))
    assert.equal(countMatches(srv.log(), disabledLine(carol)), 1, 'one ACCOUNT DISABLED line (one flip)')
    assert.equal(await e2e.redis.command(['EXISTS', `hijack-guard:{${carol}}:disabled`]), 1)
    const fields = await (await e2e.redis.client()).hGetAll(`hijack-guard:{${carol}}:disabled`)
    assert.equal(fields.account, carol)
    assert.equal(fields.totals?.split(',')[0], '50', `totals ${fields.totals}: messages first`)

    assert.equal((await waitSubjects(e2e.sink, 's2 ', 50)).length, 50)
    await waitQueueEmpty(srv)
    assert.equal(bySubject(e2e.sink, 's2 ').length, 50)
  })

  // -------------------------------------------------------------------------------------------
  // 3

  it('recipients = 30/1m, no message limit, 10 recipients a message: 3 accepted, the 4th refused 550 5.7.1', async function () {
    const dave = 'dave@test.example'
    const srv = await haraka({
      users: { [dave]: PW },
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 0\nrecipients = 30/1m' }),
    })
    await srv.start()
    const to = Array.from({ length: 10 }, (_, i) => `r${i}@outside.example`)
    const s = await openSession({ port: srv.port, user: dave, pass: PW })
    for (let i = 1; i <= 3; i++) {
      const r = await s.send({ from: dave, to, subject: `s3 ${i}` })
      assert250(r, `message ${i}`)
      assert.equal(r.accepted?.length, 10)
    }
    const r4 = await s.send({ from: dave, to, subject: 's3 4' })
    assert550(r4, 'data', 'the 4th message (recipients 31-40)')
    assert.match(r4.response, /reached its limit of 30 recipients in 1 minute/)
    await s.close()

    const msgs = await waitSubjects(e2e.sink, 's3 ', 3)
    await waitQueueEmpty(srv)
    assert.deepEqual(
      bySubject(e2e.sink, 's3 ')
        .map((m) => m.subject)
        .sort(),
      ['s3 1', 's3 2', 's3 3'],
    )
    for (const m of msgs) assert.deepEqual([...m.to].sort(), [...to].sort())
    assert.equal(countMatches(srv.log(), disabledLine(dave)), 1)
    assert.match(
      srv.log(),
      /ACCOUNT DISABLED "dave@test\.example": reached recipients 30\/1m \(30 recipients in 1 minute\)/,
    )
  })

  // Every attempt that reaches queue_outbound counts, whatever a later plugin
  // answers. count_message runs on queue_outbound at priority -100, before any other
  // queue_outbound hook (a smarthost forwarder, qmail-queue, ...); when such a hook then refuses
  // the message (550 or 450), it may already have gone out to some recipients: it stays counted.
  it('a message refused by a later queue_outbound hook (550 or 450) still counts against the limit', async function () {
    const gina = 'gina@test.example'
    const srv = await haraka({
      users: { [gina]: PW },
      extraPlugins: ['test_refuse_queue'], // support/haraka-plugins: refuses by subject
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 2/1m\nrecipients = 0' }),
    })
    await srv.start()
    const s = await openSession({ port: srv.port, user: gina, pass: PW })
    const perm = await s.send({ from: gina, to: [OUT], subject: 's3b refuse-perm' })
    assert.equal(perm.code, 550, JSON.stringify(perm))
    assert.match(perm.response, /upstream refused it/)
    const temp = await s.send({ from: gina, to: [OUT], subject: 's3b refuse-temp' })
    assert.equal(temp.code, 450, JSON.stringify(temp))
    assert.match(temp.response, /upstream busy/)
    const counted = sum(await messageBuckets(e2e.redis, gina, 2000))
    // the two refused messages used up the window: the next one goes over the limit
    const next = await s.send({ from: gina, to: [OUT], subject: 's3b 1' })
    await s.close()
    assert.deepEqual(
      { counted, next: next.code },
      { counted: 2, next: 550 },
      `the 2 refused messages counted ${counted} in Redis; then: ${next.response}`,
    )
    assert.match(next.response, /reached its limit of 2 messages/)
    assert.equal(countMatches(srv.log(), disabledLine(gina)), 1)
    assert.deepEqual(bySubject(e2e.sink, 's3b '), [])
  })

  // -------------------------------------------------------------------------------------------
  // 4

  for (const store of ['redis', 'memory'] as const) {
    it(`store = ${store}: a disabled account is still refused after Haraka restarts (AUTH 535 5.7.8, MAIL FROM 550 5.7.1)`, async function () {
      const erin = 'erin@test.example'
      const frank = 'frank@test.example'
      const limits = 'messages = 2/1m\nrecipients = 0'
      const ini = pluginIni(store === 'redis' ? e2e.redis.port : null, { store, limits })
      const srv = await haraka({ users: { [erin]: PW, [frank]: PW }, pluginIni: ini })
      await srv.start()
      const s = await openSession({ port: srv.port, user: erin, pass: PW })
      assert250(await s.send({ from: erin, to: [OUT], subject: `s4 ${store} 1` }), 'message 1')
      assert250(await s.send({ from: erin, to: [OUT], subject: `s4 ${store} 2` }), 'message 2')
      assert550(await s.send({ from: erin, to: [OUT], subject: `s4 ${store} 3` }), 'data', 'message 3')
      await s.close()
      assert250(
        await sendOne({
          port: srv.port,
          user: frank,
          pass: PW,
          from: frank,
          to: [OUT],
          subject: `s4 ${store} frank before`,
        }),
        'frank',
      )

      if (store === 'memory') {
        const file = path.join(srv.dir, 'hijack-guard.state.json')
        assert.ok(fs.existsSync(file), `${file} exists`)
        const state = JSON.parse(fs.readFileSync(file, 'utf8')) as { disabled: Record<string, unknown> }
        assert.ok(Object.keys(state.disabled).includes(erin), 'the state file holds erin')
      } else {
        assert.equal(await e2e.redis.command(['EXISTS', disabledKey(erin)]), 1)
      }

      // delivered and gone from the outbound queue before the restart (a queue file left behind
      // would be delivered again after it)
      await waitSubjects(e2e.sink, `s4 ${store} `, 3)
      await waitQueueEmpty(srv)
      const pid1 = srv.pid
      const mark = srv.logMark()
      await srv.restart()
      assert.notEqual(srv.pid, pid1)
      assert.ok(srv.log().slice(mark).includes('loading hijack-guard'))

      const [auth, mail, frankAfter] = await Promise.all([
        tryAuth({ port: srv.port, user: erin, pass: PW }),
        (async () => {
          const fresh = await openSession({ port: srv.port, name: preauthName(erin) })
          const r = await fresh.send({ from: erin, to: [OUT], subject: `s4 ${store} after` })
          await waitUntil(() => fresh.closed, { timeoutMs: 3000, message: 'server did not close the session' })
          return r
        })(),
        sendOne({ port: srv.port, user: frank, pass: PW, from: frank, to: [OUT], subject: `s4 ${store} frank after` }),
      ])
      assert535(auth, 'AUTH after the restart')
      assert550(mail, 'mail', 'MAIL FROM after the restart')
      assert.match(mail.response, /is disabled/)
      assert250(frankAfter, 'another account after the restart')
      assert.match(srv.log().slice(mark), /refusing AUTH of disabled account "erin@test\.example"/)
      assert.match(srv.log().slice(mark), /refusing MAIL FROM of disabled account "erin@test\.example"/)

      await waitSubjects(e2e.sink, `s4 ${store} `, 4)
      await waitQueueEmpty(srv)
      assert.deepEqual(
        bySubject(e2e.sink, `s4 ${store} `)
          .map((m) => m.subject)
          .sort(),
        [`s4 ${store} 1`, `s4 ${store} 2`, `s4 ${store} frank after`, `s4 ${store} frank before`],
      )
    })
  }

  // -------------------------------------------------------------------------------------------
  // 5

  describe('when Redis fails', function () {
    const fast = 'fast@test.example' // on_store_error = open
    const shut = 'shut@test.example' // on_store_error = closed
    const users = { [fast]: PW, [shut]: PW }
    const BOUND_MS = 3000 // store_timeout 1 s plus margin
    const ini = (port: number, policy: 'open' | 'closed', limits = 'messages = 5/1m\nrecipients = 0'): string =>
      pluginIni(port, { limits, main: `on_store_error = ${policy}\nstore_timeout = 1s` })
    const sendFast = (port: number, subject: string): Promise<SendResult> =>
      sendOne({ port, user: fast, pass: PW, from: fast, to: [OUT], subject })
    const sendShut = (port: number, subject: string): Promise<SendResult> =>
      sendOne({ port, user: shut, pass: PW, from: shut, to: [OUT], subject })

    it('stopped mid-run: open relays within store_timeout, closed answers 451 4.3.0, counting resumes when Redis returns', async function () {
      const own = await extraRedis()
      const open = await haraka({ users, pluginIni: ini(own.port, 'open') })
      const closed = await haraka({ users, pluginIni: ini(own.port, 'closed') })
      await Promise.all([open.start(), closed.start()])

      assert250(await sendFast(open.port, 's5a up 1'), 'open, Redis up')
      assert250(await sendFast(open.port, 's5a up 2'), 'open, Redis up')
      assert250(await sendShut(closed.port, 's5a up 3'), 'closed, Redis up')
      assert.equal(sum(await messageBuckets(own, fast, 2000)), 2, 'counted while Redis is up')

      const marks = [open.logMark(), closed.logMark()] as const
      await own.stop()

      // open: every message relayed, each within the bound (new session: connect, AUTH, MAIL, DATA)
      const times: number[] = []
      for (let i = 1; i <= 6; i++) {
        const { value: r, ms } = await timed(() => sendFast(open.port, `s5a down ${i}`))
        times.push(Math.round(ms))
        assert250(r, `open policy, Redis down, message ${i}`)
        assert.ok(ms < BOUND_MS, `message ${i} took ${ms} ms`)
      }
      // closed: 451 4.3.0 at MAIL FROM
      const { value: r451, ms: ms451 } = await timed(() => sendShut(closed.port, 's5a down closed'))
      assert.equal(r451.stage, 'mail', JSON.stringify(r451))
      assert.equal(r451.code, 451, JSON.stringify(r451))
      assert.match(r451.response, /^451 4\.3\.0 /)
      assert.ok(ms451 < BOUND_MS, `451 took ${ms451} ms`)
      console.log(
        `      [measured] Redis stopped: open-policy send times (connect+AUTH+MAIL+DATA) ms: ${times.join(', ')}; closed-policy 451 after ${Math.round(ms451)} ms`,
      )

      assert.ok(open.alive() && closed.alive(), 'Haraka stays up')
      assert.equal((await tryAuth({ port: open.port, user: fast, pass: PW })).code, 235, 'Haraka still answers')
      // the first failure of the outage is logged at ERROR, the rest are counted for a summary
      assert.equal(countMatches(open.log().slice(marks[0]), /\[ERROR\].*store unavailable/), 1)
      assert.match(closed.log().slice(marks[1]), /\[ERROR\].*store unavailable at /)
      assert.doesNotMatch(open.log() + closed.log(), /Unhandled|unhandledRejection|Caught exception/)
      await waitSubjects(e2e.sink, 's5a down ', 6)

      // Redis back on the same port (empty: no persistence): counting resumes, no Haraka restart
      const pids = [open.pid, closed.pid]
      const back = [open.logMark(), closed.logMark()] as const
      const t0 = Date.now()
      await own.start()
      await Promise.all([
        open.waitForLog(/connected again/, { since: back[0], timeoutMs: 5000 }),
        closed.waitForLog(/connected again/, { since: back[1], timeoutMs: 5000 }),
      ])
      console.log(`      [measured] reconnected ${Date.now() - t0} ms after redis-server was started again`)
      assert.deepEqual([open.pid, closed.pid], pids)

      assert250(await sendShut(closed.port, 's5a back closed'), 'closed policy, Redis back')
      const s = await openSession({ port: open.port, user: fast, pass: PW })
      for (let i = 1; i <= 5; i++) {
        assert250(await s.send({ from: fast, to: [OUT], subject: `s5a back ${i}` }), `Redis back, message ${i}`)
      }
      assert550(await s.send({ from: fast, to: [OUT], subject: 's5a back 6' }), 'data', 'Redis back, message 6')
      await s.close()
      assert.equal(countMatches(open.log(), disabledLine(fast)), 1)
      assert.equal(await own.command(['EXISTS', disabledKey(fast)]), 1)
    })

    it('frozen (SIGSTOP): open relays after one store_timeout and then fails fast; closed answers 451 4.3.0; counting resumes on thaw', async function () {
      const own = await extraRedis()
      const open = await haraka({ users, pluginIni: ini(own.port, 'open') })
      const closed = await haraka({ users, pluginIni: ini(own.port, 'closed') })
      await Promise.all([open.start(), closed.start()])
      // already logged in when Redis freezes
      const s = await openSession({ port: open.port, user: fast, pass: PW })
      assert250(await s.send({ from: fast, to: [OUT], subject: 's5b up' }), 'Redis up')

      own.pause()
      try {
        // the closed-policy instance is checked side by side
        const closedRun = timed(() => sendShut(closed.port, 's5b frozen closed'))
        const inSession: number[] = []
        for (let i = 1; i <= 2; i++) {
          const { value: r, ms } = await timed(() =>
            s.send({ from: fast, to: [OUT], subject: `s5b frozen session ${i}` }),
          )
          inSession.push(Math.round(ms))
          assert250(r, `frozen Redis, open session, message ${i}`)
        }
        const { value: r1, ms: msNew } = await timed(() => sendFast(open.port, 's5b frozen new'))
        assert250(r1, 'frozen Redis, new session')
        const { value: r451, ms: ms451 } = await closedRun
        console.log(
          `      [measured] Redis frozen: open policy, message in an open session (MAIL+DATA) ms: ${inSession.join(', ')}; new session (AUTH+MAIL+DATA) ${Math.round(msNew)} ms; closed-policy 451 after ${Math.round(ms451)} ms`,
        )
        assert.equal(r451.code, 451, JSON.stringify(r451))
        assert.equal(r451.stage, 'mail')
        assert.match(r451.response, /^451 4\.3\.0 /)
        for (const ms of inSession)
          assert.ok(ms < BOUND_MS, `a message took ${ms} ms with Redis frozen (bound ${BOUND_MS})`)
        assert.ok(ms451 < BOUND_MS, `451 took ${ms451} ms`)
        // the first call that timed out makes every later one fail at once: no further waits
        assert.ok(msNew < BOUND_MS, `new session took ${msNew} ms`)
        assert.match(open.log(), /no answer within 1000 ms/)
        assert.ok(open.alive() && closed.alive())
      } finally {
        own.resume()
      }
      await s.close()
      // The first frozen message's MAIL FROM was answered from the disable-record cache, so the
      // first call that timed out was its record script: it was sent, and Redis ran it when it
      // thawed. After that call the store fails fast until Redis answers a PING again, so the
      // later messages of the freeze were never sent to Redis: two messages are counted, the one
      // from before the freeze and that one. Once Redis answers, counting resumes.
      assert.equal(countMatches(open.log(), /failing fast until it answers a PING/), 1)
      await open.waitForLog(/answering again after \d+ ms/, { timeoutMs: 5000 })
      assert.equal(sum(await messageBuckets(own, fast, 2000)), 2)
      const s2 = await openSession({ port: open.port, user: fast, pass: PW })
      for (let i = 3; i <= 5; i++) {
        assert250(await s2.send({ from: fast, to: [OUT], subject: `s5b thawed ${i}` }), `after the thaw, ${i} of 5`)
      }
      assert550(await s2.send({ from: fast, to: [OUT], subject: 's5b thawed 6' }), 'data', 'after the thaw, 6 of 5')
      await s2.close()
      assert.equal(countMatches(open.log(), disabledLine(fast)), 1)
    })

    it('Haraka started while Redis is down starts, answers and relays (open); when Redis starts, counting works', async function () {
      const port = await freePort()
      const srv = await haraka({ users, pluginIni: ini(port, 'open', 'messages = 3/1m\nrecipients = 0') })
      await srv.start()
      console.log(`      [measured] Haraka answered 220 ${srv.startMs} ms after spawn with Redis down`)
      assert.ok(srv.alive())
      const { value: r, ms } = await timed(() => sendFast(srv.port, 's5c down'))
      assert250(r, 'relayed with Redis down')
      assert.ok(ms < BOUND_MS, `took ${ms} ms`)
      await waitSubjects(e2e.sink, 's5c down', 1)
      assert.match(srv.log(), /\[ERROR\].*store unavailable at /)

      const mark = srv.logMark()
      const own = await extraRedis({ port })
      const t0 = Date.now()
      await srv.waitForLog(/connected again/, { since: mark, timeoutMs: 5000 })
      console.log(`      [measured] first connect ${Date.now() - t0} ms after redis-server answered PING`)
      const s = await openSession({ port: srv.port, user: fast, pass: PW })
      for (let i = 1; i <= 3; i++) {
        assert250(await s.send({ from: fast, to: [OUT], subject: `s5c up ${i}` }), `Redis up, message ${i}`)
      }
      assert550(await s.send({ from: fast, to: [OUT], subject: 's5c up 4' }), 'data', 'Redis up, message 4')
      await s.close()
      assert.equal(await own.command(['EXISTS', disabledKey(fast)]), 1)
      assert.ok(srv.alive())
    })
  })

  // -------------------------------------------------------------------------------------------
  // 6

  it('odd logins ({ } : spaces, unicode, 300 characters) are counted and disabled independently', async function () {
    // disabled one after the other; pairs that a sloppy key scheme would merge
    // (logins are lower-cased by default, so no upper-case letters here)
    const odd = ['a', 'a{b}', 'a:b', 'a b', 'a%20b', 'a}:{b', 'üñ日本 ☃', 'x'.repeat(300)]
    // never go over; would be pushed over or disabled by any cross-talk
    const calm = ['{a}', 'a:b:disabled', 'b', 'x'.repeat(299)]
    const srv = await haraka({
      auth: 'any',
      lineLength: 4096,
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 2/1m\nrecipients = 0' }),
    })
    await srv.start()
    const port = srv.port
    const send = (user: string, subject: string): Promise<SendResult> =>
      sendOne({ port, user, pass: 'secret', from: 'odd@test.example', to: [OUT], subject })

    // every login sends one
    const first = await Promise.all(
      [...odd, ...calm].map(async (user, i) => ({ user, r: await send(user, `s6 first ${i}`) })),
    )
    for (const { user, r } of first) assert250(r, `first message of ${JSON.stringify(user)}`)
    // the odd ones send their second
    for (const [i, u] of odd.entries())
      assert250(await send(u, `s6 second ${i}`), `second message of ${JSON.stringify(u)}`)
    // one by one, each goes over on its own (the text says it reached its limit, not that it
    // was disabled already: no other login's disable reached it)
    for (const [i, u] of odd.entries()) {
      const r = await send(u, `s6 third ${i}`)
      assert550(r, 'data', `third message of ${JSON.stringify(u)}`)
      assert.match(r.response, /reached its limit of 2 messages in 1 minute/, `third message of ${JSON.stringify(u)}`)
      // (the reply shows the login; non-ASCII ones: see the US-ASCII test below)
      if (/^[\x20-\x7e]{1,60}$/.test(u)) assert.ok(r.response.includes(`Account ${u} `), r.response)
    }
    // the calm ones still send (their second: 2 of 2)
    for (const [i, u] of calm.entries()) assert250(await send(u, `s6 calm ${i}`), `calm login ${JSON.stringify(u)}`)

    // AUTH: every odd login refused, every calm one accepted (side by side: 535 waits 1 s)
    const auth = async (user: string) => ({ user, r: await tryAuth({ port, user, pass: 'secret' }) })
    const [oddAuths, calmAuths] = await Promise.all([Promise.all(odd.map(auth)), Promise.all(calm.map(auth))])
    for (const { user, r } of oddAuths) assert535(r, `AUTH ${JSON.stringify(user)}`)
    for (const { user, r } of calmAuths) assert.equal(r.code, 235, `AUTH ${JSON.stringify(user)}: ${r.response}`)

    for (const u of odd) {
      assert.equal(countMatches(srv.log(), disabledLine(u)), 1, `one ACCOUNT DISABLED line for ${JSON.stringify(u)}`)
    }
    assert.equal(countMatches(srv.log(), /ACCOUNT DISABLED/), odd.length)
    const keys = await e2e.redis.keys('hijack-guard:*:disabled')
    assert.deepEqual(keys, odd.map(disabledKey).sort())
    for (const u of calm)
      assert.equal(sum(await messageBuckets(e2e.redis, u, 2000)), 2, `counts of ${JSON.stringify(u)}`)

    await waitSubjects(e2e.sink, 's6 ', 2 * (odd.length + calm.length))
    await waitQueueEmpty(srv)
    assert.equal(bySubject(e2e.sink, 's6 third').length, 0)
    assert.ok(srv.alive())
  })

  // RFC 5321 4.2: reply text is printable US-ASCII (HT, SP, %d33-126); SMTPUTF8 is not offered,
  // so a non-ASCII login must be escaped in the 550 and 535 texts.
  it('the 550 5.7.1 and 535 5.7.8 texts stay US-ASCII for a non-ASCII login', async function () {
    const login = 'jürgen@test.example'
    const srv = await haraka({
      auth: 'any',
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 1/1m\nrecipients = 0' }),
    })
    await srv.start()
    const s = await openSession({ port: srv.port, user: login, pass: 'secret' })
    assert250(await s.send({ from: 'odd@test.example', to: [OUT], subject: 's6u 1' }), 'message 1')
    const over = await s.send({ from: 'odd@test.example', to: [OUT], subject: 's6u 2' })
    await s.close()
    assert550(over, 'data', 'message 2')
    const auth = await tryAuth({ port: srv.port, user: login, pass: 'secret' })
    assert535(auth, 'AUTH')
    // nodemailer decodes replies byte by byte ('binary'), so each char here is one byte on the wire
    const nonAscii = (text: string): string =>
      [...text]
        .filter((c) => c.charCodeAt(0) > 0x7e)
        .map((c) => c.charCodeAt(0).toString(16))
        .join(' ')
    assert.equal(nonAscii(over.response), '', `550 reply has 8-bit bytes: ${JSON.stringify(over.response)}`)
    assert.equal(nonAscii(auth.response), '', `535 reply has 8-bit bytes: ${JSON.stringify(auth.response)}`)
  })

  // -------------------------------------------------------------------------------------------
  // 7

  it('windows slide: messages = 3/4s in 4 buckets', async function () {
    this.timeout(30000)
    const BUCKET = 1000
    const [slide, gap, ctl] = ['slide@test.example', 'gap@test.example', 'ctl@test.example']
    const srv = await haraka({
      users: { [slide]: PW, [gap]: PW, [ctl]: PW },
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 3/4s\nrecipients = 0\nbuckets = 4' }),
    })
    await srv.start()
    const port = srv.port
    const send = (user: string, subject: string): Promise<SendResult> =>
      sendOne({ port, user, pass: PW, from: user, to: [OUT], subject })
    const bucketNow = async (): Promise<number> => Math.floor((await redisNowMs(e2e.redis)) / BUCKET)
    const waitBucket = (n: number): Promise<true> =>
      waitUntil(async () => (await bucketNow()) >= n, {
        timeoutMs: 10000,
        intervalMs: 20,
        message: `Redis clock in bucket ${n}`,
      })

    // the limit is live: a control account's 4th message in the window is refused
    const whole = (async () => {
      for (let i = 1; i <= 3; i++) assert250(await send(slide, `s7 slide ${i}`), `slide ${i}`)
      const b = await messageBuckets(e2e.redis, slide, BUCKET)
      assert.equal(sum(b), 3, `counted in 1 s buckets: ${JSON.stringify(b)}`)
      // wait (bounded) until every bucket holding them has left the window
      await waitBucket(Math.max(...Object.keys(b).map(Number)) + 4)
      for (let i = 4; i <= 6; i++) assert250(await send(slide, `s7 slide ${i}`), `slide ${i}, after the window passed`)
    })()

    // partial slide: 1 message at b0, 2 at b1 >= b0 + 2; when b0 has left the window but b1 has
    // not, exactly one more fits (a fixed window that resets would take 3, no sliding none)
    const partial = (async () => {
      assert250(await send(gap, 's7 gap 1'), 'gap 1')
      const b0 = Number(Object.keys(await messageBuckets(e2e.redis, gap, BUCKET))[0])
      await waitBucket(b0 + 2)
      assert250(await send(gap, 's7 gap 2'), 'gap 2')
      assert250(await send(gap, 's7 gap 3'), 'gap 3')
      const later = Object.keys(await messageBuckets(e2e.redis, gap, BUCKET))
        .map(Number)
        .filter((b) => b !== b0)
      const b1 = Math.min(...later)
      assert.ok(b1 >= b0 + 2, `later bucket ${b1} vs first ${b0}`)
      await waitBucket(b0 + 4)
      const r4 = await send(gap, 's7 gap 4')
      const r5 = await send(gap, 's7 gap 5')
      const end = await bucketNow()
      assert.ok(end <= b1 + 3, `timing: the check ran in bucket ${end}, after bucket ${b1} left the window too; rerun`)
      assert250(r4, 'gap 4: the first bucket slid out of the window')
      assert550(r5, 'data', 'gap 5: the later buckets are still inside the window')
    })()

    const control = (async () => {
      for (let i = 1; i <= 3; i++) assert250(await send(ctl, `s7 ctl ${i}`), `ctl ${i}`)
      assert550(await send(ctl, 's7 ctl 4'), 'data', 'ctl 4 inside the window')
    })()

    await Promise.all([whole, partial, control])
    assert.equal(countMatches(srv.log(), disabledLine(slide)), 0)
    assert.equal(countMatches(srv.log(), disabledLine(gap)), 1)
    assert.equal(countMatches(srv.log(), disabledLine(ctl)), 1)
  })

  // -------------------------------------------------------------------------------------------
  // 8

  it('mode = monitor: 6 messages against 3/1m all accepted, nothing disabled, one monitor mode log line', async function () {
    const mon = 'mon@test.example'
    const srv = await haraka({
      users: { [mon]: PW },
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 3/1m\nrecipients = 0', main: 'mode = monitor' }),
    })
    await srv.start()
    const s = await openSession({ port: srv.port, user: mon, pass: PW })
    for (let i = 1; i <= 6; i++) {
      assert250(await s.send({ from: mon, to: [OUT], subject: `s8 ${i}` }), `monitor message ${i}`)
    }
    await s.close()
    assert.equal((await tryAuth({ port: srv.port, user: mon, pass: PW })).code, 235, 'AUTH still accepted')
    assert250(
      await sendOne({ port: srv.port, user: mon, pass: PW, from: mon, to: [OUT], subject: 's8 7' }),
      'a new session',
    )

    assert.equal((await waitSubjects(e2e.sink, 's8 ', 7)).length, 7)
    await srv.waitForLog(/monitor mode/)
    assert.equal(countMatches(srv.log(), /monitor mode/), 1, 'one "monitor mode" line')
    assert.match(
      srv.log(),
      /monitor mode: account "mon@test\.example" went over messages 3\/1m \(4 messages in 1 minute\)/,
    )
    assert.equal(countMatches(srv.log(), /ACCOUNT DISABLED/), 0)
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(mon)]), 0)
    assert.equal(sum(await messageBuckets(e2e.redis, mon, 2000)), 7, 'every message counted')
  })

  // -------------------------------------------------------------------------------------------
  // 9

  it('a bad value (messages = abc) stops Haraka at startup, naming the file, the key and the value', async function () {
    const srv = await haraka({ users: {}, pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = abc' }) })
    await assert.rejects(srv.start({ timeoutMs: 10000 }), /haraka exited during startup/)
    assert.ok(!srv.alive())
    assert.equal(srv.crashed, true)
    assert.notEqual(srv.exitCode, 0, `exit code ${srv.exitCode}`)
    assert.notEqual(srv.exitCode, null)
    const line = srv
      .log()
      .split('\n')
      .find((l) => l.includes('limits.messages'))
    assert.ok(line, 'a log line names limits.messages')
    assert.match(line, /hijack-guard\.ini/)
    assert.match(line, /abc/)
    assert.doesNotMatch(srv.log(), /Listening on/)
  })

  it('store = memory with nodes = 2 refuses to start', async function () {
    const srv = await haraka({ users: {}, nodes: 2, pluginIni: '[main]\nstore = memory\n' })
    await assert.rejects(srv.start({ timeoutMs: 10000 }), /haraka exited during startup/)
    assert.ok(!srv.alive())
    assert.notEqual(srv.exitCode, 0, `exit code ${srv.exitCode}`)
    assert.notEqual(srv.exitCode, null)
    const line = srv
      .log()
      .split('\n')
      .find((l) => l.includes('main.store'))
    assert.ok(line, 'a log line names main.store')
    assert.match(line, /hijack-guard\.ini/)
    assert.match(line, /memory/)
    assert.match(line, /nodes = 2/)
    assert.doesNotMatch(srv.log(), /Listening on/)
  })
})
