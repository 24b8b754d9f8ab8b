// RCPT TO and the reply address through the compiled plugin (haraka-test-fixtures), issue 8
// item 3: at most one reply-address recipient per transaction, a reply alone in its
// transaction, and constant work per RCPT (the recipient list is never scanned).

import assert from 'node:assert/strict'
import { Address } from '@haraka/email-address'
import * as constants from 'haraka-constants'
import * as fixtures from 'haraka-test-fixtures'
import type { FixtureAddress, FixtureConnection, FixturePlugin } from 'haraka-test-fixtures'
import { callHook, makeGuard, replyText, transactionOf, type HookOutcome } from '../../support/plugin'

const INI = '[limits]\nmessages=1/1m\n[alert]\nto=postmaster@example.com\n'
const REPLY = (token: string): string => `hijack-guard+hg-${token.repeat(32)}@mx.test.example`
const LEVELS = ['loginfo', 'lognotice', 'logwarn', 'logerror', 'logcrit', 'logdebug'] as const

function session(): FixtureConnection {
  const connection = fixtures.makeConnection({
    ip: '192.0.2.7',
    helo: 'client.example',
    relaying: false,
    mailFrom: 'someone@elsewhere.example',
    withTxn: true,
  })
  for (const level of LEVELS) connection[level] = () => undefined
  return connection
}

/**
 * A recipient list that counts every read other than its length: any scan of it by the plugin
 * shows up as reads.
 */
function watchedList(): { proxy: FixtureAddress[]; list: FixtureAddress[]; reads: { count: number } } {
  const list: FixtureAddress[] = []
  const reads = { count: 0 }
  const proxy = new Proxy(list, {
    get(target, prop, receiver): unknown {
      if (prop !== 'length') reads.count++
      return Reflect.get(target, prop, receiver)
    },
  })
  return { proxy, list, reads }
}

/**
 * RCPT TO as Haraka runs it: appended first, dropped again when refused (on the list behind a
 * watched one, so that Haraka's own work is not counted as the plugin's).
 */
async function rcpt(
  plugin: FixturePlugin,
  connection: FixtureConnection,
  address: string,
  list: FixtureAddress[] = transactionOf(connection).rcpt_to,
): Promise<HookOutcome> {
  const recipient = new Address(`<${address}>`)
  list.push(recipient)
  const answer = await callHook(plugin, 'check_rcpt', connection, [recipient, []])
  if (answer.rc === constants.deny || answer.rc === constants.denysoft) list.pop()
  return answer
}

describe('plugin: one reply-address recipient per transaction', function () {
  it('accepts the first reply-address recipient and answers 452 4.5.3 to a second, whatever its token or case', async function () {
    const { plugin } = makeGuard(INI)
    const c = session()
    const first = await rcpt(plugin, c, REPLY('a'))
    assert.equal(first.rc, constants.ok)
    assert.match(replyText(first.msg), /^250 /)
    for (const address of [REPLY('a'), REPLY('b'), 'hijack-guard@mx.test.example', 'HIJACK-GUARD+x@MX.test.example']) {
      const again = await rcpt(plugin, c, address)
      assert.equal(again.rc, constants.denysoft, address)
      assert.match(replyText(again.msg), /^452 4\.5\.3 one reply-address recipient per message/, address)
    }
    const tx = transactionOf(c)
    assert.equal(tx.rcpt_to.length, 1)
    assert.deepEqual(tx.notes.hijack_guard_reply, [
      { local: `hijack-guard+hg-${'a'.repeat(32)}`, domain: 'mx.test.example' },
    ])
  })

  it('refuses other recipients beside a reply in either order, and accepts a reply after another recipient was refused', async function () {
    const { plugin } = makeGuard(INI)
    const c = session()
    assert.equal((await rcpt(plugin, c, REPLY('a'))).rc, constants.ok)
    const other = await rcpt(plugin, c, 'bob@example.net')
    assert.equal(other.rc, constants.denysoft)
    assert.match(
      replyText(other.msg),
      /^452 4\.5\.3 send the reply to hijack-guard@mx\.test\.example in a message of its own/,
    )

    const d = session()
    assert.equal((await rcpt(plugin, d, 'bob@example.net')).rc, undefined)
    const late = await rcpt(plugin, d, REPLY('a'))
    assert.equal(late.rc, constants.denysoft)
    assert.match(replyText(late.msg), /^452 4\.5\.3 .*in a message of its own/)
    assert.equal(transactionOf(d).notes.hijack_guard_reply, undefined)

    // a recipient a later rcpt plugin refused is gone from rcpt_to (Haraka pops it): not a mix
    const e = session()
    assert.equal((await rcpt(plugin, e, 'nobody@example.net')).rc, undefined)
    transactionOf(e).rcpt_to.pop()
    assert.equal((await rcpt(plugin, e, REPLY('a'))).rc, constants.ok)
  })

  it('does constant work per RCPT: 10,000 RCPTs never read the recipient list beyond its length', async function () {
    const { plugin } = makeGuard(INI)
    for (const first of [REPLY('c'), 'bob@example.net']) {
      const c = session()
      const { proxy, list, reads } = watchedList()
      transactionOf(c).rcpt_to = proxy
      const answers = { ok: 0, cont: 0, denysoft: 0 }
      for (let i = 0; i < 10000; i++) {
        const answer = await rcpt(plugin, c, i === 0 ? first : i % 2 ? REPLY('d') : 'carol@example.net', list)
        if (answer.rc === constants.ok) answers.ok++
        else if (answer.rc === constants.denysoft) answers.denysoft++
        else answers.cont++
      }
      assert.equal(reads.count, 0, `the plugin read rcpt_to ${reads.count} times`)
      if (first === 'bob@example.net') {
        // the other recipients are CONT (for the other rcpt plugins), every reply 452
        assert.deepEqual(answers, { ok: 0, cont: 5000, denysoft: 5000 })
        assert.equal(list.length, 5000)
      } else {
        assert.deepEqual(answers, { ok: 1, cont: 0, denysoft: 9999 })
        assert.equal(list.length, 1)
      }
    }
  })
})
