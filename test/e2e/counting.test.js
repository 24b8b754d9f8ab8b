'use strict'

// End-to-end: what counts and what a client may send (issue 8, items 1 and 3), with the real
// parts: a Haraka 3.3.4 process with the packed plugin, redis-server, an SMTP client over
// loopback and a loopback sink. See test/e2e/README.md.
//
// 1. Every attempt that reaches queue_outbound counts, whatever a later plugin answers: a
//    forwarder that delivered to some recipients and then got a refusal, a later plugin that
//    answers DENY or DENYSOFT, a later plugin that times out.
// 3. At most one reply-address recipient per transaction, in constant time per RCPT.

const assert = require('node:assert/strict')

const h = require('./harness')
const { assert535, assert550, bySubject, countsKey, disabledKey, pluginIni, waitSubjects } = require('./helpers')

const PW = 'pw'
const VICTIM = 'victim@outside.example'
const NOSUCH = 'nosuchuser@outside.example'

// { bucket index: count } of the message buckets of one account (all bucket sizes)
async function messageCount (redis, account) {
  const flat = await redis.command('HGETALL', countsKey(account))
  let n = 0
  for (let i = 0; i < flat.length; i += 2) if (/\.m$/.test(flat[i])) n += Number(flat[i + 1])
  return n
}

describe('e2e: counting and the reply address (issue 8, items 1 and 3)', function () {
  this.timeout(90000)

  let redis
  const started = [] // Haraka instances and sinks of the current test

  async function haraka (opts) {
    const inst = await h.createHaraka(opts)
    started.push(inst)
    await inst.start()
    return inst
  }

  async function sinkWith (opts) {
    const sink = await h.startSink(opts)
    started.push(sink)
    return sink
  }

  before(async function () {
    this.timeout(240000) // npm pack (build) + npm install, once per run
    await h.packPlugin()
    redis = await h.startRedis()
  })

  after(async function () {
    await redis.stop()
    await h.stopAll()
  })

  beforeEach(async function () {
    await redis.flushall()
  })

  afterEach(async function () {
    h.dumpLogsIfFailed(this)
    for (const r of started.splice(0).reverse()) await (r.destroy ? r.destroy() : r.stop())
  })

  // -------------------------------------------------------------------------------------------
  // item 1

  it('smtp_forward one_message_per_rcpt: messages to [deliverable, refused] all count; the account is disabled at exactly the limit', async function () {
    const sink = await sinkWith({ refuseRcpt: [NOSUCH] })
    const mallory = 'mallory@test.example'
    const srv = await haraka({
      sink,
      users: { [mallory]: PW },
      pluginIni: pluginIni(redis.port, { limits: 'messages = 3/1m\nrecipients = 0' }),
      config: {
        // the smarthost route: authenticated (relayed) mail is forwarded to the sink, one
        // message per recipient
        'smtp_forward.ini': [
          '[main]',
          'host=127.0.0.1',
          `port=${sink.port}`,
          'enable_tls=false',
          'enable_outbound=true',
          'one_message_per_rcpt=true',
          '',
        ].join('\n'),
      },
    })
    const s = await h.openSession({ port: srv.port, user: mallory, pass: PW })
    const answers = []
    for (let i = 1; i <= 3; i++) answers.push(await s.send({ from: mallory, to: [VICTIM, NOSUCH], subject: `c1 ${i}` }))
    // the forwarder delivered to the victim, then the sink refused the unknown user: 550
    for (const r of answers) {
      assert.equal(r.code, 550, JSON.stringify(r))
      assert.match(r.response, /no such user/, JSON.stringify(r))
    }
    const delivered = await waitSubjects(sink, 'c1 ', 3)
    assert.deepEqual(delivered.map((m) => m.to), [[VICTIM], [VICTIM], [VICTIM]])
    assert.equal(await messageCount(redis, mallory), 3, 'the three refused-after-delivery messages count')

    // the 4th message is over the limit: refused by the plugin, never forwarded
    const fourth = await s.send({ from: mallory, to: [VICTIM, NOSUCH], subject: 'c1 4' })
    await s.close()
    assert550(fourth, 'data', 'the 4th message')
    assert.match(fourth.response, /reached its limit of 3 messages in 1 minute/)
    assert.equal((await redis.command('HGET', disabledKey(mallory), 'by')), 'limit')
    assert535(await h.tryAuth({ port: srv.port, user: mallory, pass: PW }), 'AUTH after the disable')
    assert.deepEqual(bySubject(sink, 'c1 ').map((m) => m.subject), ['c1 1', 'c1 2', 'c1 3'])
  })

  it('a later queue_outbound plugin that answers DENY, DENYSOFT or times out takes nothing back', async function () {
    const sink = await sinkWith()
    const gina = 'gina@test.example'
    const REFUSE_PLUGIN = `'use strict'
// test-only: a queue_outbound hook after hijack-guard that refuses some messages, or never
// answers (config/test_refuse_queue.timeout is 1 s), like a smarthost forwarder
exports.hook_queue_outbound = function (next, connection) {
  const subject = String(connection.transaction.header.get('Subject') || '')
  if (subject.includes('refuse-perm')) return next(DENY, 'upstream refused it')
  if (subject.includes('refuse-temp')) return next(DENYSOFT, 'upstream busy')
  if (subject.includes('hang')) return
  next()
}
`
    const srv = await haraka({
      sink,
      users: { [gina]: PW },
      testPlugins: { test_refuse_queue: REFUSE_PLUGIN },
      extraPlugins: ['test_refuse_queue'],
      pluginIni: pluginIni(redis.port, { limits: 'messages = 4/1m\nrecipients = 0' }),
      config: { 'test_refuse_queue.timeout': '1\n' },
    })
    const s = await h.openSession({ port: srv.port, user: gina, pass: PW })
    const perm = await s.send({ from: gina, to: [VICTIM], subject: 'c2 refuse-perm' })
    assert.equal(perm.code, 550, JSON.stringify(perm))
    assert.match(perm.response, /upstream refused it/)
    const temp = await s.send({ from: gina, to: [VICTIM], subject: 'c2 refuse-temp' })
    assert.equal(temp.code, 450, JSON.stringify(temp))
    const hang = await s.send({ from: gina, to: [VICTIM], subject: 'c2 hang' })
    assert.ok(hang.code >= 400 && hang.code < 500, `a plugin timeout is a temporary refusal: ${JSON.stringify(hang)}`)
    assert.match(hang.response, /timeout/i)
    assert.equal(await messageCount(redis, gina), 3)
    const ok = await s.send({ from: gina, to: [VICTIM], subject: 'c2 ok' })
    assert.equal(ok.code, 250, JSON.stringify(ok))
    const over = await s.send({ from: gina, to: [VICTIM], subject: 'c2 over' })
    await s.close()
    assert550(over, 'data', 'the 5th attempt')
    assert.match(over.response, /reached its limit of 4 messages/)
    await waitSubjects(sink, 'c2 ok', 1)
    assert.deepEqual(bySubject(sink, 'c2 ').map((m) => m.subject), ['c2 ok'])
  })
})
