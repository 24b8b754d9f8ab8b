// Address-like values (issue 8 items 9 and 10): a value that is only a comment is empty, every
// login and address is checked at startup, and the reply address never defaults to a mailbox
// someone reads.

import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as ini from 'haraka-config/lib/readers/ini'
import { ConfigError, parseConfig, type Config } from '../../lib/config'
import { REPO_ROOT, tmpDir } from '../../support/process'

/** Parses ini text exactly as Haraka does (haraka-config's ini reader, from a file), then our parser. */
function fromIni(text: string, me = 'mx.example.com'): Config {
  const file = path.join(tmpDir('ini'), 'hijack-guard.ini')
  fs.writeFileSync(file, text)
  return parseConfig(ini.load(file, {}), me)
}

describe('config: values that are only a comment', function () {
  it('the README\'s old example "admins =              ; default: the [alert] to addresses" leaves the admins at their default', function () {
    const cfg = fromIni(
      [
        '[alert]',
        'to = pm@example.com, sec@example.com',
        '[reactivate]',
        'admins =              ; default: the [alert] to addresses',
        '',
      ].join('\n'),
    )
    assert.deepEqual([...cfg.reactivate.admins].sort(), ['pm@example.com', 'sec@example.com'])
  })

  it('every key: a value starting with ; or # is empty (contact, from, reply_address, exempt accounts, default_domain)', function () {
    const cfg = fromIni(
      [
        '[alert]',
        'to = pm@example.com',
        'contact =   ; default: the first to',
        'from =  # default',
        'reply_address = ;default',
        '[exempt]',
        'accounts =   ; none',
        '[accounts]',
        'default_domain =  ; none',
        '',
      ].join('\n'),
    )
    assert.equal(cfg.contact, 'pm@example.com')
    assert.equal(cfg.alert.from, 'hijack-guard@mx.example.com')
    assert.equal(cfg.alert.replyAddress, 'hijack-guard@mx.example.com')
    assert.equal(cfg.exempt.size, 0)
    assert.equal(cfg.accounts.defaultDomain, '')
  })
})

describe('config: logins and addresses are checked', function () {
  const cases: ReadonlyArray<[string, string, string]> = [
    ['reactivate', 'admins', 'root admin'],
    ['reactivate', 'admins', 'ops@example.com; root'],
    ['reactivate', 'admins', 'ops@example.com,\u200b'],
    ['reactivate', 'admins', 'bad\u0007bell'],
    ['exempt', 'accounts', 'scanner relay'],
    ['exempt', 'accounts', 'tab\there'],
    ['alert', 'contact', 'the helpdesk'],
    ['alert', 'contact', 'helpdesk'],
    ['alert', 'to', 'pm@example.com sec@example.com'],
    ['alert', 'to', 'postmaster'],
    ['alert', 'from', 'security'],
    ['alert', 'from', 'a@b@c'],
    ['alert', 'reply_address', 'guard at example.com'],
  ]
  for (const [sect, key, value] of cases) {
    it(`refuses [${sect}] ${key} = ${JSON.stringify(value)} with a ConfigError naming the file, key and value`, function () {
      assert.throws(
        () => parseConfig({ [sect]: { [key]: value } }),
        (err) => {
          assert.ok(err instanceof ConfigError, String(err))
          assert.equal(err.key, `${sect}.${key}`)
          assert.ok(err.message.startsWith('hijack-guard.ini: '), err.message)
          assert.ok(err.message.includes(JSON.stringify(value)), err.message)
          return true
        },
      )
    })
  }

  it('accepts logins without "@" in admins and exempt accounts (they are logins, not addresses)', function () {
    const cfg = parseConfig({ reactivate: { admins: 'root, ops@example.com' }, exempt: { accounts: 'scanner' } })
    assert.deepEqual([...cfg.reactivate.admins].sort(), ['ops@example.com', 'root'])
    assert.deepEqual([...cfg.exempt], ['scanner'])
  })

  it('refuses an [account:LOGIN] section whose login is empty or has a space', function () {
    assert.throws(() => parseConfig({ 'account: ': { messages: '1/1m' } }), ConfigError)
    assert.throws(() => parseConfig({ 'account:a b': { messages: '1/1m' } }), ConfigError)
  })
})

describe('config: the reply address', function () {
  it('defaults to hijack-guard@<me> whatever [alert] from is', function () {
    const cfg = parseConfig({ alert: { to: 'pm@example.com', from: 'security@example.com' } }, 'mx.example.com')
    assert.equal(cfg.alert.from, 'security@example.com')
    assert.equal(cfg.alert.replyAddress, 'hijack-guard@mx.example.com')
  })

  it('refuses an explicit reply_address equal to an explicit from (any +detail, any case): from is a real mailbox', function () {
    for (const reply of ['security@example.com', 'Security+alerts@Example.com']) {
      assert.throws(
        () => parseConfig({ alert: { to: 'pm@example.com', from: 'security@example.com', reply_address: reply } }),
        (err) =>
          err instanceof ConfigError &&
          err.key === 'alert.reply_address' &&
          /the \[alert\] from address/.test(err.message),
      )
    }
  })

  it('accepts reply_address = from when from is the default hijack-guard@<me>', function () {
    const cfg = parseConfig(
      { alert: { to: 'pm@example.com', reply_address: 'hijack-guard@mx.example.com' } },
      'mx.example.com',
    )
    assert.equal(cfg.alert.replyAddress, 'hijack-guard@mx.example.com')
  })

  it('still refuses postmaster, abuse and an [alert] to mailbox (with +detail, any case)', function () {
    for (const reply of ['postmaster@example.com', 'ABUSE+x@example.com', 'PM+x@Example.com']) {
      assert.throws(
        () => parseConfig({ alert: { to: 'pm@example.com', reply_address: reply } }),
        /alert\.reply_address/,
        reply,
      )
    }
  })
})

describe('docs: ini examples keep comments on their own lines', function () {
  const files = [
    'README.md',
    ...fs
      .readdirSync(path.join(REPO_ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => path.join('docs', f)),
    path.join('config', 'hijack-guard.ini'),
  ]
  for (const file of files) {
    it(`${file}: no "key = value ; comment" line in an ini example`, function () {
      const text = fs.readFileSync(path.join(REPO_ROOT, file), 'utf8')
      const blocks = file.endsWith('.ini')
        ? [text]
        : [...text.matchAll(/```ini\n([\s\S]*?)```/g)].map((m) => m[1] ?? '')
      const bad = blocks.flatMap((block) => block.split('\n').filter((line) => /^\s*[\w.:@-]+\s*=.*[;#]/.test(line)))
      assert.deepEqual(bad, [], `${file} has an inline comment after a value (Haraka keeps it as the value)`)
    })
  }
})
