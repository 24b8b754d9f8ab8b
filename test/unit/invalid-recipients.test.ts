// [signals] invalid_recipients in config.ts (default, off, [account:LOGIN], buckets, bad values)
// and the alert's wording for it.

import assert from 'node:assert/strict'
import { composeAlert } from '../../lib/alert'
import { ConfigError, invalidRulesForAccount, parseConfig } from '../../lib/config'
import { seriesId } from '../../lib/store/series'

describe('[signals] invalid_recipients', function () {
  it('defaults to 100/1h with the [limits] buckets, series kind i', function () {
    const cfg = parseConfig({})
    assert.deepEqual(cfg.invalidRecipients, [
      { kind: 'invalid_recipients', max: 100, windowMs: 3_600_000, buckets: 30, bucketMs: 120_000, text: '100/1h' },
    ])
    assert.equal(seriesId(cfg.invalidRecipients[0]!), 'i120000x30')
    assert.equal(parseConfig({ limits: { buckets: '10' } }).invalidRecipients[0]?.bucketMs, 360_000)
  })

  it('is off when empty or 0, and reads several windows', function () {
    assert.deepEqual(parseConfig({ signals: { invalid_recipients: '' } }).invalidRecipients, [])
    assert.deepEqual(parseConfig({ signals: { invalid_recipients: '0' } }).invalidRecipients, [])
    const two = parseConfig({ signals: { invalid_recipients: '20/10m, 100/1d' } })
    assert.deepEqual(
      two.invalidRecipients.map((r) => r.text),
      ['20/10m', '100/1d'],
    )
    assert.ok(!two.warnings.some((w) => w.includes('invalid_recipients')), two.warnings.join('; '))
  })

  it('takes an [account:LOGIN] value for that canonical account only, without an unknown-key warning', function () {
    const cfg = parseConfig({
      signals: { invalid_recipients: '50/1h' },
      'account:List@Example.com': { invalid_recipients: '500/1h', buckets: '6' },
      'account:quiet@example.com': { invalid_recipients: '' },
      'account:other@example.com': { messages: '10/1m' },
    })
    assert.deepEqual(
      invalidRulesForAccount(cfg, 'list@example.com').map((r) => [r.text, r.buckets]),
      [['500/1h', 6]],
    )
    assert.deepEqual(invalidRulesForAccount(cfg, 'quiet@example.com'), [])
    assert.equal(invalidRulesForAccount(cfg, 'other@example.com')[0]?.text, '50/1h')
    assert.equal(invalidRulesForAccount(cfg, 'alice@example.com')[0]?.text, '50/1h')
    assert.ok(!cfg.warnings.some((w) => w.includes('invalid_recipients')), cfg.warnings.join('; '))
  })

  it('refuses a bad value, naming the key', function () {
    assert.throws(
      () => parseConfig({ signals: { invalid_recipients: 'lots' } }),
      (err) => err instanceof ConfigError && err.key === 'signals.invalid_recipients',
    )
    assert.throws(
      () => parseConfig({ 'account:bob': { invalid_recipients: '5/0m' } }),
      (err) => err instanceof ConfigError && err.key === 'account:bob.invalid_recipients',
    )
  })

  it('the alert says the trigger was invalid recipients, with the count and the limit', function () {
    const over = { kind: 'invalid_recipients' as const, max: 100, windowMs: 3_600_000, text: '100/1h', count: 100 }
    const mail = composeAlert({
      record: {
        account: 'alice@example.com',
        reason: 'limit',
        by: 'limit',
        at: Date.UTC(2030, 0, 1),
        incident: 'a'.repeat(32),
        over,
        counts: [over],
        evidence: [{ ip: '192.0.2.7', helo: 'c.example', domains: ['example.net'], subject: '550 No such user (x)' }],
      },
      token: 'b'.repeat(32),
      monitor: false,
      from: 'hijack-guard@mx.example',
      to: ['postmaster@example.com'],
      replyAddress: 'hijack-guard@mx.example',
      me: 'mx.example',
      tokenTtlMs: 86_400_000,
      cliCommand: 'hijack-guard enable alice@example.com',
      now: Date.UTC(2030, 0, 1),
    })
    assert.match(
      mail.message,
      /Subject: Account alice@example\.com disabled: reached 100 invalid recipients \(refused for good at RCPT or hard-bounced\) in 1 hour/,
    )
    assert.match(mail.message, /invalid_recipients +100 of 100 in 1 hour +<- limit reached/)
    assert.match(mail.message, /Evidence from its last 1 refused recipient:/)
    assert.match(mail.message, /Refusals: +"550 No such user \(x\)"/)
  })
})
