import assert from 'node:assert/strict'
import { ConfigError, parseConfig } from '../../lib/config'
import { inNetworks, isNetwork, networkOf } from '../../lib/network'
import { answers } from '../../lib/answers'
import { composeSprayAlert } from '../../lib/alert'

describe('[signals] auth_failures', function () {
  it('defaults to 20/1h with action alert', function () {
    assert.deepEqual(parseConfig({}).authFailures, { max: 20, windowMs: 3_600_000, text: '20/1h', action: 'alert' })
  })

  it('is off when empty or 0', function () {
    assert.equal(parseConfig({ signals: { auth_failures: '' } }).authFailures, null)
    assert.equal(parseConfig({ signals: { auth_failures: '0' } }).authFailures, null)
  })

  it('reads N/window and the block action', function () {
    const c = parseConfig({ signals: { auth_failures: '5/10m', auth_failures_action: 'Block' } })
    assert.deepEqual(c.authFailures, { max: 5, windowMs: 600_000, text: '5/10m', action: 'block' })
    assert.ok(!c.warnings.some((w) => w.includes('signals')), c.warnings.join('; '))
  })

  it('refuses a bad value, a bad action and two windows', function () {
    assert.throws(() => parseConfig({ signals: { auth_failures: 'many' } }), ConfigError)
    assert.throws(() => parseConfig({ signals: { auth_failures_action: 'drop' } }), /alert, block/)
    assert.throws(() => parseConfig({ signals: { auth_failures: '5/1m, 20/1h' } }), /one N\/window/)
  })
})

describe('networkOf', function () {
  it('is the /24 of an IPv4 address (also IPv4-mapped) and the /48 of an IPv6 address', function () {
    assert.equal(networkOf('127.1.0.1'), '127.1.0.0/24')
    assert.equal(networkOf('::ffff:192.0.2.77'), '192.0.2.0/24')
    assert.equal(networkOf('2001:db8:1:2::5'), '2001:db8:1::/48')
    assert.equal(networkOf('2001:0db8:0001:ffff:1:2:3:4'), '2001:db8:1::/48')
    assert.equal(networkOf('2001:db8::1'), '2001:db8:0::/48')
    assert.equal(networkOf('::1'), '0:0:0::/48')
    assert.notEqual(networkOf('2001:db8:2::1'), networkOf('2001:db8:1::1'))
  })
})

describe('the spraying answer and alert', function () {
  it('answers 454 4.7.0', function () {
    assert.deepEqual(answers.authBlocked('postmaster@example.com'), {
      code: 454,
      message: '4.7.0 Too many failed logins for this account; try again later or contact postmaster@example.com',
    })
  })

  it('names the login, the count, the sources (capped) and the block', function () {
    const sources = Array.from({ length: 20 }, (_, i) => `198.51.100.${i}`)
    const mail = composeSprayAlert({
      account: 'alice@example.com',
      count: 20,
      max: 20,
      windowMs: 3_600_000,
      sources,
      blocked: true,
      until: Date.UTC(2030, 0, 1, 1),
      monitor: false,
      from: 'hijack-guard@mx.example.com',
      to: ['postmaster@example.com'],
      me: 'mx.example.com',
      now: Date.UTC(2030, 0, 1),
      id: 'abc',
      cliCommand: 'hijack-guard disable alice@example.com',
    })
    assert.match(mail.message, /^Subject: Password spraying against alice@example\.com: 20 failed logins in 1 hour\r$/m)
    assert.match(mail.message, /198\.51\.100\.0,/)
    assert.match(mail.message, /\(\+10 more\)/)
    assert.match(mail.message, /answered 454 4\.7\.0 without checking the password, until 2030-01-01 01:00/)
    assert.doesNotMatch(mail.message, /^Reply-To:/m)
  })
})

describe('inNetworks and isNetwork ([signals] exempt_networks)', function () {
  const cidrs = ['192.0.2.0/24', '10.0.0.0/8', '2001:db8::/32', '198.51.100.7']
  it('matches IPv4 and IPv6 networks, single addresses, and IPv4-mapped IPv6 addresses as IPv4', function () {
    for (const ip of [
      '192.0.2.1',
      '192.0.2.255',
      '10.200.3.4',
      '2001:db8:1::1',
      '2001:DB8::5',
      '198.51.100.7',
      '::ffff:10.1.1.1',
    ])
      assert.equal(inNetworks(ip, cidrs), true, ip)
    for (const ip of ['192.0.3.1', '11.0.0.1', '2001:db9::1', '198.51.100.8', '::ffff:192.0.3.1', '', 'not-an-ip'])
      assert.equal(inNetworks(ip, cidrs), false, ip)
    assert.equal(inNetworks('192.0.2.1', []), false)
  })

  it('accepts CIDRs and addresses only', function () {
    for (const ok of ['192.0.2.0/24', '0.0.0.0/0', '2001:db8::/32', '::/0', '192.0.2.1', '::1'])
      assert.ok(isNetwork(ok), ok)
    for (const bad of [
      '192.0.2.0/33',
      '192.0.2.0/',
      '2001:db8::/129',
      'example.com',
      '192.0.2.0/24/8',
      '192.0.2.0/-1',
      '1.2.3',
    ])
      assert.ok(!isNetwork(bad), bad)
  })
})
