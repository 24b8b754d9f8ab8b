// End-to-end: [limits] max_recipients_per_message (issue 11 item 5) on a real Haraka 3.3.4 with the
// packed plugin, redis-server, a nodemailer client speaking AUTH PLAIN over loopback and a
// loopback sink. The RCPT over the cap gets 550 5.5.3, the message goes out to the recipients
// within the cap, and every RCPT attempted counts against the recipients limits. See
// test/e2e/README.md.

import assert from 'node:assert/strict'
import { openSession, type RedisServer } from '../../support'
import {
  assert250,
  assert550,
  bySubject,
  countsKey,
  e2eWorld,
  pluginIni,
  waitQueueEmpty,
  waitSubjects,
} from './helpers'

const PW = 'pw'

/** The recipients counted for one account (the buckets of its one recipients series). */
async function recipientCount(redis: RedisServer, account: string): Promise<number> {
  const hash = await (await redis.client()).hGetAll(countsKey(account))
  let n = 0
  for (const [field, value] of Object.entries(hash)) if (/^r\d+x\d+\.\d+$/.test(field)) n += Number(value)
  return n
}

const recipients = (n: number, prefix = 'r'): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}${i}@outside.example`)

describe('e2e: recipients per message', function () {
  this.timeout(60000)

  const e2e = e2eWorld()
  const { haraka } = e2e

  it('with the shipped default of 100: the 101st RCPT gets 550 5.5.3, the message goes to 100 and counts 101 recipients', async function () {
    const alice = 'alice@test.example'
    const srv = await haraka({
      users: { [alice]: PW },
      // no max_recipients_per_message here: the package's shipped config gives 100
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 10/1m\nrecipients = 1000/1h' }),
    })
    assert.match(srv.log(), /\[hijack-guard\] mode=enforce .* max_recipients_per_message=100 /)
    const to = recipients(101)
    const s = await openSession({ port: srv.port, user: alice, pass: PW })
    const r = await s.send({ from: alice, to, subject: 'cap 1' })
    assert250(r, 'the message to the first 100 recipients')
    assert.equal(r.accepted?.length, 100)
    assert.deepEqual(r.rejected, ['r100@outside.example'])
    assert.match(
      r.rejectedErrors?.[0]?.response ?? '',
      /^550 5\.5\.3 Too many recipients: at most 100 per message for this account/,
    )
    await s.close()

    const [msg] = await waitSubjects(e2e.sink, 'cap ', 1)
    await waitQueueEmpty(srv)
    assert.ok(msg)
    assert.deepEqual([...msg.to].sort(), to.slice(0, 100).sort())
    assert.equal(await recipientCount(e2e.redis, alice), 101, 'the refused RCPT counts as attempted')
    assert.match(srv.log(), /recipients over max_recipients_per_message 100 refused with 550 5\.5\.3/)
  })

  it('an [account:LOGIN] cap of 2 applies to that account only, and its refused RCPTs bring its recipients limit closer', async function () {
    const small = 'small@test.example'
    const alice = 'alice@test.example'
    const srv = await haraka({
      users: { [small]: PW, [alice]: PW },
      pluginIni: pluginIni(e2e.redis.port, {
        limits: [
          'messages = 10/1m',
          'recipients = 1000/1h',
          `[account:${small}]`,
          'max_recipients_per_message = 2',
          'recipients = 4/1h',
        ].join('\n'),
      }),
    })
    const s = await openSession({ port: srv.port, user: small, pass: PW })
    const first = await s.send({ from: small, to: recipients(3, 's'), subject: 'small 1' })
    assert250(first, 'small: the message to the first 2 recipients')
    assert.deepEqual(first.rejected, ['s2@outside.example'])
    assert.match(first.rejectedErrors?.[0]?.response ?? '', /^550 5\.5\.3 .*at most 2 per message/)
    // 3 attempted + 2 = 5 recipients: over recipients = 4/1h, although only 4 were accepted
    const second = await s.send({ from: small, to: recipients(2, 't'), subject: 'small 2' })
    assert550(second, 'data', 'small: the second message, over its recipients limit')
    assert.match(second.response, /reached its limit of 4 recipients in 1 hour/)
    await s.close()

    const a = await openSession({ port: srv.port, user: alice, pass: PW })
    const wide = await a.send({ from: alice, to: recipients(3, 'a'), subject: 'alice 1' })
    assert250(wide, 'alice: [limits] caps at 100, not 2')
    assert.equal(wide.accepted?.length, 3)
    await a.close()

    await waitSubjects(e2e.sink, 'alice ', 1)
    await waitQueueEmpty(srv)
    assert.deepEqual(
      bySubject(e2e.sink, 'small ').map((m) => [m.subject, [...m.to].sort()]),
      [['small 1', ['s0@outside.example', 's1@outside.example']]],
    )
    assert.equal(await recipientCount(e2e.redis, small), 3)
    assert.equal(await recipientCount(e2e.redis, alice), 3)
  })
})
