// Who an account is: canonicalAccount (lib/account.ts) and the [accounts] section. Every
// spelling of one mailbox must be one account; two different mailboxes must never be one.

import * as assert from 'node:assert/strict'
import * as path from 'node:path'
import { canonicalAccount, canonicalDomain, DEFAULT_ACCOUNTS, type AccountsConfig } from '../../lib/account'
import { ConfigError, parseConfig, rulesForAccount, type Config } from '../../lib/config'
import type { Connection } from '../../lib/haraka'
import { sessionAccount } from '../../lib/hooks/state'
import { handleReply, type ReplyMessage } from '../../lib/reactivate'
import type { Store } from '../../lib/store'
import { createMemoryStore } from '../../lib/store/memory'
import { tmpDir } from '../../support/process'
import { refused, trip } from './helpers'

const acc = (over: Partial<AccountsConfig> = {}): AccountsConfig => ({
  ...DEFAULT_ACCOUNTS,
  domainAliases: new Map(),
  ...over,
})
const ALIASES = new Map([
  ['alias.example', 'example.com'],
  ['other.example', 'example.com'],
])

describe('canonicalAccount', function () {
  describe('fold = nfkc (the default)', function () {
    const same = (spellings: readonly string[], expected: string): void => {
      for (const s of spellings) assert.equal(canonicalAccount(s), expected, JSON.stringify(s))
    }

    it('joins upper, lower and mixed case', function () {
      same(['alice@example.com', 'ALICE@EXAMPLE.COM', 'Alice@Example.Com', 'aLiCe@eXaMpLe.cOm'], 'alice@example.com')
    })

    it('joins fullwidth forms (ＡＬＩＣＥ, ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ) with ASCII', function () {
      same(
        ['ＡＬＩＣＥ@example.com', 'ａｌｉｃｅ@example.com', 'ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ'],
        'alice@example.com',
      )
      same(['ＡＬＩＣＥ', 'Alice', 'alice'], 'alice')
    })

    it('joins NFD and NFC forms and their upper case', function () {
      const nfc = 'jos\u00e9@example.com'
      const nfd = 'jose\u0301@example.com'
      assert.notEqual(nfc, nfd)
      same([nfc, nfd, 'JOS\u00c9@example.com', 'JOSE\u0301@EXAMPLE.COM'], nfc)
    })

    it('folds case fully: ß and SS, final sigma, the Kelvin sign', function () {
      assert.equal(canonicalAccount('STRASSE@example.com'), canonicalAccount('straße@example.com'))
      assert.equal(canonicalAccount('ΟΔΟΣ'), canonicalAccount('οδος'))
      assert.equal(canonicalAccount('οδος'), canonicalAccount('οδοσ'))
      assert.equal(canonicalAccount('\u212aelvin'), 'kelvin')
    })

    it('drops zero-width and other invisible characters, and control characters', function () {
      same(
        [
          'al\u200bice@example.com',
          'ali\u00adce@example.com',
          '\ufeffalice@example.com',
          'al\x00ice@example.com\r\n',
          ' alice@example.com\t',
          'alice\x85@example.com',
        ],
        'alice@example.com',
      )
    })

    it('keeps different mailboxes apart', function () {
      const logins = [
        'alice@example.com',
        'alice@example.org',
        'alice2@example.com',
        'alicé@example.com',
        'a.lice@example.com',
        'alice+x@example.com',
        'alice',
        '',
        'a:b',
        'a{b}',
        'a}b{',
      ]
      const keys = logins.map((l) => canonicalAccount(l))
      assert.equal(new Set(keys).size, logins.length, JSON.stringify(keys))
    })

    it('keeps {, }, : and other odd bytes as they are (the store encodes them), and "" stays ""', function () {
      assert.equal(canonicalAccount('{a}:b@example.com'), '{a}:b@example.com')
      assert.equal(canonicalAccount('a b@example.com'), 'a b@example.com')
      assert.equal(canonicalAccount(''), '')
      assert.equal(canonicalAccount('   '), '')
      assert.equal(canonicalAccount('\x00\x01'), '')
      assert.equal(
        canonicalAccount('\ud800lone@example.com').endsWith('@example.com'),
        true,
        'a lone surrogate does not throw',
      )
      const long = 'x'.repeat(1024) + '@example.com'
      assert.equal(canonicalAccount(long), long)
    })

    it('is idempotent: the canonical form of a canonical form is itself', function () {
      const cfg = acc({ defaultDomain: 'example.com', domainAliases: ALIASES })
      for (const s of [
        'ＡＬＩＣＥ',
        'JOSE\u0301@Alias.Example',
        'ǅemal@OTHER.example',
        'STRAßE',
        '{x}:y',
        'İstanbul@example.com',
        'ﬁle@example.com',
      ]) {
        const once = canonicalAccount(s, cfg)
        assert.equal(canonicalAccount(once, cfg), once, JSON.stringify(s))
      }
    })

    it('compares the domain after the last "@", in its ASCII (xn--) form when it is internationalised', function () {
      assert.equal(canonicalAccount('"a@b"@EXAMPLE.com'), '"a@b"@example.com')
      assert.equal(canonicalAccount('bob@Bücher.Example'), canonicalAccount('bob@xn--bcher-kva.example'))
      assert.equal(canonicalAccount('bob@example.com.'), 'bob@example.com')
    })
  })

  describe('fold = lower and fold = none', function () {
    it('lower: ASCII letters only are lower-cased; fullwidth and NFD forms stay apart', function () {
      const c = acc({ fold: 'lower' })
      assert.equal(canonicalAccount('Alice@Example.COM', c), 'alice@example.com')
      assert.equal(canonicalAccount('ＡＬＩＣＥ@example.com', c), 'ＡＬＩＣＥ@example.com')
      assert.notEqual(canonicalAccount('jos\u00e9', c), canonicalAccount('jose\u0301', c))
    })

    it('none: the local part as typed, the domain part still case-insensitive; control characters removed, trimmed', function () {
      const c = acc({ fold: 'none' })
      assert.equal(canonicalAccount(' Alice@Example.COM\r\n', c), 'Alice@example.com')
      assert.notEqual(canonicalAccount('Alice@example.com', c), canonicalAccount('alice@example.com', c))
    })
  })

  describe('default_domain and domain_aliases', function () {
    it('puts a login without "@" in default_domain', function () {
      const c = acc({ defaultDomain: 'example.com' })
      for (const s of ['alice', 'ALICE', 'ＡＬＩＣＥ', 'alice@example.com', 'Alice@EXAMPLE.COM']) {
        assert.equal(canonicalAccount(s, c), 'alice@example.com', s)
      }
      assert.equal(canonicalAccount('', c), '', 'an empty login stays empty, not "@example.com"')
    })

    it('maps the domain part of an alias domain to the domain it stands for, in any case or width', function () {
      const c = acc({ domainAliases: ALIASES })
      for (const s of [
        'alice@alias.example',
        'ALICE@Alias.Example',
        'alice@ａｌｉａｓ．ｅｘａｍｐｌｅ',
        'alice@other.example',
        'alice@example.com',
      ]) {
        assert.equal(canonicalAccount(s, c), 'alice@example.com', s)
      }
      assert.equal(
        canonicalAccount('alice@alias.example.net', c),
        'alice@alias.example.net',
        'only the whole domain is mapped',
      )
      assert.equal(canonicalAccount('alias.example', c), 'alias.example', 'a login without "@" has no domain part')
    })

    it('canonicalDomain lower-cases under every fold', function () {
      assert.equal(canonicalDomain('Example.COM', 'none'), 'example.com')
      assert.equal(canonicalDomain('Example.COM', 'lower'), 'example.com')
      assert.equal(canonicalDomain('', 'nfkc'), '')
    })
  })
})

describe('config: [accounts]', function () {
  it('reads fold, default_domain, domain_aliases and xclient_login, in canonical form', function () {
    const cfg = parseConfig({
      accounts: {
        fold: 'lower',
        default_domain: 'Example.COM',
        domain_aliases: 'Alias.Example:example.com , other.example : EXAMPLE.com',
        xclient_login: 'true',
      },
    })
    assert.equal(cfg.accounts.fold, 'lower')
    assert.equal(cfg.accounts.defaultDomain, 'example.com')
    assert.deepEqual(
      [...cfg.accounts.domainAliases],
      [
        ['alias.example', 'example.com'],
        ['other.example', 'example.com'],
      ],
    )
    assert.equal(cfg.accounts.xclientLogin, true)
  })

  it('treats "; a comment" as the value of an empty key (Haraka keeps it as the value)', function () {
    const cfg = parseConfig({ accounts: { default_domain: '; a login without "@" ...', domain_aliases: '# none' } })
    assert.equal(cfg.accounts.defaultDomain, '')
    assert.equal(cfg.accounts.domainAliases.size, 0)
  })

  it('names exempt accounts, [account:LOGIN] sections and admins in canonical form', function () {
    const cfg = parseConfig({
      accounts: { default_domain: 'example.com', domain_aliases: 'alias.example:example.com' },
      exempt: { accounts: 'Scanner, ＲＥＬＡＹ@alias.example' },
      'account:NEWS': { messages: '5000/30m' },
      reactivate: { admins: 'Root, ops@Alias.Example' },
      alert: { to: 'pm@example.com' },
    })
    assert.deepEqual([...cfg.exempt].sort(), ['relay@example.com', 'scanner@example.com'])
    assert.deepEqual([...cfg.accountRules.keys()], ['news@example.com'])
    assert.equal(rulesForAccount(cfg, 'news@example.com')[0]?.text, '5000/30m')
    assert.deepEqual([...cfg.reactivate.admins].sort(), ['ops@example.com', 'root@example.com'])
  })

  it('refuses two [account:LOGIN] sections that name one account, naming both', function () {
    assert.throws(
      () =>
        parseConfig({
          accounts: { default_domain: 'example.com' },
          'account:alice': { messages: '1/1m' },
          'account:ALICE@example.com': { messages: '9/1m' },
        }),
      (err) =>
        err instanceof ConfigError &&
        /\[account:alice\]/.test(err.message) &&
        /account:ALICE@example\.com/.test(err.message) &&
        /same account/.test(err.message),
    )
    assert.throws(
      () => parseConfig({ 'account:ｂｏｂ': { messages: '1/1m' }, 'account:Bob': { messages: '2/1m' } }),
      /same account/,
    )
  })

  it('keeps lowercase_accounts one release as fold = lower | none, with a warning; [accounts] fold wins (warned)', function () {
    const t = parseConfig({ main: { lowercase_accounts: 'true' } })
    assert.equal(t.accounts.fold, 'lower')
    assert.ok(
      t.warnings.some((w) => /lowercase_accounts is deprecated: use \[accounts\] fold = lower/.test(w)),
      t.warnings.join('; '),
    )
    const f = parseConfig({ main: { lowercase_accounts: 'false' } })
    assert.equal(f.accounts.fold, 'none')
    const both = parseConfig({ main: { lowercase_accounts: 'false' }, accounts: { fold: 'nfkc' } })
    assert.equal(both.accounts.fold, 'nfkc')
    assert.ok(
      both.warnings.some((w) =>
        /lowercase_accounts is deprecated and ignored: \[accounts\] fold = nfkc is set/.test(w),
      ),
      both.warnings.join('; '),
    )
    assert.ok(parseConfig({}).warnings.every((w) => !/lowercase_accounts/.test(w)))
  })

  const bad: ReadonlyArray<[string, string]> = [
    ['fold', 'casefold'],
    ['default_domain', 'a b'],
    ['domain_aliases', 'alias.example'],
    ['domain_aliases', 'a.example:b.example:c.example'],
    ['domain_aliases', 'a.example:a.example'],
    ['domain_aliases', 'a.example:b.example, a.example:c.example'],
    ['domain_aliases', 'a.example:b.example, b.example:c.example'],
    ['xclient_login', 'maybe'],
  ]
  for (const [key, value] of bad) {
    it(`refuses [accounts] ${key} = ${value} with a ConfigError naming the key and value`, function () {
      assert.throws(
        () => parseConfig({ accounts: { [key]: value } }),
        (err) =>
          err instanceof ConfigError &&
          err.key === `accounts.${key}` &&
          err.message.includes('hijack-guard.ini') &&
          err.message.includes(JSON.stringify(value)),
      )
    })
  }

  it('refuses a default_domain that is itself an alias', function () {
    assert.throws(
      () => parseConfig({ accounts: { default_domain: 'alias.example', domain_aliases: 'alias.example:example.com' } }),
      /accounts\.default_domain/,
    )
  })
})

describe('reactivation by reply: admins and the replying login in canonical form', function () {
  /** A memory store in which `account` is disabled; resolves the store and the incident token. */
  async function tripped(config: Config, account: string): Promise<{ store: Store; token: string }> {
    const store = createMemoryStore({ stateFile: path.join(tmpDir('accounts'), 'state.json') })
    const token = await trip(store, {
      account,
      rules: rulesForAccount(config, account),
      tokenTtlMs: config.reactivate.tokenTtlMs,
    })
    return { store, token }
  }

  const reply = (authUser: string, token: string): ReplyMessage => ({
    authUser,
    mailFrom: 'x@example.com',
    recipients: [{ local: `hijack-guard+hg-${token}`, domain: 'mx.example.com' }],
    header: () => '',
  })

  it('an admin listed as "ops" (default_domain) re-enables by replying as OPS@Alias.Example; the account itself under another spelling cannot', async function () {
    const config = parseConfig(
      {
        limits: { messages: '1/1m', recipients: '0' },
        alert: { to: 'pm@example.com' },
        reactivate: { admins: 'ops, alice' },
        accounts: { default_domain: 'example.com', domain_aliases: 'alias.example:example.com' },
      },
      'mx.example.com',
    )
    const self = await tripped(config, 'alice@example.com')
    const selfReply = refused(await handleReply(reply('ＡＬＩＣＥ@alias.example', self.token), config, self.store))
    assert.equal(selfReply.result, 'refused')
    assert.match(selfReply.reason, /cannot re-enable itself/)
    const done = await handleReply(reply('OPS@Alias.Example', self.token), config, self.store)
    assert.deepEqual([done.result, done.account, done.actor], ['reactivated', 'alice@example.com', 'ops@example.com'])
    await self.store.close()
  })
})

describe('sessionAccount: the canonical account of a session', function () {
  const session = (login: string): Connection => ({ notes: { auth_user: login }, remote: {} }) as unknown as Connection

  it('answers every hook of a session with the same account, and follows a reload that changes [accounts]', function () {
    const nfkc = parseConfig({})
    const none = parseConfig({ accounts: { fold: 'none' } })
    const c = session('ALICE@Example.COM')
    assert.equal(sessionAccount(c, nfkc), 'alice@example.com')
    assert.equal(sessionAccount(c, nfkc), 'alice@example.com')
    assert.equal(sessionAccount(c, none), 'ALICE@example.com')
    assert.equal(sessionAccount(session('bob@example.com'), nfkc), 'bob@example.com')
    assert.equal(sessionAccount({ notes: {}, remote: {} } as unknown as Connection, nfkc), null)
  })

  it('keeps answering right past its cache of logins', function () {
    const cfg = parseConfig({})
    for (let i = 0; i < 2500; i++)
      assert.equal(sessionAccount(session(`User${i}@Example.COM`), cfg), `user${i}@example.com`)
    assert.equal(sessionAccount(session('User7@Example.COM'), cfg), 'user7@example.com')
  })
})
