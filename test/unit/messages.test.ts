// The texts the plugin answers with and logs: durations, counts and limits as a person reads
// them, and SMTP replies that stay short and free of control characters whatever the account.

import * as assert from 'node:assert/strict'
import {
  describeCount,
  describeLimit,
  disabledReply,
  formatDuration,
  overLimitReply,
  shownAccount,
  storeDownReply,
} from '../../lib/messages'
import type { WindowCount } from '../../lib/store'

const OVER: WindowCount = { kind: 'messages', max: 500, windowMs: 1_800_000, text: '500/30m', count: 500 }
// C0 controls and DEL: what could end an SMTP reply line early or forge another one.
const CONTROL = /[\x00-\x1f\x7f]/

describe('messages', function () {
  describe('formatDuration', function () {
    const cases: ReadonlyArray<[number, string]> = [
      [1_800_000, '30 minutes'],
      [60_000, '1 minute'],
      [3_600_000, '1 hour'],
      [86_400_000, '1 day'],
      [604_800_000, '7 days'],
      [90_000, '90 seconds'],
      [1000, '1 second'],
      [5_400_000, '90 minutes'],
      [250, '250 ms'],
      [1500, '1500 ms'],
    ]
    for (const [ms, text] of cases) {
      it(`writes ${ms} ms as "${text}"`, function () {
        assert.equal(formatDuration(ms), text)
      })
    }
  })

  describe('counts and limits', function () {
    it('describes a count as a person reads it', function () {
      assert.equal(describeCount({ ...OVER, count: 20, windowMs: 60_000 }), '20 messages in 1 minute')
      assert.equal(
        describeCount({ kind: 'recipients', max: 2500, windowMs: 86_400_000, text: '2500/24h', count: 2501 }),
        '2501 recipients in 1 day',
      )
    })

    it('describes a limit as the operator wrote it', function () {
      assert.equal(describeLimit(OVER), 'messages 500/30m')
    })
  })

  describe('SMTP reply texts', function () {
    const hostile = [
      `${'x'.repeat(512)}\r\n250 OK\r\n${'y'.repeat(512)}`,
      'a\u0000b\u007f\tc'.repeat(200),
      'é'.repeat(1024),
    ]

    it('names the account, the limit, the window and whom to contact when a message goes over', function () {
      assert.equal(
        overLimitReply('alice@example.com', OVER, 'postmaster@example.com'),
        'Account alice@example.com reached its limit of 500 messages in 30 minutes and has been disabled; contact postmaster@example.com',
      )
    })

    it('says a disabled account is disabled and whom to contact', function () {
      assert.equal(
        disabledReply({ account: 'alice@example.com', by: 'limit' }, 'pm@example.com'),
        'Account alice@example.com is disabled after unusual sending; contact pm@example.com',
      )
    })

    it('says "by the postmaster", not "after unusual sending", for an account disabled by hand, and never shows the reason', function () {
      for (const by of ['cli:root', 'cli:alice', 'test']) {
        // A whole record, reason included: the reply must leave the reason out.
        const record = { account: 'alice@example.com', by, reason: 'secret note' }
        const text = disabledReply(record, 'pm@example.com')
        assert.equal(text, 'Account alice@example.com is disabled by the postmaster; contact pm@example.com')
      }
      assert.equal(
        disabledReply({ account: 'alice@example.com', by: '' }, 'pm@example.com'),
        'Account alice@example.com is disabled; contact pm@example.com',
      )
    })

    it('says the limits cannot be checked and whom to contact when the store is down', function () {
      const text = storeDownReply('pm@example.com')
      assert.match(text, /try again later/)
      assert.match(text, /pm@example\.com$/)
    })

    it('stays under 400 characters without control characters for a 1 KB account name full of them', function () {
      for (const account of hostile) {
        assert.ok(account.length >= 1024)
        for (const text of [
          overLimitReply(account, OVER, 'postmaster@example.com'),
          disabledReply({ account, by: 'limit' }, 'postmaster@example.com'),
        ]) {
          assert.ok(text.length < 400, `${text.length} characters`)
          assert.doesNotMatch(text, CONTROL)
          assert.match(text, /contact postmaster@example\.com$/)
        }
      }
    })

    it('shows at most 64 characters of an account, marking the cut', function () {
      assert.equal(shownAccount('alice@example.com'), 'alice@example.com')
      assert.equal(shownAccount('x'.repeat(64)), 'x'.repeat(64))
      assert.equal(shownAccount('x'.repeat(65)), `${'x'.repeat(61)}...`)
      assert.equal(shownAccount('a\r\nb'), 'a??b')
    })
  })
})
