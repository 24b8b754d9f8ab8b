// parseConfig, the one place every config default and every refusal of a bad value lives:
// the defaults, the shipped ini read as Haraka reads it, each value's syntax, and the
// ConfigError that names the file, the key and the value.

import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as ini from 'haraka-config/lib/readers/ini'
import {
  authFailuresFor,
  CONFIG_FILE,
  ConfigError,
  DEFAULTS,
  parseConfig,
  parseDuration,
  maxRecipientsFor,
  parseRules,
  rulesForAccount,
  withRedisIni,
  type Rule,
} from '../../lib/config'
import { REPO_ROOT } from '../../support/process'

const SHIPPED_INI = path.join(REPO_ROOT, 'config', 'hijack-guard.ini')

/** The [signals] networks rules every rule set ends with unless it sets its own. */
const NETWORK_RULES: readonly Rule[] = parseRules('signals.networks', 'networks', DEFAULTS.signals.networks, 1)

const DEFAULT_RULES: readonly Rule[] = [
  { kind: 'messages', max: 500, windowMs: 1_800_000, buckets: 30, bucketMs: 60_000, text: '500/30m' },
  { kind: 'recipients', max: 2500, windowMs: 1_800_000, buckets: 30, bucketMs: 60_000, text: '2500/30m' },
  ...NETWORK_RULES,
]

function ruleTexts(rules: readonly Rule[]): string[] {
  return rules.map((r) => `${r.kind} ${r.text}`)
}

const NET = ruleTexts(NETWORK_RULES)

describe('config', function () {
  describe('parseConfig defaults', function () {
    it('gives 500/30m messages, 2500/30m recipients, 30 buckets, enforce, redis, open and 1 s for an empty file', function () {
      const cfg = parseConfig({})
      assert.deepEqual(cfg.rules, DEFAULT_RULES)
      assert.equal(cfg.mode, 'enforce')
      assert.equal(cfg.store, 'redis')
      assert.equal(cfg.onStoreError, 'open')
      assert.equal(cfg.storeTimeoutMs, 1000)
      assert.deepEqual(cfg.accounts, { fold: 'nfkc', defaultDomain: '', domainAliases: new Map(), xclientLogin: false })
      assert.equal(cfg.stateFile, 'hijack-guard.state.json')
      assert.equal(cfg.exempt.size, 0)
      assert.equal(cfg.accountRules.size, 0)
      assert.deepEqual(cfg.redis, {
        host: '127.0.0.1',
        port: 6379,
        db: 0,
        journal: 'hijack-guard.journal.json',
        journalCheckMs: 60000,
      })
      assert.equal(cfg.alert.from, 'hijack-guard@localhost')
      assert.equal(cfg.alert.replyAddress, 'hijack-guard@localhost')
      assert.equal(cfg.contact, 'postmaster@localhost')
      assert.ok(
        cfg.warnings.every((w) => !/unknown/.test(w)),
        cfg.warnings.join('; '),
      )
    })

    it('names this server (config/me) in the default addresses', function () {
      const cfg = parseConfig({}, 'mx.example.com')
      assert.equal(cfg.alert.from, 'hijack-guard@mx.example.com')
      assert.equal(cfg.contact, 'postmaster@mx.example.com')
    })

    it('reads the shipped config/hijack-guard.ini, as Haraka parses it, as the defaults without unknown keys', function () {
      const raw = ini.load(SHIPPED_INI, {})
      const cfg = parseConfig(raw)
      assert.deepEqual(cfg, parseConfig({}))
      assert.ok(
        cfg.warnings.every((w) => !/unknown/.test(w)),
        cfg.warnings.join('; '),
      )
    })
  })

  describe('the defaults table', function () {
    // Every `key = value` of the shipped file, also the commented-out `; key = value` lines that
    // show a default the operator may set ([redis] keys fall back to config/redis.ini first).
    function shippedKeys(): Map<string, string> {
      const found = new Map<string, string>()
      let sectionName = ''
      for (const line of fs.readFileSync(SHIPPED_INI, 'utf8').split('\n')) {
        // A commented example section ("; [account:...]") starts a section of examples too.
        const header = /^(?:;\s*)?\[([^\]]+)\]\s*$/.exec(line)
        if (header?.[1]) sectionName = header[1]
        const entry = /^(;\s*)?([a-z_]+)\s*=\s*(.*?)\s*$/.exec(line)
        if (!entry?.[2] || sectionName === '') continue
        const [, commented, key, value = ''] = entry
        // A commented line is a default only in a section of the table and as one word: prose
        // that happens to hold " = " is not.
        if (commented && (!(sectionName in DEFAULTS) || /\s/.test(value))) continue
        found.set(`${sectionName}.${key}`, value)
      }
      return found
    }

    it('is what the shipped config/hijack-guard.ini shows, key by key, and the file shows no key the table lacks', function () {
      const shipped = shippedKeys()
      const table = new Map(
        Object.entries(DEFAULTS).flatMap(([name, keys]) =>
          Object.entries(keys as Record<string, string>).map(([key, value]): [string, string] => [
            `${name}.${key}`,
            value,
          ]),
        ),
      )
      for (const [key, value] of table) assert.equal(shipped.get(key), value, `${key} in the shipped file`)
      for (const key of shipped.keys()) assert.ok(table.has(key), `${key} is in the shipped file but not in DEFAULTS`)
    })

    it('drives parsing: each default, written out, parses to the same config as an empty file', function () {
      const written = Object.fromEntries(Object.entries(DEFAULTS).map(([name, keys]) => [name, { ...keys }]))
      assert.deepEqual(parseConfig(written), parseConfig({}))
    })
  })

  describe('parseConfig values', function () {
    it('reads several rules of each kind', function () {
      const cfg = parseConfig({ limits: { messages: '500/30m, 2000/24h', recipients: '100/1m,2500/30m', buckets: 10 } })
      assert.deepEqual(ruleTexts(cfg.rules), [
        'messages 500/30m',
        'messages 2000/24h',
        'recipients 100/1m',
        'recipients 2500/30m',
        ...NET,
      ])
      assert.deepEqual(
        cfg.rules.map((r) => [r.windowMs, r.buckets, r.bucketMs]),
        [
          [1_800_000, 10, 180_000],
          [86_400_000, 10, 8_640_000],
          [60_000, 10, 6000],
          [1_800_000, 10, 180_000],
          // A networks rule is one "bucket": its window.
          ...NETWORK_RULES.map((r) => [r.windowMs, 1, r.windowMs]),
        ],
      )
    })

    it('treats 0 or an empty value as no limit of that kind', function () {
      assert.deepEqual(ruleTexts(parseConfig({ limits: { messages: 0 } }).rules), ['recipients 2500/30m', ...NET])
      assert.deepEqual(ruleTexts(parseConfig({ limits: { messages: '0', recipients: '' } }).rules), NET)
      assert.deepEqual(ruleTexts(parseConfig({ limits: { recipients: '  ' } }).rules), ['messages 500/30m', ...NET])
      assert.deepEqual(ruleTexts(parseConfig({ signals: { networks: '0' } }).rules), [
        'messages 500/30m',
        'recipients 2500/30m',
      ])
      assert.deepEqual(ruleTexts(parseConfig({ signals: { networks: '' } }).rules), [
        'messages 500/30m',
        'recipients 2500/30m',
      ])
    })

    it('strips an inline "; comment" from values, as Haraka leaves it in', function () {
      const raw = ini.parseIni(
        'inline.ini',
        {},
        [
          '[main]',
          'mode = monitor   ; log only',
          'store = memory ; one process',
          'store_timeout = 250ms  ; fast',
          '[limits]',
          'messages = 100/1h, 1000/1d   ; two windows',
          'buckets = 12 ; twelve',
          '[exempt]',
          'accounts = Robot@Example.com, other  ; never counted',
        ].join('\n'),
      )
      const cfg = parseConfig(raw)
      assert.equal(cfg.mode, 'monitor')
      assert.equal(cfg.store, 'memory')
      assert.equal(cfg.storeTimeoutMs, 250)
      assert.deepEqual(ruleTexts(cfg.rules), ['messages 100/1h', 'messages 1000/1d', 'recipients 2500/30m', ...NET])
      assert.equal(cfg.rules[0]?.buckets, 12)
      assert.deepEqual([...cfg.exempt].sort(), ['other', 'robot@example.com'])
    })

    it('reads every choice of mode, store and on_store_error, in any case', function () {
      const cfg = parseConfig({
        main: { mode: 'Monitor', store: 'MEMORY', on_store_error: 'closed', store_timeout: '5s' },
      })
      assert.equal(cfg.mode, 'monitor')
      assert.equal(cfg.store, 'memory')
      assert.equal(cfg.onStoreError, 'closed')
      assert.equal(cfg.storeTimeoutMs, 5000)
    })

    it('applies [account:LOGIN] overrides to the lower-cased login, inheriting the other [limits] keys', function () {
      const cfg = parseConfig({
        limits: { messages: '100/1h', recipients: '1000/1h', buckets: 20 },
        'account:Newsletter@Example.COM': { messages: '5000/30m' },
        'account:bulk': { recipients: '0', buckets: 5 },
      })
      const news = rulesForAccount(cfg, 'newsletter@example.com')
      assert.deepEqual(ruleTexts(news), ['messages 5000/30m', 'recipients 1000/1h', ...NET])
      assert.ok(news.filter((r) => r.kind !== 'networks').every((r) => r.buckets === 20))
      const bulk = rulesForAccount(cfg, 'bulk')
      assert.deepEqual(ruleTexts(bulk), ['messages 100/1h', ...NET])
      assert.equal(bulk[0]?.buckets, 5)
      assert.equal(rulesForAccount(cfg, 'someone-else'), cfg.rules)
      assert.equal(rulesForAccount(cfg, 'Newsletter@Example.COM'), cfg.rules, 'lookups take the normalized account')
    })

    it('folds exempt logins and overrides to lower case, trimmed; with the deprecated lowercase_accounts = false local parts keep their case', function () {
      const raw = { exempt: { accounts: ' Alice@Example.com ,bob,, ' }, 'account:Carol': { messages: '1/1m' } }
      const folded = parseConfig(raw)
      assert.deepEqual([...folded.exempt].sort(), ['alice@example.com', 'bob'])
      assert.deepEqual([...folded.accountRules.keys()], ['carol'])
      const kept = parseConfig({ ...raw, main: { lowercase_accounts: 'false' } })
      assert.equal(kept.accounts.fold, 'none')
      assert.deepEqual([...kept.exempt].sort(), ['Alice@example.com', 'bob'])
      assert.deepEqual([...kept.accountRules.keys()], ['Carol'])
    })

    it('reads [alert] addresses and [redis] settings', function () {
      const cfg = parseConfig({
        alert: { to: 'pm@example.com, sec@example.com', from: 'guard@example.com' },
        redis: { host: 'redis.internal', port: '6380', db: 3, username: 'u', password: 'p' },
      })
      assert.deepEqual(cfg.alert, {
        to: ['pm@example.com', 'sec@example.com'],
        from: 'guard@example.com',
        replyAddress: 'hijack-guard@localhost',
      })
      assert.equal(cfg.contact, 'pm@example.com')
      assert.deepEqual(cfg.redis, {
        host: 'redis.internal',
        port: 6380,
        db: 3,
        username: 'u',
        password: 'p',
        journal: 'hijack-guard.journal.json',
        journalCheckMs: 60000,
      })
    })

    it('reads [reactivate]: admin policy, admins defaulting to the [alert] to addresses, tokens valid 7 days', function () {
      const dflt = parseConfig({ alert: { to: 'PM@Example.com' } })
      assert.equal(dflt.reactivate.policy, 'admin')
      assert.deepEqual([...dflt.reactivate.admins], ['pm@example.com'])
      assert.equal(dflt.reactivate.tokenTtlMs, 7 * 86_400_000)
      const set = parseConfig({
        alert: { to: 'pm@example.com' },
        reactivate: { policy: 'token', admins: 'Root, ops@example.com', token_ttl: '2d' },
      })
      assert.equal(set.reactivate.policy, 'token')
      assert.deepEqual([...set.reactivate.admins].sort(), ['ops@example.com', 'root'])
      assert.equal(set.reactivate.tokenTtlMs, 2 * 86_400_000)
    })

    it('warns about unknown sections and keys instead of failing', function () {
      const cfg = parseConfig({
        main: { mode: 'enforce', colour: 'blue' },
        limits: { mesages: '5/1m' },
        'account:x': { mode: 'monitor' },
        extra: { a: 1 },
      })
      assert.deepEqual(cfg.warnings.filter((w) => /unknown/.test(w)).sort(), [
        'unknown key [account:x] mode ignored',
        'unknown key [limits] mesages ignored',
        'unknown key [main] colour ignored',
        'unknown section [extra] ignored',
      ])
      assert.deepEqual(cfg.rules, DEFAULT_RULES)
    })

    it('returns a deeply frozen config, per-account rules included', function () {
      const cfg = parseConfig({ exempt: { accounts: 'a' }, 'account:x': { messages: '5/1m' } })
      for (const part of [
        cfg,
        cfg.rules,
        cfg.rules[0],
        cfg.alert,
        cfg.alert.to,
        cfg.redis,
        cfg.warnings,
        cfg.exempt,
        cfg.accountRules,
      ]) {
        assert.ok(Object.isFrozen(part))
      }
      const own = cfg.accountRules.get('x')
      assert.ok(own, 'x has rules of its own')
      const [ownRule] = own
      assert.ok(ownRule, 'x has a rule of its own')
      assert.ok(Object.isFrozen(own), 'the per-account rule list')
      assert.ok(Object.isFrozen(ownRule), 'a per-account rule')
      // The types forbid these writes; at run time the freeze must refuse them too.
      assert.throws(() => {
        ;(cfg as { mode: string }).mode = 'monitor'
      }, TypeError)
      assert.throws(() => {
        ;(ownRule as { max: number }).max = 1e9
      }, TypeError)
    })
  })

  describe('[signals] networks, exempt_networks, auth_failures per account, and [warn] at', function () {
    it('reads networks rules, and an [account:LOGIN] section that sets its own or turns them off', function () {
      const cfg = parseConfig({
        signals: { networks: '5/1h, 9/1d' },
        'account:roamer': { networks: '30/1d' },
        'account:service': { networks: '0' },
        'account:plain': { messages: '10/1m' },
      })
      assert.deepEqual(ruleTexts(cfg.rules), [
        'messages 500/30m',
        'recipients 2500/30m',
        'networks 5/1h',
        'networks 9/1d',
      ])
      const net = (account: string): string[] =>
        ruleTexts(rulesForAccount(cfg, account)).filter((t) => t.startsWith('networks'))
      assert.deepEqual(net('roamer'), ['networks 30/1d'])
      assert.deepEqual(net('service'), [])
      assert.deepEqual(net('plain'), ['networks 5/1h', 'networks 9/1d'])
      assert.deepEqual(
        cfg.warnings.filter((w) => /unknown/.test(w)),
        [],
      )
    })

    it('refuses a bad networks value, naming the key', function () {
      assert.throws(() => parseConfig({ signals: { networks: '8 per 6h' } }), /signals\.networks/)
      assert.throws(() => parseConfig({ 'account:x': { networks: '8/0h' } }), /account:x\.networks/)
    })

    it('reads exempt_networks as CIDRs or addresses, and refuses anything else', function () {
      const cfg = parseConfig({ signals: { exempt_networks: '192.0.2.0/24, 2001:db8::/32, 198.51.100.7' } })
      assert.deepEqual(cfg.exemptNetworks, ['192.0.2.0/24', '2001:db8::/32', '198.51.100.7'])
      for (const bad of ['192.0.2.0/33', 'office', '192.0.2.0/24/1', '2001:db8::/129', '300.1.1.1'])
        assert.throws(
          () => parseConfig({ signals: { exempt_networks: bad } }),
          (err: Error) => err instanceof ConfigError && err.message.includes('signals.exempt_networks'),
          bad,
        )
    })

    it('reads [warn] at as a percentage or a fraction; empty or 0 turns warnings off; 80% by default', function () {
      assert.equal(parseConfig({}).warnAt, 0.8)
      assert.equal(parseConfig({ warn: { at: '50%' } }).warnAt, 0.5)
      assert.equal(parseConfig({ warn: { at: '0.9' } }).warnAt, 0.9)
      assert.equal(parseConfig({ warn: { at: '' } }).warnAt, 0)
      assert.equal(parseConfig({ warn: { at: '0' } }).warnAt, 0)
      for (const bad of ['120%', 'soon', '-5%', '1.5'])
        assert.throws(() => parseConfig({ warn: { at: bad } }), /warn\.at/, bad)
    })

    it('lets an [account:LOGIN] section set auth_failures for that account, or turn it off', function () {
      const cfg = parseConfig({
        signals: { auth_failures: '20/1h', auth_failures_action: 'block' },
        'account:shared': { auth_failures: '100/1h' },
        'account:kiosk': { auth_failures: '0' },
      })
      assert.deepEqual(authFailuresFor(cfg, 'shared'), {
        max: 100,
        windowMs: 3_600_000,
        text: '100/1h',
        action: 'block',
      })
      assert.equal(authFailuresFor(cfg, 'kiosk'), null)
      assert.equal(authFailuresFor(cfg, 'other')?.max, 20)
      assert.deepEqual(
        cfg.warnings.filter((w) => /unknown/.test(w)),
        [],
      )
    })
  })

  describe('[reactivate] auto_enable_after and require_new_password', function () {
    it('is off and on by default, reads a duration, and refuses anything else naming the key', function () {
      const dflt = parseConfig({})
      assert.deepEqual([dflt.reactivate.autoEnableAfterMs, dflt.reactivate.requireNewPassword], [0, true])
      const set = parseConfig({ reactivate: { auto_enable_after: '4h', require_new_password: 'false' } })
      assert.deepEqual([set.reactivate.autoEnableAfterMs, set.reactivate.requireNewPassword], [14_400_000, false])
      assert.throws(() => parseConfig({ reactivate: { auto_enable_after: 'soon' } }), /reactivate\.auto_enable_after/)
    })
  })

  describe('max_recipients_per_message', function () {
    it('caps a message at 100 recipients by default, for every account', function () {
      const cfg = parseConfig({})
      assert.equal(cfg.maxRecipients, 100)
      assert.equal(maxRecipientsFor(cfg, 'alice@example.com'), 100)
    })

    it('reads another cap, and 0 or an empty value as no cap', function () {
      assert.equal(parseConfig({ limits: { max_recipients_per_message: '25' } }).maxRecipients, 25)
      assert.equal(parseConfig({ limits: { max_recipients_per_message: ' 7  ; seven' } }).maxRecipients, 7)
      assert.equal(parseConfig({ limits: { max_recipients_per_message: '0' } }).maxRecipients, 0)
      assert.equal(parseConfig({ limits: { max_recipients_per_message: '' } }).maxRecipients, 0)
      assert.equal(parseConfig({ limits: { max_recipients_per_message: '; no cap' } }).maxRecipients, 0)
    })

    it('applies an [account:LOGIN] cap to that account only, which otherwise inherits [limits]', function () {
      const cfg = parseConfig({
        limits: { max_recipients_per_message: '50' },
        'account:List@Example.com': { max_recipients_per_message: '5000' },
        'account:small@example.com': { max_recipients_per_message: '3' },
        'account:open@example.com': { max_recipients_per_message: '' },
        'account:other@example.com': { messages: '10/1m' },
      })
      assert.equal(maxRecipientsFor(cfg, 'list@example.com'), 5000)
      assert.equal(maxRecipientsFor(cfg, 'small@example.com'), 3)
      assert.equal(maxRecipientsFor(cfg, 'open@example.com'), 0)
      assert.equal(maxRecipientsFor(cfg, 'other@example.com'), 50)
      assert.equal(maxRecipientsFor(cfg, 'alice@example.com'), 50)
      assert.ok(
        cfg.warnings.every((w) => !/max_recipients/.test(w)),
        cfg.warnings.join('; '),
      )
    })

    it('refuses a bad cap in an [account:LOGIN] section, naming the section and the value', function () {
      assert.throws(
        () => parseConfig({ 'account:Bob': { max_recipients_per_message: 'lots' } }),
        (err) =>
          err instanceof ConfigError &&
          err.key === 'account:Bob.max_recipients_per_message' &&
          err.message.includes('"lots"') &&
          err.message.includes('whole number'),
      )
    })
  })

  describe('invalid values', function () {
    const cases: ReadonlyArray<[string, string, string]> = [
      ['limits', 'messages', 'abc'],
      ['limits', 'messages', '0m'],
      ['limits', 'messages', '500/0m'],
      ['limits', 'messages', '-1/5m'],
      ['limits', 'messages', '0/5m'],
      ['limits', 'messages', '500/30m, 2000/0h'],
      ['limits', 'messages', '500/30'],
      ['limits', 'messages', '500/1.5h'],
      ['limits', 'recipients', '10 per minute'],
      ['limits', 'recipients', '5/10ms'],
      ['limits', 'buckets', '0'],
      ['limits', 'buckets', '5000'],
      ['limits', 'buckets', '61'],
      ['limits', 'buckets', 'many'],
      ['limits', 'max_recipients_per_message', 'abc'],
      ['limits', 'max_recipients_per_message', '-1'],
      ['limits', 'max_recipients_per_message', '1.5'],
      ['limits', 'max_recipients_per_message', '100/1m'],
      ['limits', 'max_recipients_per_message', '1000001'],
      ['main', 'mode', 'dry-run'],
      ['main', 'store', 'mysql'],
      ['main', 'on_store_error', 'maybe'],
      ['main', 'store_timeout', '0s'],
      ['main', 'store_timeout', 'abc'],
      ['main', 'lowercase_accounts', 'perhaps'],
      ['reactivate', 'policy', 'anyone'],
      ['reactivate', 'token_ttl', '0d'],
      ['reactivate', 'token_ttl', 'week'],
      ['alert', 'to', 'postmaster'],
      ['redis', 'port', 'abc'],
      ['redis', 'port', '0'],
      ['redis', 'port', '70000'],
      ['redis', 'db', '-1'],
    ]
    for (const [sect, key, value] of cases) {
      it(`refuses [${sect}] ${key} = ${value} with a ConfigError naming the file, the key and the value`, function () {
        assert.throws(
          () => parseConfig({ [sect]: { [key]: value } }),
          (err) => {
            assert.ok(err instanceof ConfigError, `a ConfigError, got ${String(err)}`)
            assert.equal(err.name, 'ConfigError')
            assert.equal(err.key, `${sect}.${key}`)
            assert.ok(err.message.includes(CONFIG_FILE), err.message)
            assert.ok(err.message.includes(`${sect}.${key}`), err.message)
            assert.ok(err.message.includes(value), err.message)
            return true
          },
        )
      })
    }

    it('refuses a reply address that real mail goes to (postmaster, abuse, an [alert] to address)', function () {
      assert.throws(
        () => parseConfig({ alert: { reply_address: 'postmaster@example.com' } }, 'mx.example.com'),
        /alert\.reply_address = "postmaster@example\.com": the reply address takes every message/,
      )
      assert.throws(
        () => parseConfig({ alert: { reply_address: 'Abuse+x@example.com' } }, 'mx.example.com'),
        /alert\.reply_address/,
      )
      assert.throws(
        () => parseConfig({ alert: { to: 'ops@example.com', reply_address: 'ops@example.com' } }, 'mx.example.com'),
        /alert\.reply_address/,
      )
      assert.equal(
        parseConfig({ alert: { to: 'postmaster@example.com' } }, 'mx.example.com').alert.replyAddress,
        'hijack-guard@mx.example.com',
      )
    })

    it('refuses an invalid value in an [account:LOGIN] section, naming the section', function () {
      assert.throws(
        () => parseConfig({ 'account:Bob': { messages: '5/0m' } }),
        (err) => err instanceof ConfigError && err.key === 'account:Bob.messages' && err.message.includes('5/0m'),
      )
    })
  })

  describe('parseDuration', function () {
    it('reads ms, s, m, h and d in any case, with surrounding space', function () {
      assert.equal(parseDuration('k', '500ms'), 500)
      assert.equal(parseDuration('k', '30s'), 30_000)
      assert.equal(parseDuration('k', '30m'), 1_800_000)
      assert.equal(parseDuration('k', ' 24h '), 86_400_000)
      assert.equal(parseDuration('k', '7d'), 604_800_000)
      assert.equal(parseDuration('k', '2H'), 7_200_000)
      assert.equal(parseDuration('k', '1s ; comment'), 1000)
    })

    const values: ReadonlyArray<string | undefined> = [
      '',
      'abc',
      '0m',
      '0ms',
      '30',
      '-1m',
      '1.5h',
      '30 minutes',
      '1w',
      undefined,
    ]
    for (const value of values) {
      it(`refuses ${JSON.stringify(value)} with a ConfigError naming the key`, function () {
        assert.throws(
          () => parseDuration('main.store_timeout', value),
          (err) => err instanceof ConfigError && err.message.includes('main.store_timeout'),
        )
      })
    }
  })

  describe('parseRules', function () {
    it('builds one rule per N/window with the bucket size rounded up', function () {
      assert.deepEqual(parseRules('limits.messages', 'messages', ' 500 / 30m , 7/1000ms', 30), [
        { kind: 'messages', max: 500, windowMs: 1_800_000, buckets: 30, bucketMs: 60_000, text: '500/30m' },
        { kind: 'messages', max: 7, windowMs: 1000, buckets: 30, bucketMs: 34, text: '7/1000ms' },
      ])
    })

    it('returns no rules for "", "0" and unset values', function () {
      assert.deepEqual(parseRules('k', 'recipients', '', 30), [])
      assert.deepEqual(parseRules('k', 'recipients', '0', 30), [])
      assert.deepEqual(parseRules('k', 'recipients', undefined, 30), [])
    })

    it('refuses a window shorter than one millisecond per bucket', function () {
      assert.throws(() => parseRules('limits.messages', 'messages', '5/29ms', 30), ConfigError)
      assert.equal(parseRules('limits.messages', 'messages', '5/30ms', 30)[0]?.bucketMs, 1)
    })
  })

  describe('withRedisIni', function () {
    it('takes host, port and db from redis.ini [server] and credentials from [opts], under our [redis]', function () {
      const merged = withRedisIni(
        { main: { mode: 'enforce' }, redis: { port: 6390 } },
        {
          server: { host: '10.0.0.5', port: 6379, db: 2, other: 'x' },
          opts: { username: 'u', password: 'p', extra: 1 },
        },
      )
      assert.deepEqual(merged.main, { mode: 'enforce' })
      assert.deepEqual(merged.redis, { host: '10.0.0.5', port: 6390, db: 2, username: 'u', password: 'p' })
      assert.deepEqual(parseConfig(merged).redis, {
        host: '10.0.0.5',
        port: 6390,
        db: 2,
        username: 'u',
        password: 'p',
        journal: 'hijack-guard.journal.json',
        journalCheckMs: 60000,
      })
    })

    it('leaves our settings alone without a redis.ini', function () {
      assert.deepEqual(withRedisIni({ redis: { host: 'h' } }, undefined).redis, { host: 'h' })
      assert.deepEqual(parseConfig(withRedisIni({}, undefined)).redis, {
        host: '127.0.0.1',
        port: 6379,
        db: 0,
        journal: 'hijack-guard.journal.json',
        journalCheckMs: 60000,
      })
    })
  })
})
