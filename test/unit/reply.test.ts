// Recognising a reply to an alert, over a corpus of how real mail clients answer one
// (test/fixtures/replies/*.eml). Each fixture is read the way the plugin reads a message:
// headers parsed and decoded by haraka-email-message, the envelope sender from Return-Path,
// the envelope recipients from To and Cc (what the client submits to).

import * as assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Body, Header } from 'haraka-email-message'
import {
  autoReplyReason,
  findToken,
  findTokenIn,
  isReplyRecipient,
  splitAddress,
  type HeaderLookup,
  type MailAddress,
  type ReplyParts,
} from '../../lib/reactivate/reply'
import { addressesOf } from './helpers'

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'replies')
const REPLY_ADDRESS = 'hijack-guard@mx.test.example'
const TOKEN = '5f2b8c1d9e0a4b7c8d6e3f1a2b9c0d4e'
const TOKEN_DE = 'a94c07e2b6d1f83590e4c2b7d8a6f1e3'

/** A fixture as the plugin sees it. */
interface Fixture {
  readonly raw: string
  readonly header: Header
  /** Decoded header values. */
  readonly get: HeaderLookup
  /** The envelope sender, '' for the null sender. */
  readonly mailFrom: string
  /** The recipients that are the reply address. */
  readonly recipients: MailAddress[]
  readonly parts: ReplyParts
  /** The decoded text of every text/plain part: what a person wrote. */
  readonly texts: string[]
}

/** A fixture as the plugin sees it: decoded headers, envelope, and the text a person wrote. */
function load(name: string): Fixture {
  const raw = fs.readFileSync(path.join(FIXTURES, name), 'utf8')
  const blank = /\r?\n\r?\n/.exec(raw)
  assert.ok(blank, `${name}: a header, an empty line, a body`)
  const header = new Header()
  header.parse(
    raw
      .slice(0, blank.index)
      .concat('\r\n')
      .split(/(?<=\n)/),
  )
  const body = new Body(header)
  for (const line of raw.slice(blank.index + blank[0].length).split(/(?<=\n)/)) if (line) body.parse_more(line)
  body.parse_end()
  const get = (field: string): string => header.get_decoded(field)
  const mailFrom = header.get('Return-Path').trim().replace(/^<|>$/g, '')
  const rcpts = [...addressesOf(header, 'To'), ...addressesOf(header, 'Cc')].map((a) => splitAddress(a))
  const recipients = rcpts.filter((r): r is MailAddress => r !== null && isReplyRecipient(r, REPLY_ADDRESS))
  const parts = { recipients, inReplyTo: get('In-Reply-To'), references: get('References'), subject: get('Subject') }
  return { raw, header, get, mailFrom, recipients, parts, texts: plainTexts(body) }
}

function plainTexts(body: Body): string[] {
  const ct = body.header.get_decoded('Content-Type') || 'text/plain'
  return [...(/^text\/plain/i.test(ct) ? [body.bodytext] : []), ...body.children.flatMap(plainTexts)]
}

const PARTS: ReplyParts = { recipients: [], inReplyTo: '', references: '', subject: '' }
const headers =
  (map: Record<string, string>): HeaderLookup =>
  (name) =>
    map[name.toLowerCase()] ?? ''
const PERSON = headers({})

describe('reply', function () {
  describe('replies from real mail clients (test/fixtures/replies)', function () {
    // [file, what the admin wrote (in the decoded text part), token, automatic-reply reason]
    const CORPUS: ReadonlyArray<[string, RegExp, string | null, RegExp | null]> = [
      ['thunderbird.eml', /Password changed, please re-enable/, TOKEN, null],
      ['outlook.eml', /Please re-enable the account/, TOKEN, null],
      ['gmail.eml', /I reset the password/, TOKEN, null],
      ['apple-mail.eml', /Please turn it back on/, TOKEN, null],
      ['outlook-de.eml', /Passwort wurde geändert/, TOKEN_DE, null],
      ['edited-subject.eml', /turn alice back on/, TOKEN, null],
      ['plain-address.eml', /password is changed/, TOKEN, null],
      ['exchange-oof.eml', /out of the office/, TOKEN, /^Auto-Submitted: auto-replied$/],
      ['vacation.eml', /not be reading my mail/, TOKEN, /^Precedence: bulk$/],
      ['bounce.eml', /could not\s+be delivered/, null, /^null sender$/],
    ]

    for (const [file, text, token, auto] of CORPUS) {
      it(`${file}: ${token ? 'finds the incident token' : 'carries no token of its own'} and ${auto ? 'is an automatic reply' : 'is a reply a person wrote'}`, function () {
        const m = load(file)
        assert.ok(
          m.texts.some((t) => text.test(t)),
          `the fixture decodes to its text part: ${JSON.stringify(m.texts.map((t) => t.slice(0, 80)))}`,
        )
        assert.equal(m.recipients.length, 1, 'one recipient is the reply address')
        assert.equal(findToken(m.parts), token)
        const reason = autoReplyReason(m.get, m.mailFrom)
        if (auto) assert.match(String(reason), auto)
        else assert.equal(reason, null)
      })
    }

    it('Thunderbird: the token survives a Subject folded over two lines', function () {
      const m = load('thunderbird.eml')
      assert.match(m.header.get('Subject'), /\r?\n[ \t]/)
      assert.equal(findToken({ ...PARTS, subject: m.parts.subject }), TOKEN)
      assert.match(
        m.parts.subject,
        /^Re: Account alice@example\.com disabled: reached 500 messages in 30 minutes \[hg-/,
      )
    })

    it('Thunderbird, Outlook, Gmail and Apple Mail: each of recipient, In-Reply-To, References and Subject alone carries the token', function () {
      for (const file of ['thunderbird.eml', 'outlook.eml', 'gmail.eml', 'apple-mail.eml']) {
        const m = load(file)
        assert.equal(findToken({ ...PARTS, recipients: m.recipients }), TOKEN, `${file} recipient`)
        assert.equal(findToken({ ...PARTS, inReplyTo: m.parts.inReplyTo }), TOKEN, `${file} In-Reply-To`)
        assert.equal(findToken({ ...PARTS, references: m.parts.references }), TOKEN, `${file} References`)
        assert.equal(findToken({ ...PARTS, subject: m.parts.subject }), TOKEN, `${file} Subject`)
      }
    })

    it('Outlook: keeps "RE:" and a Thread-Index, and answers the Reply-To (+detail) address', function () {
      const m = load('outlook.eml')
      assert.match(m.parts.subject, /^RE: /)
      assert.notEqual(m.get('Thread-Index'), '')
      assert.equal(m.recipients[0]?.local, `hijack-guard+hg-${TOKEN}`)
    })

    it('German Outlook: recovers the token from the RFC 2047 subject alone, though the encoder split it across two encoded words', function () {
      const m = load('outlook-de.eml')
      assert.ok(!m.header.get('Subject').includes(`hg-${TOKEN_DE}`), 'the raw Subject has no whole token')
      assert.match(m.parts.subject, /^AW: Account jürgen@example\.com disabled/)
      assert.equal(findToken({ ...PARTS, subject: m.parts.subject }), TOKEN_DE)
    })

    it('edited subject, no In-Reply-To: only the +detail recipient carries the token', function () {
      const m = load('edited-subject.eml')
      assert.equal(m.parts.inReplyTo, '')
      assert.equal(findToken({ ...m.parts, recipients: [] }), null)
      assert.equal(findToken(m.parts), TOKEN)
    })

    it('reply to the plain reply address: only References carries the token', function () {
      const m = load('plain-address.eml')
      assert.deepEqual(m.recipients, [{ local: 'hijack-guard', domain: 'mx.test.example' }])
      assert.equal(findToken({ ...m.parts, references: '' }), null)
      assert.equal(findToken(m.parts), TOKEN)
    })

    it('bounce: is recognised as automatic by its null sender first, even though it also says Auto-Submitted', function () {
      const m = load('bounce.eml')
      assert.equal(m.mailFrom, '')
      assert.equal(autoReplyReason(m.get, m.mailFrom), 'null sender')
      assert.equal(autoReplyReason(m.get, '<>'), 'null sender')
    })

    it('Exchange out-of-office: a human-looking subject and the token do not make it a reply a person wrote', function () {
      const m = load('exchange-oof.eml')
      assert.notEqual(m.get('X-Auto-Response-Suppress'), '')
      assert.equal(m.mailFrom, 'postmaster@example.com')
      assert.notEqual(autoReplyReason(m.get, m.mailFrom), null)
    })
  })

  describe('findToken and findTokenIn', function () {
    it('finds the token whatever its case, and returns it lower-cased', function () {
      assert.equal(findTokenIn(`Re: [HG-${TOKEN.toUpperCase()}]`), TOKEN)
      assert.equal(findTokenIn(`<Hg-${TOKEN.toUpperCase()}.7d3e9a41@mx.test.example>`), TOKEN)
      assert.equal(
        findToken({
          ...PARTS,
          recipients: [{ local: `HIJACK-GUARD+HG-${TOKEN.toUpperCase()}`, domain: 'mx.test.example' }],
        }),
        TOKEN,
      )
    })

    it('does not take 31 or 33 hex digits for a token', function () {
      const short = TOKEN.slice(0, 31)
      const long = `${TOKEN}7`
      for (const text of [
        `hg-${short}`,
        `[hg-${short}]`,
        `<hg-${short}.7d3e9a41@mx.test.example>`,
        `hg-${long}`,
        `[hg-${long}]`,
        `<hg-${long}.7d3e9a41@mx.test.example>`,
      ]) {
        assert.equal(findTokenIn(text), null, text)
      }
      assert.equal(
        findToken({ ...PARTS, recipients: [{ local: `hijack-guard+hg-${long}`, domain: 'mx.test.example' }] }),
        null,
      )
      assert.equal(
        findToken({ ...PARTS, recipients: [{ local: `hijack-guard+hg-${short}`, domain: 'mx.test.example' }] }),
        null,
      )
    })

    it('does not take 32 hex digits without a hg- label of their own for a token', function () {
      assert.equal(findTokenIn(`<${TOKEN}@mail.gmail.com>`), null)
      assert.equal(findTokenIn(`Re: ${TOKEN}`), null)
      assert.equal(findTokenIn(`<xhg-${TOKEN}@mail.example.com>`), null)
    })

    it('does not take non-hex characters for a token', function () {
      assert.equal(findTokenIn(`hg-${TOKEN.slice(0, 31)}g`), null)
    })

    it('prefers the recipient, then In-Reply-To, then References, then the Subject', function () {
      const t = (c: string): string => c.repeat(32)
      const all: ReplyParts = {
        recipients: [{ local: `hijack-guard+hg-${t('a')}`, domain: 'mx.test.example' }],
        inReplyTo: `<hg-${t('b')}.1@mx.test.example>`,
        references: `<hg-${t('c')}.1@mx.test.example>`,
        subject: `Re: x [hg-${t('d')}]`,
      }
      assert.equal(findToken(all), t('a'))
      assert.equal(findToken({ ...all, recipients: [] }), t('b'))
      assert.equal(findToken({ ...all, recipients: [], inReplyTo: '' }), t('c'))
      assert.equal(findToken({ ...all, recipients: [], inReplyTo: '', references: '' }), t('d'))
      assert.equal(findToken(PARTS), null)
    })

    it('finds the token in a References list among other Message-IDs', function () {
      const references = `<CAF3xq1Zk8m2bNq7v9Rw@mail.gmail.com>\r\n <hg-${TOKEN}.7d3e9a41@mx.test.example> <9C1E6F4B@example.com>`
      assert.equal(findToken({ ...PARTS, references }), TOKEN)
    })
  })

  describe('isReplyRecipient', function () {
    /** The address split, failing the test when it is not local@domain. */
    const rcpt = (address: string): MailAddress => {
      const split = splitAddress(address)
      assert.ok(split, `an address: ${address}`)
      return split
    }

    it('matches the reply address with no +detail or with any +detail', function () {
      for (const a of [
        REPLY_ADDRESS,
        `hijack-guard+hg-${TOKEN}@mx.test.example`,
        'hijack-guard+anything@mx.test.example',
        'hijack-guard+@mx.test.example',
      ]) {
        assert.equal(isReplyRecipient(rcpt(a), REPLY_ADDRESS), true, a)
      }
    })

    it('matches whatever the case of the local part and of the domain', function () {
      for (const a of [
        `HIJACK-GUARD+HG-${TOKEN.toUpperCase()}@mx.test.example`,
        'Hijack-Guard@MX.Test.Example',
        'hijack-guard@MX.TEST.EXAMPLE',
      ]) {
        assert.equal(isReplyRecipient(rcpt(a), REPLY_ADDRESS), true, a)
      }
      assert.equal(isReplyRecipient(rcpt('hijack-guard+x@mx.test.example'), 'Hijack-Guard@MX.Test.Example'), true)
    })

    it('matches every +detail when reply_address has a +detail of its own', function () {
      const configured = 'hijack-guard+alerts@mx.test.example'
      for (const a of [REPLY_ADDRESS, `hijack-guard+hg-${TOKEN}@mx.test.example`]) {
        assert.equal(isReplyRecipient(rcpt(a), configured), true, a)
      }
    })

    it('does not match the same local part at another domain, a subdomain or a parent domain', function () {
      for (const a of [
        'hijack-guard@example.com',
        'hijack-guard@sub.mx.test.example',
        'hijack-guard@test.example',
        `hijack-guard+hg-${TOKEN}@mx.test.example.evil.example`,
      ]) {
        assert.equal(isReplyRecipient(rcpt(a), REPLY_ADDRESS), false, a)
      }
    })

    it('does not match a lookalike local part', function () {
      for (const a of [
        'hijack-guardx@mx.test.example',
        'xhijack-guard@mx.test.example',
        'hijack-guar@mx.test.example',
        'hijack-guard-x@mx.test.example',
        'hijack_guard@mx.test.example',
        `xhijack-guard+hg-${TOKEN}@mx.test.example`,
      ]) {
        assert.equal(isReplyRecipient(rcpt(a), REPLY_ADDRESS), false, a)
      }
    })

    it('matches nothing when reply_address is not an address', function () {
      assert.equal(isReplyRecipient(rcpt(REPLY_ADDRESS), 'hijack-guard'), false)
    })
  })

  describe('autoReplyReason', function () {
    it('takes a message with no markers, or Auto-Submitted: no, for one a person sent', function () {
      assert.equal(autoReplyReason(PERSON, 'postmaster@example.com'), null)
      assert.equal(autoReplyReason(headers({ 'auto-submitted': 'no' }), 'postmaster@example.com'), null)
      assert.equal(autoReplyReason(headers({ 'auto-submitted': 'No (manually sent)' }), 'postmaster@example.com'), null)
      assert.equal(autoReplyReason(headers({ precedence: 'first-class' }), 'postmaster@example.com'), null)
    })

    it('recognises every Auto-Submitted value other than no (RFC 3834)', function () {
      for (const v of ['auto-replied', 'auto-generated', 'auto-notified', 'Auto-Replied']) {
        assert.match(
          String(autoReplyReason(headers({ 'auto-submitted': v }), 'postmaster@example.com')),
          /Auto-Submitted/,
          v,
        )
      }
    })

    it('recognises X-Autoreply and X-Autorespond', function () {
      assert.match(String(autoReplyReason(headers({ 'x-autoreply': 'yes' }), 'postmaster@example.com')), /X-Autoreply/)
      assert.match(
        String(autoReplyReason(headers({ 'x-autorespond': 'Vacation' }), 'postmaster@example.com')),
        /X-Autorespond/,
      )
    })

    it('recognises Precedence: auto_reply, bulk and junk', function () {
      for (const v of ['auto_reply', 'bulk', 'junk', 'Bulk']) {
        assert.match(String(autoReplyReason(headers({ precedence: v }), 'postmaster@example.com')), /Precedence/, v)
      }
    })

    it('recognises the null sender however it is written', function () {
      for (const from of ['', '<>', ' <> ']) {
        assert.equal(autoReplyReason(PERSON, from), 'null sender', JSON.stringify(from))
      }
    })
  })
})
