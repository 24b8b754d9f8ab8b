// Who an account is, through the compiled plugin (haraka-test-fixtures, memory store, a mail
// seam): issue 8 items 2 (one account whatever the spelling, XCLIENT logins), 9 (the startup
// summary names admins and the store) and 10 (the reply address never swallows [alert] from).

import assert from 'node:assert/strict'
import { waitUntil } from '../../support/process'
import * as constants from 'haraka-constants'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import {
  callHook,
  makeGuard,
  replyText,
  transactionOf,
  type HookOutcome,
  fixtureSession,
  rcptTo,
} from '../../support/plugin'

interface SessionOptions {
  /** The AUTH login (connection.notes.auth_user). */
  readonly login?: string
  /** The login XCLIENT gave (connection.remote.login). */
  readonly xclient?: string
  readonly relaying?: boolean
  readonly mailFrom?: string
}

function session({
  login,
  xclient,
  relaying = true,
  mailFrom = 'someone@example.com',
}: SessionOptions = {}): FixtureConnection {
  return fixtureSession({ login, xclient, relaying, mailFrom, headers: { Subject: 'hello' } })
}

const rcpt = rcptTo

async function send(plugin: FixturePlugin, opts: SessionOptions): Promise<HookOutcome> {
  const c = session(opts)
  await rcpt(plugin, c, 'bob@example.net')
  return callHook(plugin, 'count_message', c)
}

const mailFrom = (plugin: FixturePlugin, opts: SessionOptions): Promise<HookOutcome> => {
  const c = session(opts)
  return callHook(plugin, 'hook_mail', c, [transactionOf(c).mail_from, {}])
}

describe('plugin: one account whatever the login spelling ([accounts])', function () {
  const INI =
    '[limits]\nmessages = 2/1m\nrecipients = 0\n[alert]\nto = pm@example.com\n[accounts]\ndefault_domain = example.com\ndomain_aliases = alias.example:example.com\n'

  it('counts alice, ALICE@Alias.Example and ａｌｉｃｅ@example.com as one account: the third message is refused and every spelling is then refused at MAIL FROM', async function () {
    const { plugin } = makeGuard(INI)
    assert.equal((await send(plugin, { login: 'alice' })).rc, undefined)
    assert.equal((await send(plugin, { login: 'ALICE@Alias.Example' })).rc, undefined)
    const over = await send(plugin, { login: 'ａｌｉｃｅ@example.com' })
    assert.equal(over.rc, constants.deny)
    assert.match(replyText(over.msg), /^550 5\.7\.1 Account alice@example\.com /)
    for (const login of [
      'alice',
      'Alice@EXAMPLE.com',
      'alice@alias.example',
      'ＡＬＩＣＥ',
      'alice\u200b@example.com',
    ]) {
      const r = await mailFrom(plugin, { login })
      assert.equal(r.rc, constants.denydisconnect, `MAIL FROM of ${JSON.stringify(login)}: ${JSON.stringify(r)}`)
    }
    assert.equal((await mailFrom(plugin, { login: 'alice2' })).rc, undefined, 'another mailbox is not touched')
  })

  it('exempts and overrides by canonical account: [exempt] accounts = Scanner exempts scanner@alias.example', async function () {
    const { plugin } = makeGuard(`${INI}[exempt]\naccounts = Scanner\n[account:BULK@alias.example]\nmessages = 3/1m\n`)
    for (let i = 0; i < 5; i++) {
      assert.equal((await send(plugin, { login: 'scanner@alias.example' })).rc, undefined, `exempt message ${i}`)
    }
    for (let i = 0; i < 3; i++) assert.equal((await send(plugin, { login: 'bulk' })).rc, undefined, `bulk message ${i}`)
    assert.equal((await send(plugin, { login: 'Bulk@Example.com' })).rc, constants.deny)
  })

  it('xclient_login = true: a session whose login came from XCLIENT is counted and refused as that login; false (default): it is not an account', async function () {
    const on = makeGuard(`${INI}xclient_login = true\n`).plugin
    assert.equal((await send(on, { xclient: 'carol' })).rc, undefined)
    assert.equal((await send(on, { xclient: 'carol@example.com' })).rc, undefined)
    assert.equal(
      (await send(on, { login: 'CAROL' })).rc,
      constants.deny,
      'an AUTH login of the same account is over the limit',
    )
    assert.equal((await mailFrom(on, { xclient: 'carol@alias.example' })).rc, constants.denydisconnect)
    assert.equal(
      (await mailFrom(on, { login: 'dave', xclient: 'carol' })).rc,
      undefined,
      'an AUTH login wins over the XCLIENT login',
    )

    const off = makeGuard(INI).plugin
    for (let i = 0; i < 4; i++) {
      assert.equal(
        (await send(off, { xclient: 'carol' })).rc,
        undefined,
        `message ${i} of an XCLIENT session without xclient_login`,
      )
    }
  })
})

describe('plugin: the startup summary (item 9)', function () {
  it('names the effective admins, the Redis address host:port/db and the reply address', function () {
    const { logs } = makeGuard(
      '[main]\nstore = redis\n[redis]\nhost = 127.0.0.1\nport = 6390\ndb = 4\n[alert]\nto = pm@example.com, sec@example.com\n[reactivate]\nadmins =   ; default: the [alert] to addresses\n',
    )
    const line = logs.find(([level, text]) => level === 'loginfo' && /mode=enforce/.test(text))
    assert.ok(line, JSON.stringify(logs))
    assert.match(line[1], /store=redis redis=127\.0\.0\.1:6390\/4 /)
    assert.match(line[1], / admins=pm@example\.com,sec@example\.com /)
    assert.match(line[1], / reply_address=hijack-guard@mx\.test\.example/)
  })
})

describe('plugin: the reply address and [alert] from (item 10)', function () {
  const INI = '[limits]\nmessages = 1/1m\nrecipients = 0\n[alert]\nto = pm@example.com\nfrom = security@example.com\n'

  it('with from = security@example.com, mail to security@ and security+x@ is not taken by the plugin; hijack-guard@<me> is', async function () {
    const { plugin } = makeGuard(INI)
    for (const to of ['security@example.com', 'security+x@example.com', 'Security@Example.com']) {
      const c = session({ relaying: false })
      const r = await rcpt(plugin, c, to)
      assert.equal(r.rc, undefined, `RCPT TO ${to}: ${JSON.stringify(r)}`)
      const q = await callHook(plugin, 'consume_reply', c)
      assert.equal(q.rc, undefined, `queue of a message to ${to} is left to Haraka: ${JSON.stringify(q)}`)
    }
    const c = session({ relaying: false })
    const r = await rcpt(plugin, c, 'hijack-guard+x@mx.test.example')
    assert.equal(r.rc, constants.ok)
  })

  it('the alert comes from security@example.com and its Reply-To is hijack-guard+hg-TOKEN@<me>', async function () {
    const { plugin, sent } = makeGuard(INI)
    assert.equal((await send(plugin, { login: 'alice@example.com' })).rc, undefined)
    assert.equal((await send(plugin, { login: 'alice@example.com' })).rc, constants.deny)
    const alert = await waitUntil(() => sent.find((m) => /^Reply-To:/m.test(m.message)), {
      timeoutMs: 5000,
      message: 'an alert was queued',
    })
    assert.equal(alert.from, 'security@example.com')
    assert.match(alert.message, /^Reply-To: hijack-guard\+hg-[0-9a-f]{32}@mx\.test\.example\r$/m)
    assert.match(
      alert.message,
      /^ +\S*node_modules\/\.bin\/hijack-guard -c \S+ enable alice@example\.com\r$/m,
      'the command works from any directory',
    )
  })
})
