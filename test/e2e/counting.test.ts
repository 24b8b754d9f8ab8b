// End-to-end: what counts and what a client may send (issue 8, items 1 and 3), with the real
// parts: a Haraka 3.3.4 process with the packed plugin, redis-server, an SMTP client over
// loopback and a loopback sink. See test/e2e/README.md.
//
// 1. Every attempt that reaches queue_outbound counts, whatever a later plugin answers: a
//    forwarder that delivered to some recipients and then got a refusal, a later plugin that
//    answers DENY or DENYSOFT, a later plugin that times out.
// 3. At most one reply-address recipient per transaction, in constant time per RCPT.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import { HOST, openSession, tryAuth, type RedisServer, type SendResult } from '../../support'
import { assert535, assert550, bySubject, countsKey, disabledKey, pluginIni, waitSubjects, e2eWorld } from './helpers'

const PW = 'pw'
const ME = 'mx.test.example'
const VICTIM = 'victim@outside.example'
const NOSUCH = 'nosuchuser@outside.example'

/** The number of messages counted for one account (the buckets of its one messages series). */
async function messageCount(redis: RedisServer, account: string): Promise<number> {
  const hash = await (await redis.client()).hGetAll(countsKey(account))
  let n = 0
  for (const [field, value] of Object.entries(hash)) if (/^m\d+x\d+\.\d+$/.test(field)) n += Number(value)
  return n
}

/** CPU time (user + system, clock ticks) a process has used, from /proc/PID/stat. */
function cpuTicks(pid: number | null): number {
  assert.ok(pid !== null, 'the process runs')
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  // the fields after "(comm)": state is field 3, utime 14, stime 15
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(rest[11]) + Number(rest[12])
}

interface FloodOptions {
  readonly from: string
  readonly rcpt: string
  readonly count: number
  readonly timeoutMs?: number
}

/**
 * One session over a raw socket: EHLO, MAIL FROM, then `count` RCPT TO lines written at once
 * (PIPELINING), then QUIT. Resolves the last lines of the RCPTs' replies, in order.
 */
function rcptFlood(port: number, { from, rcpt, count, timeoutMs = 60000 }: FloodOptions): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: HOST, port })
    let buf = ''
    let phase: 'greeting' | 'ehlo' | 'mail' | 'rcpt' | 'quit' = 'greeting'
    const codes: string[] = []
    let lines: string[] = []
    const timer = setTimeout(() => {
      sock.destroy()
      reject(new Error(`flood: ${codes.length} of ${count} RCPT replies within ${timeoutMs} ms (phase ${phase})`))
    }, timeoutMs)
    const fail = (reply: readonly string[]): void => {
      clearTimeout(timer)
      sock.destroy()
      reject(new Error(`flood: unexpected reply in ${phase}: ${reply.join(' | ')}`))
    }
    sock.setEncoding('utf8')
    sock.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    sock.on('data', (d: string) => {
      buf += d
      let nl
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl).replace(/\r$/, '')
        buf = buf.slice(nl + 1)
        lines.push(line)
        if (line[3] === '-') continue // a continuation line of a multi-line reply
        const reply = lines
        lines = []
        const code = Number(line.slice(0, 3))
        if (phase === 'greeting') {
          if (code !== 220) return fail(reply)
          phase = 'ehlo'
          sock.write('EHLO flood.test.example\r\n')
        } else if (phase === 'ehlo') {
          if (code !== 250 || !reply.some((l) => /PIPELINING/i.test(l))) return fail(reply)
          phase = 'mail'
          sock.write(`MAIL FROM:<${from}>\r\n`)
        } else if (phase === 'mail') {
          if (code !== 250) return fail(reply)
          phase = 'rcpt'
          sock.write(`RCPT TO:<${rcpt}>\r\n`.repeat(count))
        } else if (phase === 'rcpt') {
          codes.push(line)
          if (codes.length === count) {
            phase = 'quit'
            sock.end('QUIT\r\n')
            clearTimeout(timer)
            resolve(codes)
          }
        }
      }
    })
  })
}

describe('e2e: counting and the reply address (issue 8, items 1 and 3)', function () {
  this.timeout(90000)

  const e2e = e2eWorld({ sink: false })
  const { haraka, extraSink } = e2e

  // -------------------------------------------------------------------------------------------
  // item 1

  it('smtp_forward one_message_per_rcpt: messages to [deliverable, refused] all count; the account is disabled at exactly the limit', async function () {
    const sink = await extraSink({ refuseRcpt: [NOSUCH] })
    const mallory = 'mallory@test.example'
    const srv = await haraka({
      sink,
      users: { [mallory]: PW },
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 3/1m\nrecipients = 0' }),
      config: {
        // the smarthost route: authenticated (relayed) mail is forwarded to the sink, one
        // message per recipient
        'smtp_forward.ini': [
          '[main]',
          `host=${HOST}`,
          `port=${sink.port}`,
          'enable_tls=false',
          'enable_outbound=true',
          'one_message_per_rcpt=true',
          '',
        ].join('\n'),
      },
    })
    const s = await openSession({ port: srv.port, user: mallory, pass: PW })
    const answers: SendResult[] = []
    for (let i = 1; i <= 3; i++) {
      answers.push(await s.send({ from: mallory, to: [VICTIM, NOSUCH], subject: `c1 ${i}` }))
    }
    // the forwarder delivered to the victim, then the sink refused the unknown user: 550
    for (const r of answers) {
      assert.equal(r.code, 550, JSON.stringify(r))
      assert.match(r.response, /no such user/, JSON.stringify(r))
    }
    const delivered = await waitSubjects(sink, 'c1 ', 3)
    assert.deepEqual(
      delivered.map((m) => m.to),
      [[VICTIM], [VICTIM], [VICTIM]],
    )
    assert.equal(await messageCount(e2e.redis, mallory), 3, 'the three refused-after-delivery messages count')

    // the 4th message is over the limit: refused by the plugin, never forwarded
    const fourth = await s.send({ from: mallory, to: [VICTIM, NOSUCH], subject: 'c1 4' })
    await s.close()
    assert550(fourth, 'data', 'the 4th message')
    assert.match(fourth.response, /reached its limit of 3 messages in 1 minute/)
    assert.equal(await e2e.redis.command(['HGET', disabledKey(mallory), 'by']), 'limit')
    assert535(await tryAuth({ port: srv.port, user: mallory, pass: PW }), 'AUTH after the disable')
    assert.deepEqual(
      bySubject(sink, 'c1 ').map((m) => m.subject),
      ['c1 1', 'c1 2', 'c1 3'],
    )
  })

  it('a later queue_outbound plugin that answers DENY, DENYSOFT or times out takes nothing back', async function () {
    const sink = await extraSink()
    const gina = 'gina@test.example'
    const srv = await haraka({
      sink,
      users: { [gina]: PW },
      // support/haraka-plugins: refuses or never answers by subject; its timeout is 1 s
      extraPlugins: ['test_refuse_queue'],
      pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 4/1m\nrecipients = 0' }),
      config: { 'test_refuse_queue.timeout': '1\n' },
    })
    const s = await openSession({ port: srv.port, user: gina, pass: PW })
    const perm = await s.send({ from: gina, to: [VICTIM], subject: 'c2 refuse-perm' })
    assert.equal(perm.code, 550, JSON.stringify(perm))
    assert.match(perm.response, /upstream refused it/)
    const temp = await s.send({ from: gina, to: [VICTIM], subject: 'c2 refuse-temp' })
    assert.equal(temp.code, 450, JSON.stringify(temp))
    const hang = await s.send({ from: gina, to: [VICTIM], subject: 'c2 hang' })
    assert.ok(
      hang.code !== null && hang.code >= 400 && hang.code < 500,
      `a plugin timeout is a temporary refusal: ${JSON.stringify(hang)}`,
    )
    assert.match(hang.response, /timeout/i)
    assert.equal(await messageCount(e2e.redis, gina), 3)
    const ok = await s.send({ from: gina, to: [VICTIM], subject: 'c2 ok' })
    assert.equal(ok.code, 250, JSON.stringify(ok))
    const over = await s.send({ from: gina, to: [VICTIM], subject: 'c2 over' })
    await s.close()
    assert550(over, 'data', 'the 5th attempt')
    assert.match(over.response, /reached its limit of 4 messages/)
    await waitSubjects(sink, 'c2 ok', 1)
    assert.deepEqual(
      bySubject(sink, 'c2 ').map((m) => m.subject),
      ['c2 ok'],
    )
  })

  // -------------------------------------------------------------------------------------------
  // item 3

  it('2,000 pipelined RCPTs to the reply address in one session: exactly one 250, the rest 452 4.5.3, at linear cost', async function () {
    const sink = await extraSink()
    const srv = await haraka({ sink, pluginIni: pluginIni(e2e.redis.port, { limits: 'messages = 3/1m' }) })
    const rcpt = `hijack-guard+hg-${'0'.repeat(32)}@${ME}`
    const flood = async (count: number): Promise<{ codes: string[]; ticks: number; ms: number }> => {
      const before = cpuTicks(srv.pid)
      const t0 = Date.now()
      const codes = await rcptFlood(srv.port, { from: 'someone@outside.example', rcpt, count })
      return { codes, ticks: cpuTicks(srv.pid) - before, ms: Date.now() - t0 }
    }
    const small = await flood(500)
    const large = await flood(2000)
    for (const [n, r] of [
      [500, small],
      [2000, large],
    ] as const) {
      assert.equal(r.codes.length, n)
      assert.match(r.codes[0] ?? '', /^250 /, `the first RCPT of ${n}`)
      const refused = r.codes.slice(1)
      assert.deepEqual([...new Set(refused.map((c) => c.slice(0, 10)))], ['452 4.5.3 '], `RCPTs 2..${n}`)
      assert.match(refused[0] ?? '', /one reply-address recipient per message/)
    }
    console.log(
      `      [measured] ${small.ticks} CPU ticks (${small.ms} ms) for 500 RCPTs, ${large.ticks} (${large.ms} ms) for 2000`,
    )
    // Linear: 4 times the RCPTs cost about 4 times the CPU (quadratic would be 16 times). The
    // bounds leave room for a shared CI machine: at most 8 times, plus 20 ticks of noise, and
    // 2,000 RCPTs under 4 s of CPU.
    assert.ok(large.ticks <= 8 * small.ticks + 20, `CPU ticks: ${small.ticks} for 500 RCPTs, ${large.ticks} for 2000`)
    assert.ok(large.ticks < 400, `2000 RCPTs took ${large.ticks} CPU ticks`)
    assert.ok(srv.alive(), 'Haraka is still running')
  })

  it('a reply shares its transaction with no other recipient, in either order', async function () {
    const sink = await extraSink()
    const admin = 'postmaster@test.example'
    const srv = await haraka({ sink, users: { [admin]: PW }, pluginIni: pluginIni(e2e.redis.port) })
    const reply = `hijack-guard+hg-${'1'.repeat(32)}@${ME}`
    const s = await openSession({ port: srv.port, user: admin, pass: PW })
    const first = await s.send({ from: admin, to: [reply, VICTIM, `hijack-guard@${ME}`], subject: 'c4 a' })
    assert.deepEqual(first.accepted, [reply], JSON.stringify(first))
    assert.deepEqual([...(first.rejected ?? [])].sort(), [VICTIM, `hijack-guard@${ME}`].sort(), JSON.stringify(first))
    assert.ok(first.rejectedErrors, JSON.stringify(first))
    for (const e of first.rejectedErrors) assert.match(String(e.response), /^452 4\.5\.3 /)
    const second = await s.send({ from: admin, to: [VICTIM, reply], subject: 'c4 b' })
    await s.close()
    assert.deepEqual(second.accepted, [VICTIM], JSON.stringify(second))
    assert.deepEqual(second.rejected, [reply], JSON.stringify(second))
    assert.match(String(second.rejectedErrors?.[0]?.response), /^452 4\.5\.3 .*in a message of its own/)
    await waitSubjects(sink, 'c4 b', 1)
    assert.deepEqual(
      bySubject(sink, 'c4 ').map((m) => m.to),
      [[VICTIM]],
    )
  })
})
