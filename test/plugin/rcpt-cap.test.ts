// [limits] max_recipients_per_message through the compiled plugin (haraka-test-fixtures), issue 11
// item 5: the RCPT over the cap gets 550 5.5.3 and leaves the message, the refused RCPTs count as
// recipients attempted at queue_outbound, exempt accounts are not capped, monitor mode only logs.

import assert from 'node:assert/strict'
import * as constants from 'haraka-constants'
import * as fixtures from 'haraka-test-fixtures'
import type { FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import {
  callHook,
  fixtureSession,
  makeGuard,
  rcptTo,
  replyText,
  transactionOf,
  type HookOutcome,
} from '../../support/plugin'

type LoggedConnection = FixtureConnection & { hgLogs: Array<[string, string]> }

function session(login: string | undefined): LoggedConnection {
  const logs: Array<[string, string]> = []
  return Object.assign(
    fixtureSession({
      login,
      relaying: login !== undefined,
      mailFrom: 'alice@example.com',
      log: (level, msg) => logs.push([level, String(msg)]),
    }),
    { hgLogs: logs },
  )
}

/** RCPT TO for n recipients; the answer codes in order. */
async function sendRcpts(plugin: FixturePlugin, c: FixtureConnection, n: number): Promise<HookOutcome[]> {
  const out: HookOutcome[] = []
  for (let i = 0; i < n; i++) out.push(await rcptTo(plugin, c, `r${i}@example.net`))
  return out
}

const queue = (plugin: FixturePlugin, c: FixtureConnection): Promise<HookOutcome> =>
  callHook(plugin, 'count_message', c)

/** The recipients queue_outbound counted for the message (its count note). */
function counted(c: FixtureConnection): number | undefined {
  return (transactionOf(c).notes.hijack_guard as { recipients?: number } | undefined)?.recipients
}

const INI = '[alert]\nto=postmaster@example.com\n'

describe('plugin: recipients per message', function () {
  it('accepts 100 recipients and refuses the 101st and later with 550 5.5.3 by default; counts all 102 attempted', async function () {
    const { plugin } = makeGuard(INI)
    const c = session('Alice@Example.com')
    const answers = await sendRcpts(plugin, c, 102)
    assert.ok(
      answers.slice(0, 100).every((a) => a.rc === undefined),
      'the first 100 go on to the other rcpt plugins',
    )
    for (const over of answers.slice(100)) {
      assert.equal(over.rc, constants.deny)
      assert.equal(
        replyText(over.msg),
        '550 5.5.3 Too many recipients: at most 100 per message for this account; send the rest in another message or contact postmaster@example.com',
      )
    }
    assert.equal(transactionOf(c).rcpt_to.length, 100)
    assert.deepEqual(fixtures.getResult(transactionOf(c), plugin).fail, ['over max_recipients_per_message 100'])
    assert.equal(c.hgLogs.filter(([, m]) => /max_recipients_per_message 100 refused/.test(m)).length, 1)
    assert.equal((await queue(plugin, c)).rc, undefined)
    assert.equal(counted(c), 102)
  })

  it('counts the refused RCPTs against the recipients limit: cap 2 and recipients = 4/1m refuse the second message', async function () {
    const { plugin } = makeGuard(`${INI}[limits]\nmessages=0\nrecipients=4/1m\nmax_recipients_per_message=2\n`)
    const first = session('bob@example.com')
    assert.deepEqual(
      (await sendRcpts(plugin, first, 3)).map((a) => a.rc),
      [undefined, undefined, constants.deny],
    )
    assert.equal((await queue(plugin, first)).rc, undefined)
    assert.equal(counted(first), 3)
    // A fresh transaction starts at 0 recipients, but the account's recipient limit remembers.
    const second = session('bob@example.com')
    assert.deepEqual(
      (await sendRcpts(plugin, second, 2)).map((a) => a.rc),
      [undefined, undefined],
    )
    const over = await queue(plugin, second)
    assert.equal(over.rc, constants.deny)
    assert.match(replyText(over.msg), /^550 5\.7\.1 .*limit of 4 recipients/)
  })

  it('applies an [account:LOGIN] cap to that account, [limits] to others, and no cap for 0', async function () {
    const { plugin } = makeGuard(
      `${INI}[limits]\nmax_recipients_per_message=5\n[account:small@example.com]\nmax_recipients_per_message=2\n[account:list@example.com]\nmax_recipients_per_message=0\n`,
    )
    const codes = async (login: string, n: number): Promise<Array<number | undefined>> =>
      (await sendRcpts(plugin, session(login), n)).map((a) => a.rc)
    assert.deepEqual(await codes('SMALL@example.com', 3), [undefined, undefined, constants.deny])
    assert.deepEqual(await codes('other@example.com', 6), [...Array<undefined>(5).fill(undefined), constants.deny])
    assert.ok((await codes('list@example.com', 500)).every((rc) => rc === undefined))
  })

  it('does not cap exempt accounts or sessions without a login', async function () {
    const { plugin } = makeGuard(
      `${INI}[limits]\nmax_recipients_per_message=2\n[exempt]\naccounts=scanner@example.com\n`,
    )
    for (const login of ['scanner@example.com', undefined]) {
      const answers = await sendRcpts(plugin, session(login), 10)
      assert.ok(
        answers.every((a) => a.rc === undefined),
        String(login),
      )
    }
  })

  it('in monitor mode accepts every recipient, logs one warning per message and counts them all', async function () {
    const { plugin } = makeGuard(`${INI}[main]\nmode=monitor\n[limits]\nmax_recipients_per_message=3\n`)
    const c = session('carol@example.com')
    const answers = await sendRcpts(plugin, c, 6)
    assert.ok(answers.every((a) => a.rc === undefined))
    assert.equal(transactionOf(c).rcpt_to.length, 6)
    const warnings = c.hgLogs.filter(
      ([level, m]) => level === 'logwarn' && /monitor mode: .*more than 3 recipients/.test(m),
    )
    assert.equal(warnings.length, 1)
    assert.deepEqual(fixtures.getResult(transactionOf(c), plugin).msg, ['over max_recipients_per_message 3 (monitor)'])
    assert.equal((await queue(plugin, c)).rc, undefined)
    assert.equal(counted(c), 6)
  })

  it('names the cap in the startup line, "none" for 0', function () {
    const line = (ini: string): string =>
      makeGuard(ini).logs.find(([level, text]) => level === 'loginfo' && /mode=/.test(text))?.[1] ?? ''
    assert.match(line(INI), / max_recipients_per_message=100 /)
    assert.match(line(`${INI}[limits]\nmax_recipients_per_message=0\n`), / max_recipients_per_message=none /)
  })

  it('still answers the reply address alone in its transaction, whatever the cap', async function () {
    const { plugin } = makeGuard(`${INI}[limits]\nmax_recipients_per_message=1\n`)
    const c = session('dave@example.com')
    assert.equal((await rcptTo(plugin, c, 'hijack-guard+x@mx.test.example')).rc, constants.ok)
    assert.equal((await rcptTo(plugin, c, 'bob@example.net')).rc, constants.denysoft)
  })
})
