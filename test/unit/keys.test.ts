import * as assert from 'node:assert/strict'

import {
  accountKeys,
  AUDIT_LOG,
  decodeAccount,
  encodeAccount,
  PREFIX,
  tokenKey,
  type AccountKeys,
} from '../../lib/store/keys'

const ODD_ACCOUNTS: readonly string[] = [
  '',
  ' ',
  '%',
  '%%',
  '%25',
  'a:b',
  'a%3Ab',
  'a%3ab',
  'a b',
  'a%20b',
  '{x}',
  '}{',
  'a}b{c',
  '{}',
  'ü',
  'u\u0308',
  '😀',
  '日本語',
  '\u0000',
  'a\r\nb',
  'x'.repeat(300),
  'x'.repeat(1024),
  'ü'.repeat(1024),
  'alice@example.com',
  'Alice@Example.com',
  'first.last+tag_1-2@example.com',
  '__proto__',
]

/** Redis Cluster's hash tag: what lies between the first "{" and the next "}", when not empty. */
function hashTag(key: string): string | null {
  const open = key.indexOf('{')
  const close = key.indexOf('}', open + 1)
  return open >= 0 && close > open + 1 ? key.slice(open + 1, close) : null
}

/** Every key of the account: each member of AccountKeys. */
function keysOf(account: string): string[] {
  const keys = accountKeys(account)
  return (Object.keys(keys) as (keyof AccountKeys)[]).map((name) => keys[name])
}

/** Code point ranges of several planes, without the surrogates. */
const RANGES: readonly (readonly [number, number])[] = [
  [0x20, 0x7e],
  [0x00, 0x1f],
  [0x80, 0x7ff],
  [0x800, 0xd7ff],
  [0xe000, 0xffff],
  [0x10000, 0x10ffff],
]

/** A deterministic sequence of strings of code points from several planes (no lone surrogates). */
function* randomAccounts(count: number): Generator<string> {
  let seed = 42
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31)
  for (let i = 0; i < count; i++) {
    let s = ''
    const len = next() % 12
    for (let j = 0; j < len; j++) {
      const range = RANGES[next() % RANGES.length]
      if (!range) throw new Error('randomAccounts: no range')
      const [lo, hi] = range
      s += String.fromCodePoint(lo + (next() % (hi - lo + 1)))
    }
    yield s
  }
}

describe('keys', function () {
  describe('encodeAccount / decodeAccount', function () {
    it('round-trips every odd account name', function () {
      for (const account of ODD_ACCOUNTS) assert.equal(decodeAccount(encodeAccount(account)), account)
    })

    it('round-trips 5000 random unicode account names', function () {
      for (const account of randomAccounts(5000)) assert.equal(decodeAccount(encodeAccount(account)), account)
    })

    it('gives different accounts different encodings', function () {
      const accounts = new Set([...ODD_ACCOUNTS, ...randomAccounts(5000)])
      const encodings = new Set([...accounts].map((account) => encodeAccount(account)))
      assert.equal(encodings.size, accounts.size)
    })

    it('never produces "{", "}", ":" or white space, and is never empty', function () {
      for (const account of [...ODD_ACCOUNTS, ...randomAccounts(2000)]) {
        const encoded = encodeAccount(account)
        assert.ok(encoded.length > 0)
        assert.doesNotMatch(encoded, /[{}:\s]/, JSON.stringify(account))
        assert.match(encoded, /^[A-Za-z0-9@._+%-]+$/)
      }
    })

    it('keeps a plain login readable and escapes the rest as %XX of its UTF-8 bytes', function () {
      assert.equal(encodeAccount('alice@example.com'), 'alice@example.com')
      assert.equal(encodeAccount('first.last+tag_1-2@example.com'), 'first.last+tag_1-2@example.com')
      assert.equal(encodeAccount('a b'), 'a%20b')
      assert.equal(encodeAccount('a:b'), 'a%3Ab')
      assert.equal(encodeAccount('{x}'), '%7Bx%7D')
      assert.equal(encodeAccount('%'), '%25')
      assert.equal(encodeAccount('ü'), '%C3%BC')
      assert.equal(encodeAccount(''), '%')
    })
  })

  describe('accountKeys', function () {
    it('gives every key of an account the account hash tag, so one script touches one slot', function () {
      for (const account of ODD_ACCOUNTS) {
        const keys = keysOf(account)
        assert.equal(keys.length, 16)
        assert.equal(new Set(keys).size, 16)
        for (const key of keys) {
          assert.ok(key.startsWith(`${PREFIX}:{`), key)
          assert.equal(hashTag(key), encodeAccount(account))
        }
      }
    })

    it('shares no key between two accounts', function () {
      const owner = new Map<string, string>()
      for (const account of new Set([...ODD_ACCOUNTS, ...randomAccounts(1000)])) {
        for (const key of keysOf(account)) {
          assert.ok(
            !owner.has(key),
            `${key} of ${JSON.stringify(account)} is also a key of ${JSON.stringify(owner.get(key))}`,
          )
          owner.set(key, account)
        }
      }
      assert.ok(!owner.has(AUDIT_LOG))
      assert.ok(!owner.has(tokenKey('0123456789abcdef0123456789abcdef')))
    })

    it('names the keys as docs/store.md describes them', function () {
      assert.deepEqual(accountKeys('alice@example.com'), {
        counts: 'hijack-guard:{alice@example.com}:counts',
        evidence: 'hijack-guard:{alice@example.com}:evidence',
        disabled: 'hijack-guard:{alice@example.com}:disabled',
        monitored: 'hijack-guard:{alice@example.com}:monitored',
        held: 'hijack-guard:{alice@example.com}:held',
        enabled: 'hijack-guard:{alice@example.com}:enabled',
        networks: 'hijack-guard:{alice@example.com}:networks',
        warned: 'hijack-guard:{alice@example.com}:warned',
        dropBefore: 'hijack-guard:{alice@example.com}:drop-before',
        authFailures: 'hijack-guard:{alice@example.com}:auth-failures',
        authSources: 'hijack-guard:{alice@example.com}:auth-sources',
        authAlerted: 'hijack-guard:{alice@example.com}:auth-alerted',
        invalid: 'hijack-guard:{alice@example.com}:invalid',
        invalidEvidence: 'hijack-guard:{alice@example.com}:invalid-evidence',
        invalidMonitored: 'hijack-guard:{alice@example.com}:invalid-monitored',
        oldPasswords: 'hijack-guard:{alice@example.com}:old-passwords',
      })
      assert.equal(AUDIT_LOG, 'hijack-guard:audit')
      const digest = '0123456789abcdef'.repeat(4)
      assert.equal(tokenKey(digest), `hijack-guard:token-sha256:${digest}`)
    })
  })
})
