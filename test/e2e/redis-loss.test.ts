// End-to-end: a Redis that loses its data (issue 8 item 6) with the real parts: a Haraka 3.3.4
// process with the packed plugin installed by npm, a redis-server WITHOUT persistence (restarted
// on the same port, or FLUSHALL), a nodemailer client speaking AUTH PLAIN over loopback, a
// loopback SMTP sink. A disabled account must stay disabled through the loss; only an admin's
// enable makes it send again. See docs/store.md (the journal) and test/e2e/README.md.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  escapeRegExp,
  openSession,
  sendOne,
  tryAuth,
  waitUntil,
  type HarakaInstance,
  type RedisServer,
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
  waitSubjects,
  type PluginIniOptions,
  e2eWorld,
  cliOk,
  RETRYING_OUTBOUND,
} from './helpers'

const PW = 'pw'
const OUT = 'bob@outside.example'

const REASSERTED = (account: string): RegExp =>
  new RegExp(`\\[WARN\\].*re-asserted disabled flag of ${escapeRegExp(JSON.stringify(account))} lost by Redis`)

// The plugin's ini with [redis] journal_check (how often the journal is compared with Redis).
function lossIni(
  redisPort: number,
  { journalCheck, ...opts }: PluginIniOptions & { journalCheck?: string } = {},
): string {
  const ini = pluginIni(redisPort, { limits: 'messages = 3/1m\nrecipients = 0', ...opts })
  return journalCheck ? ini.replace(`port = ${redisPort}`, `port = ${redisPort}\njournal_check = ${journalCheck}`) : ini
}

/** The server's run_id (INFO server): a new one for every redis-server process. */
async function redisRunId(redis: RedisServer): Promise<string> {
  const info = String(await redis.command(['INFO', 'server']))
  const m = /^run_id:(\w+)/m.exec(info)
  assert.ok(m?.[1], `no run_id in INFO server:\n${info}`)
  return m[1]
}

/** The accounts in the instance's journal file; none when it is missing or unreadable. */
function journalAccounts(srv: HarakaInstance): string[] {
  let journal: unknown
  try {
    journal = JSON.parse(fs.readFileSync(path.join(srv.dir, 'hijack-guard.journal.json'), 'utf8'))
  } catch {
    return []
  }
  if (journal === null || typeof journal !== 'object' || !('accounts' in journal)) return []
  const { accounts } = journal
  return accounts !== null && typeof accounts === 'object' ? Object.keys(accounts) : []
}

describe('e2e: a Redis that loses its data', function () {
  this.timeout(60000)

  // every instance: test_preauth before the auth plugin; started. The suite's Redis has no
  // persistence; a test that stopped it finds it started again in the next test.
  const e2e = e2eWorld({ beforePlugins: ['test_preauth'] })
  const { haraka } = e2e

  // Sends 3 messages (250) and a 4th (550 5.7.1): the account is disabled. -> accepted subjects
  async function trip(srv: HarakaInstance, account: string, tag = 'm'): Promise<string[]> {
    const s = await openSession({ port: srv.port, user: account, pass: PW })
    const accepted: string[] = []
    for (let i = 1; i <= 4; i++) {
      const subject = `${tag} ${account} ${i}`
      const r = await s.send({ from: account, to: [OUT], subject })
      if (i <= 3) {
        assert250(r, `${account} message ${i}`)
        accepted.push(subject)
      } else {
        assert550(r, 'data', `${account} message ${i} goes over`)
      }
    }
    await s.close()
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(account)]), 1)
    return accepted
  }

  // AUTH 535 5.7.8, and MAIL FROM 550 5.7.1 on a path the AUTH gate cannot see.
  async function assertRefused(srv: HarakaInstance, account: string, what: string): Promise<void> {
    assert535(await tryAuth({ port: srv.port, user: account, pass: PW }), `${what}: AUTH`)
    const s = await openSession({ port: srv.port, name: preauthName(account) })
    assert550(
      await s.send({ from: account, to: [OUT], subject: `${what} after the loss` }),
      'mail',
      `${what}: MAIL FROM`,
    )
    await s.close()
  }

  it('a restart of redis-server without persistence: the account is still refused at AUTH (535) and MAIL FROM (550), and the flag is back in Redis', async function () {
    const acct = 'restart@test.example'
    const srv = await haraka({ users: { [acct]: PW }, pluginIni: lossIni(e2e.redis.port) })
    await trip(srv, acct)
    assert.deepEqual(journalAccounts(srv), [acct], 'the journal holds the disable')
    assert.equal(await e2e.redis.command(['EXISTS', countsKey(acct)]), 1, 'the counts are in Redis before the restart')
    const runIdBefore = await redisRunId(e2e.redis)
    await e2e.redis.restart()
    // The plugin reconnects and re-asserts at once, so DBSIZE may not be 0 even now: the loss shows
    // as a new server process and the counts (which no journal restores) gone.
    assert.notEqual(await redisRunId(e2e.redis), runIdBefore, 'a new redis-server process')
    assert.equal(await e2e.redis.command(['EXISTS', countsKey(acct)]), 0, 'the restart lost the counts')
    await srv.waitForLog(REASSERTED(acct), { timeoutMs: 10000 })
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(acct)]), 1, 'the flag is back in Redis')
    await assertRefused(srv, acct, 'after the restart')
    assert.match(srv.log(), /run_id \w+ -> \w+/)
    assert.equal(bySubject(e2e.sink, 'after the restart').length, 0)
    assert.ok(srv.alive())
  })

  it('FLUSHALL: the next AUTH finds the account disabled again (535), MAIL FROM 550, the flag is back', async function () {
    const acct = 'flush@test.example'
    const srv = await haraka({ users: { [acct]: PW }, pluginIni: lossIni(e2e.redis.port) })
    await trip(srv, acct)
    await e2e.redis.flushall()
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(acct)]), 0)
    // no reconnect and no timer (journal_check 60 s): the AUTH's own lookup re-asserts
    assert535(await tryAuth({ port: srv.port, user: acct, pass: PW }), 'AUTH after FLUSHALL')
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(acct)]), 1, 'the flag is back in Redis')
    assert.equal(countMatches(srv.log(), REASSERTED(acct)), 1)
    await assertRefused(srv, acct, 'after FLUSHALL')
    assert.equal(bySubject(e2e.sink, 'after FLUSHALL').length, 0)
  })

  it('held mail stays held through FLUSHALL and goes out only after an enable', async function () {
    const acct = 'held@test.example'
    const srv = await haraka({
      users: { [acct]: PW },
      pluginIni: lossIni(e2e.redis.port, { held: 'retry = 1s' }),
      config: { 'outbound.ini': RETRYING_OUTBOUND },
    })
    e2e.sink.refuse(451)
    const queued = await trip(srv, acct, 'held')
    const holding = /holding queued mail of disabled account "held@test\.example"/
    await srv.waitForLog(holding, { count: queued.length, timeoutMs: 20000 })
    e2e.sink.accept()
    await e2e.redis.flushall()
    const mark = srv.logMark()
    // several retries after the loss: each one holds it again
    await srv.waitForLog(holding, { count: 3 * queued.length, since: mark, timeoutMs: 15000 })
    assert.equal(bySubject(e2e.sink, `held ${acct}`).length, 0, 'no held message left through the loss')
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(acct)]), 1)
    await cliOk(srv, ['enable', acct])
    const delivered = await waitSubjects(e2e.sink, `held ${acct}`, queued.length, { timeoutMs: 15000 })
    assert.deepEqual(delivered.map((m) => m.subject).sort(), [...queued].sort())
  })

  it('an admin enable with the CLI before the loss: after the loss the account stays enabled and sends', async function () {
    const acct = 'enabled@test.example'
    const srv = await haraka({ users: { [acct]: PW }, pluginIni: lossIni(e2e.redis.port, { journalCheck: '1s' }) })
    await trip(srv, acct)
    await cliOk(srv, ['enable', acct])
    // no mail in between: the periodic check finds the tombstone of the enable and forgets it
    await srv.waitForLog(/journal: "enabled@test\.example" was enabled since incident/, { timeoutMs: 10000 })
    assert.deepEqual(journalAccounts(srv), [])
    await e2e.redis.restart()
    await srv.waitForLog(/run_id \w+ -> \w+/, { timeoutMs: 10000 })
    await waitUntil(
      async () => {
        const r = await sendOne({
          port: srv.port,
          user: acct,
          pass: PW,
          from: acct,
          to: [OUT],
          subject: 'enabled after the loss',
        })
        return r.code === 250
      },
      { timeoutMs: 10000, intervalMs: 200, message: 'the enabled account cannot send after the loss' },
    )
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(acct)]), 0)
    assert.equal(countMatches(srv.log(), REASSERTED(acct)), 0)
    await waitSubjects(e2e.sink, 'enabled after the loss', 1)
  })

  it('a second Haraka on the same Redis that never saw the disable refuses the account after the loss: the first re-asserted it', async function () {
    const acct = 'shared@test.example'
    const ini = lossIni(e2e.redis.port)
    const first = await haraka({ users: { [acct]: PW }, pluginIni: ini })
    const second = await haraka({ users: { [acct]: PW }, pluginIni: ini })
    await trip(first, acct)
    assert.deepEqual(journalAccounts(second), [], 'the second never saw it')
    await e2e.redis.restart()
    await first.waitForLog(REASSERTED(acct), { timeoutMs: 10000 })
    await assertRefused(second, acct, 'second server')
    assert.equal(countMatches(second.log(), REASSERTED(acct)), 0, 'the second had nothing to re-assert')
    assert.equal(bySubject(e2e.sink, 'second server').length, 0)
  })

  it('logs a WARN at startup naming the risk of a Redis that keeps nothing on disk', async function () {
    const srv = await haraka({ users: {}, pluginIni: lossIni(e2e.redis.port) })
    await srv.waitForLog(
      /\[WARN\].*Redis keeps nothing on disk \(appendonly no, save ""\): a restart loses every disabled flag/,
      { timeoutMs: 10000 },
    )
    const evicting = await e2e.extraRedis({ args: ['--maxmemory-policy', 'allkeys-lru'] })
    const other = await haraka({ users: {}, pluginIni: lossIni(evicting.port) })
    await other.waitForLog(/\[WARN\].*maxmemory-policy allkeys-lru lets Redis evict disabled flags/, {
      timeoutMs: 10000,
    })
  })
})
