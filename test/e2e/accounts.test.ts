// End-to-end: one mailbox, several login spellings (issue 8 item 2). After the disable, a
// hijacker must not get a fresh limit by logging in with the next spelling of the same
// mailbox. Real parts: a Haraka 3.3.4 process with the packed plugin, redis-server, a
// nodemailer client speaking AUTH PLAIN over loopback, a loopback SMTP sink as the outside
// world, and (first block) Haraka's own auth/auth_proxy asking an upstream SMTP server
// (smtp-server on loopback) that accepts both domains' spellings of one mailbox.
// See test/e2e/README.md.

import assert from 'node:assert/strict'
import * as net from 'node:net'
import { SMTPServer } from 'smtp-server'
import {
  HOST,
  freePort,
  openSession,
  sendOne,
  tryAuth,
  waitUntil,
  type HarakaInstance,
  type SendResult,
} from '../../support'
import { assert250, assert535, assert550, disabledKey, pluginIni, e2eWorld } from './helpers'

const PW = 'pw'
const OUT = 'bob@outside.example'
const LIMITS = 'messages = 2/1m\nrecipients = 0'

interface Upstream {
  readonly port: number
  /** Every username the upstream was asked about. */
  readonly seen: readonly string[]
  stop(): Promise<void>
}

// An upstream mail server that, like a real one with alias domains, accepts one mailbox under
// several spellings. Records every username it was asked about.
async function startUpstream(valid: readonly string[]): Promise<Upstream> {
  const seen: string[] = []
  const server = new SMTPServer({
    secure: false,
    disabledCommands: ['STARTTLS'],
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth: true,
    authOptional: true,
    logger: false,
    onAuth(auth, _session, cb) {
      const username = auth.username ?? ''
      seen.push(username)
      if (valid.includes(username) && auth.password === PW) return cb(null, { user: username })
      cb(Object.assign(new Error('Authentication failed'), { responseCode: 535 }))
    },
  })
  const port = await freePort()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, HOST, () => resolve())
  })
  return { port, seen, stop: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

interface RawSession {
  /** Writes `line` and CRLF; resolves the whole reply ("250-...\r\n250 ..."), or "(closed)". */
  cmd(line: string): Promise<string>
  close(): void
}

// A plain SMTP session over a socket (nodemailer cannot send XCLIENT): cmd(line) resolves the
// whole reply, bounded at 10 s.
function rawSession(port: number): Promise<RawSession> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: HOST, port })
    let buf = ''
    let waiting: { resolve: (reply: string) => void; timer: NodeJS.Timeout } | null = null
    const take = (): void => {
      const m = /(?:^|\r\n)(\d{3}) [^\r\n]*\r\n/.exec(buf)
      if (!m || !waiting) return
      const end = m.index + m[0].length
      const reply = buf.slice(0, end).replace(/^\r\n/, '')
      buf = buf.slice(end)
      const w = waiting
      waiting = null
      clearTimeout(w.timer)
      w.resolve(reply.trim())
    }
    const next = (): Promise<string> =>
      new Promise<string>((resolveReply, rejectReply) => {
        waiting = {
          resolve: resolveReply,
          timer: setTimeout(
            () => rejectReply(new Error(`no SMTP reply within 10 s; buffer ${JSON.stringify(buf)}`)),
            10000,
          ),
        }
        take()
      })
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => {
      buf += d
      take()
    })
    sock.on('close', () => {
      if (waiting) {
        const w = waiting
        waiting = null
        clearTimeout(w.timer)
        w.resolve('(closed)')
      }
    })
    sock.once('error', reject)
    sock.once('connect', () => {
      next() // the greeting
        .then(() =>
          resolve({
            cmd(line) {
              sock.write(`${line}\r\n`)
              return next()
            },
            close() {
              sock.destroy()
            },
          }),
        )
        .catch((err: unknown) => {
          sock.destroy()
          reject(err instanceof Error ? err : new Error(String(err)))
        })
    })
  })
}

interface XclientResult {
  readonly stage: 'xclient' | 'mail' | 'rcpt' | 'data' | 'ok'
  readonly reply: string
}

// XCLIENT LOGIN=login, then one message to OUT.
async function sendViaXclient(
  port: number,
  login: string,
  subject: string,
  { name = 'relay-ok.test' }: { name?: string } = {},
): Promise<XclientResult> {
  const s = await rawSession(port)
  try {
    await s.cmd('EHLO proxy.test')
    const x = await s.cmd(`XCLIENT ADDR=192.0.2.55 NAME=${name} LOGIN=${login}`)
    if (!x.startsWith('220')) return { stage: 'xclient', reply: x }
    await s.cmd('EHLO client.test')
    const mail = await s.cmd('MAIL FROM:<someone@test.example>')
    if (!mail.startsWith('250')) return { stage: 'mail', reply: mail }
    const rcpt = await s.cmd(`RCPT TO:<${OUT}>`)
    if (!rcpt.startsWith('250')) return { stage: 'rcpt', reply: rcpt }
    const data = await s.cmd('DATA')
    if (!data.startsWith('354')) return { stage: 'data', reply: data }
    const end = await s.cmd(`Subject: ${subject}\r\nFrom: <someone@test.example>\r\n\r\nbody\r\n.`)
    return { stage: end.startsWith('250') ? 'ok' : 'data', reply: end }
  } finally {
    s.close()
  }
}

describe('e2e: one account whatever the login spelling ([accounts])', function () {
  this.timeout(90000)

  const e2e = e2eWorld()
  const { haraka } = e2e

  const send = (srv: HarakaInstance, user: string, subject: string): Promise<SendResult> =>
    sendOne({
      port: srv.port,
      user,
      pass: PW,
      from: user.includes('@') ? user : `${user}@test.example`,
      to: [OUT],
      subject,
    })

  const outSubjects = (): string[] =>
    e2e.sink.messages
      .filter((m) => m.to.includes(OUT))
      .map((m) => m.subject ?? '')
      .sort()

  it('auth/auth_proxy routes example.com and alias.example to one upstream; with domain_aliases, alice@alias.example is alice@example.com: counted together, and after the disable the alias spelling gets 535 5.7.8 at AUTH and 550 at MAIL FROM', async function () {
    const upstream = await startUpstream([
      'alice@example.com',
      'alice@alias.example',
      'ALICE@Alias.Example',
      'bob@alias.example',
    ])
    e2e.cleanup(() => upstream.stop())
    const srv = await haraka({
      auth: ['auth/auth_proxy'],
      beforePlugins: ['test_auth_caps'],
      config: {
        'auth_proxy.ini': `[domains]\nexample.com = ${HOST}:${upstream.port}\nalias.example = ${HOST}:${upstream.port}\n`,
      },
      pluginIni: `${pluginIni(e2e.redis.port, { limits: LIMITS })}[accounts]\ndomain_aliases = alias.example:example.com\n`,
    })
    assert.match(srv.log(), /AUTH of disabled accounts refused in: .*auth\/auth_proxy/)

    // a session of the alias spelling, logged in before the disable
    const early = await openSession({ port: srv.port, user: 'alice@alias.example', pass: PW })
    try {
      assert250(await send(srv, 'alice@example.com', 'one'), 'message 1 (example.com)')
      assert250(
        await early.send({ from: 'alice@alias.example', to: [OUT], subject: 'two' }),
        'message 2 (alias.example)',
      )
      // the third message of the mailbox, whatever spelling, is over messages = 2/1m
      assert550(await send(srv, 'ALICE@Alias.Example', 'three'), 'data', 'message 3 (ALICE@Alias.Example)')
      await srv.waitForLog(/ACCOUNT DISABLED "alice@example\.com"/)
      assert.equal(await e2e.redis.command(['EXISTS', disabledKey('alice@example.com')]), 1)
      assert.deepEqual(await e2e.redis.keys('hijack-guard:{alice@alias.example}*'), [], 'no key of the alias spelling')

      // the session logged in before the disable cannot send
      assert550(
        await early.send({ from: 'alice@alias.example', to: [OUT], subject: 'four' }),
        'mail',
        'the alias session after the disable',
      )
    } finally {
      await early.close()
    }
    // every spelling is refused at AUTH with the right password
    for (const user of ['alice@alias.example', 'ALICE@Alias.Example', 'alice@example.com']) {
      assert535(await tryAuth({ port: srv.port, user, pass: PW }), `AUTH ${user}`)
    }
    // the upstream was asked about both domains: auth_proxy routed them
    assert.ok(
      upstream.seen.includes('alice@alias.example') && upstream.seen.includes('alice@example.com'),
      JSON.stringify(upstream.seen),
    )
    // another mailbox at the alias domain still sends
    assert250(await send(srv, 'bob@alias.example', 'bob'), 'bob@alias.example')
    await waitUntil(() => outSubjects().length >= 3, {
      timeoutMs: 15000,
      message: () => JSON.stringify(e2e.sink.messages.map((m) => m.subject)),
    })
    assert.deepEqual(outSubjects(), ['bob', 'one', 'two'], `delivered: ${JSON.stringify(outSubjects())}`)
  })

  it('auth/flat_file with logins that differ only in case (and default_domain): tripped with one, the others get 535 5.7.8 at AUTH', async function () {
    const spellings = ['carol@test.example', 'CAROL@TEST.EXAMPLE', 'Carol@Test.Example', 'carol']
    const srv = await haraka({
      users: Object.fromEntries([...spellings, 'dave@test.example'].map((u) => [u, PW])),
      pluginIni: `${pluginIni(e2e.redis.port, { limits: LIMITS })}[accounts]\ndefault_domain = test.example\n`,
    })
    assert250(await send(srv, 'carol', 'one'), 'carol')
    assert250(await send(srv, 'CAROL@TEST.EXAMPLE', 'two'), 'CAROL@TEST.EXAMPLE')
    assert550(
      await send(srv, 'Carol@Test.Example', 'three'),
      'data',
      'Carol@Test.Example, the third message of the mailbox',
    )
    for (const user of spellings) assert535(await tryAuth({ port: srv.port, user, pass: PW }), `AUTH ${user}`)
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey('carol@test.example')]), 1)
    assert250(await send(srv, 'dave@test.example', 'dave'), 'another mailbox')
  })

  // flat_file cannot hold these logins (Haraka's ini parser takes only ASCII word characters in
  // a key): support's test_auth_any stands in for a backend that matches logins
  // case-insensitively and by Unicode collation (SQL, LDAP), accepting every spelling.
  it('a backend that accepts fullwidth and NFD/NFC spellings: tripped with one, every other spelling gets 535 5.7.8 at AUTH', async function () {
    const srv = await haraka({ auth: 'any', pluginIni: pluginIni(e2e.redis.port, { limits: LIMITS }) })
    const send2 = (user: string, subject: string): Promise<SendResult> =>
      sendOne({ port: srv.port, user, pass: 'secret', from: 'x@test.example', to: [OUT], subject })
    const auth = (user: string) => tryAuth({ port: srv.port, user, pass: 'secret' })

    const width = [
      'ｅｒｉｎ@test.example',
      'erin@test.example',
      'ＥＲＩＮ@ＴＥＳＴ.ＥＸＡＭＰＬＥ',
      'Erin@test.example',
    ] as const
    assert250(await send2(width[0], 'w1'), width[0])
    assert250(await send2(width[1], 'w2'), width[1])
    assert550(await send2(width[2], 'w3'), 'data', width[2])
    for (const user of width) assert535(await auth(user), `AUTH ${user}`)

    const nfc = 'jos\u00e9@test.example'
    const nfd = 'jose\u0301@test.example'
    const forms = [nfd, nfc, 'JOSE\u0301@test.example', 'JOS\u00c9@TEST.EXAMPLE'] as const
    assert250(await send2(nfd, 'n1'), 'NFD')
    assert250(await send2(nfc, 'n2'), 'NFC')
    assert550(await send2(forms[2], 'n3'), 'data', 'upper-case NFD')
    for (const user of forms) assert535(await auth(user), `AUTH ${JSON.stringify(user)}`)
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey(nfc)]), 1, 'the account is the NFC form')
    assert.equal(await e2e.redis.command(['EXISTS', disabledKey('erin@test.example')]), 1)
  })

  it('xclient_login = true: an XCLIENT LOGIN counts as that login (its spellings folded) once a relay policy lets the session relay; without one, Haraka refuses its outside mail at RCPT', async function () {
    const srv = await haraka({
      users: { 'carol@test.example': PW },
      beforePlugins: ['xclient', 'test_xclient_relay'],
      pluginIni: `${pluginIni(e2e.redis.port, { limits: LIMITS })}[accounts]\ndefault_domain = test.example\nxclient_login = true\n`,
    })
    // Haraka's xclient plugin resets relaying: without a relay policy the mail never reaches
    // queue_outbound (where counting happens), it is refused as relaying at RCPT
    const norelay = await sendViaXclient(srv.port, 'carol', 'no relay', { name: 'other.test' })
    assert.equal(norelay.stage, 'rcpt', JSON.stringify(norelay))
    assert.match(norelay.reply, /^5\d\d /)

    assert.equal((await sendViaXclient(srv.port, 'carol', 'x1')).stage, 'ok')
    assert.equal((await sendViaXclient(srv.port, 'carol@test.example', 'x2')).stage, 'ok')
    const over = await sendViaXclient(srv.port, 'CAROL', 'x3')
    assert.equal(over.stage, 'data', JSON.stringify(over))
    assert.match(over.reply, /^550 5\.7\.1 /)
    await srv.waitForLog(/ACCOUNT DISABLED "carol@test\.example"/)
    const after = await sendViaXclient(srv.port, 'carol@TEST.example', 'x4')
    assert.equal(after.stage, 'mail', JSON.stringify(after))
    assert.match(after.reply, /^550 5\.7\.1 .*is disabled/)
    // the same mailbox through AUTH is the same account
    assert535(await tryAuth({ port: srv.port, user: 'carol@test.example', pass: PW }), 'AUTH carol@test.example')
  })
})
