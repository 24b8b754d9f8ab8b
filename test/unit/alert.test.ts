// The mail the plugin writes, composed by pure functions: read back the way a mail client and
// Haraka read it (haraka-email-message's Header and Body), and checked line by line.

import * as assert from 'node:assert/strict'
import { Body, Header } from 'haraka-email-message'
import { composeAlert, composeNotice, encodeHeader, type AlertInput, type NoticeInput } from '../../lib/alert'
import { findTokenIn, isReplyRecipient, splitAddress, TOKEN_PATTERN } from '../../lib/reactivate/reply'
import type { DisabledRecord, MessageSummary, WindowCount } from '../../lib/store'
import { addressesOf } from './helpers'

const T0 = Date.UTC(2024, 2, 5, 14, 7, 9)
const DAY = 86_400_000
const TOKEN = '5f2b8c1d9e0a4b7c8d6e3f1a2b9c0d4e'
const INCIDENT = '7d3e9a41c0b2d4e6f8a0b1c2d3e4f5a6'
const CLI = 'npx hijack-guard -c /etc/haraka enable alice@example.com'

const OVER: WindowCount = { kind: 'messages', max: 500, windowMs: 1_800_000, text: '500/30m', count: 500 }
const RECIPIENTS_30M: WindowCount = {
  kind: 'recipients',
  max: 2500,
  windowMs: 1_800_000,
  text: '2500/30m',
  count: 1812,
}
const COUNTS: readonly WindowCount[] = [
  OVER,
  { kind: 'messages', max: 2000, windowMs: DAY, text: '2000/24h', count: 731 },
  RECIPIENTS_30M,
]
const EVIDENCE: readonly MessageSummary[] = [
  { ip: '203.0.113.9', helo: 'WIN-7Q2F0K1', domains: ['gmail.com', 'yahoo.co.jp'], subject: 'Invoice 4471 overdue' },
  { ip: '198.51.100.23', helo: 'localhost', domains: ['hotmail.com', 'gmail.com'], subject: 'Your parcel is waiting' },
  { ip: '203.0.113.9', helo: 'WIN-7Q2F0K1', domains: ['web.de'], subject: 'Invoice 4471 overdue' },
]

function record(overrides: Partial<DisabledRecord> = {}): DisabledRecord {
  return {
    account: 'alice@example.com',
    reason: 'limit',
    by: 'limit',
    at: T0,
    incident: INCIDENT,
    over: OVER,
    counts: COUNTS,
    evidence: EVIDENCE,
    tokenExpiresAt: T0 + 7 * DAY,
    ...overrides,
  }
}

function alertInput(overrides: Partial<AlertInput> = {}): AlertInput {
  return {
    record: record(),
    token: TOKEN,
    monitor: false,
    from: 'hijack-guard@mx.test.example',
    to: ['postmaster@example.com', 'security@example.com'],
    replyAddress: 'hijack-guard@mx.test.example',
    me: 'mx.test.example',
    tokenTtlMs: 7 * DAY,
    cliCommand: CLI,
    now: T0 + 2000,
    ...overrides,
  }
}

function noticeInput(overrides: Partial<NoticeInput> = {}): NoticeInput {
  return {
    from: 'hijack-guard@mx.test.example',
    to: 'postmaster@example.com',
    me: 'mx.test.example',
    now: T0 + 60_000,
    id: '0f1e2d3c4b5a69788796a5b4c3d2e1f0',
    inReplyTo: '<3f6c1a2e-8b4d-4e0f-9a7c-2d5e6f708192@example.com>',
    subject: 'Account alice@example.com re-enabled',
    lines: ['The account alice@example.com works again.', '', 'If its password was not changed yet, change it now.'],
    ...overrides,
  }
}

interface ParsedMessage {
  readonly header: Header
  /** The header block's lines, without their CRLF. */
  readonly headerLines: string[]
  /** The raw body's lines, without their CRLF. */
  readonly bodyLines: string[]
  readonly bodyText: string
  readonly body: Body
}

/** Splits a raw message at its first empty line and parses both parts as Haraka does. */
function parseMessage(raw: string): ParsedMessage {
  const blank = raw.indexOf('\r\n\r\n')
  assert.ok(blank > 0, 'a header, an empty line, a body')
  const headerText = raw.slice(0, blank + 2)
  const bodyText = raw.slice(blank + 4)
  const header = new Header()
  header.parse(headerText.split(/(?<=\r\n)/))
  const body = new Body(header)
  for (const line of bodyText.split(/(?<=\r\n)/)) if (line) body.parse_more(line)
  body.parse_end()
  return {
    header,
    headerLines: headerText.slice(0, -2).split('\r\n'),
    bodyLines: bodyText.split('\r\n'),
    bodyText,
    body,
  }
}

/** The header fields of a header block, unfolded: [name, value] in order. */
function fields(headerLines: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const line of headerLines) {
    if (/^[ \t]/.test(line)) {
      const last = out[out.length - 1]
      assert.ok(last, `a continuation line before any field: ${JSON.stringify(line)}`)
      last[1] += line
    } else {
      const m = /^([!-9;-~]+):(.*)$/.exec(line)
      assert.ok(m?.[1] !== undefined && m[2] !== undefined, `not a header field: ${JSON.stringify(line)}`)
      out.push([m[1], m[2]])
    }
  }
  return out
}

function countOf(headerLines: readonly string[], name: string): number {
  return fields(headerLines).filter(([n]) => n.toLowerCase() === name.toLowerCase()).length
}

function assertCrlfOnly(message: string): void {
  assert.equal(/\r(?!\n)/.test(message), false, 'no bare CR')
  assert.equal(/(?<!\r)\n/.test(message), false, 'no bare LF')
  assert.ok(message.endsWith('\r\n'), 'ends with a line end')
}

/** RFC 5322 2.1.1: no line longer than 998 octets, excluding the CRLF. */
function longLines(message: string): string[] {
  return message.split('\r\n').filter((line) => Buffer.byteLength(line) > 998)
}

function bodyLine(bodyLines: readonly string[], label: string): string {
  const found = bodyLines.filter((l) => l.includes(label))
  assert.equal(found.length, 1, `one body line with ${label}`)
  return found[0] ?? ''
}

/** A labelled list of the evidence, with any deeper-indented continuation lines, as one line. */
function listText(bodyLines: readonly string[], label: string): string {
  const start = bodyLines.findIndex((l) => l.trimStart().startsWith(label))
  assert.ok(start >= 0, `a list labelled ${label}`)
  const lines = bodyLines.slice(start, start + 1)
  for (const line of bodyLines.slice(start + 1)) {
    if (!/^\s{3,}\S/.test(line)) break
    lines.push(line)
  }
  return lines.map((l) => l.trim()).join(' ')
}

/** The body text with every line break and the indentation after it turned into one space. */
const flat = (bodyText: string): string => bodyText.replace(/\r\n\s*/g, ' ')

describe('alert', function () {
  describe('composeAlert: what the postmaster reads', function () {
    it('names the account and the limit it reached in the subject and in the first sentence', function () {
      const { header, bodyText } = parseMessage(composeAlert(alertInput()).message)
      assert.match(
        header.get_decoded('Subject'),
        /^Account alice@example\.com disabled: reached 500 messages in 30 minutes\b/,
      )
      const firstParagraph = (bodyText.split('\r\n\r\n')[0] ?? '').replace(/\r\n/g, ' ')
      assert.match(firstParagraph, /alice@example\.com/)
      assert.match(firstParagraph, /disabled/)
      assert.match(firstParagraph, /reached 500 messages in 30 minutes/)
    })

    it('names a recipient limit the same way: "reached 2500 recipients in 30 minutes"', function () {
      const over = { ...RECIPIENTS_30M, count: 2500 }
      const { header, bodyText } = parseMessage(composeAlert(alertInput({ record: record({ over }) })).message)
      assert.match(header.get_decoded('Subject'), /reached 2500 recipients in 30 minutes/)
      assert.match(bodyText, /reached 2500 recipients in 30 minutes/)
    })

    it('lists the count of every window, and marks only the one that was reached', function () {
      const { bodyLines } = parseMessage(composeAlert(alertInput()).message)
      const reached = bodyLine(bodyLines, '500 of 500')
      assert.match(reached, /messages\s+500 of 500 in 30 minutes/)
      assert.match(bodyLine(bodyLines, '731 of 2000'), /messages\s+731 of 2000 in 1 day/)
      assert.match(bodyLine(bodyLines, '1812 of 2500'), /recipients\s+1812 of 2500 in 30 minutes/)
      const marked = bodyLines.filter((l) => /limit reached/i.test(l))
      assert.deepEqual(marked, [reached])
    })

    it('says when it happened, in UTC', function () {
      const { bodyText } = parseMessage(composeAlert(alertInput()).message)
      assert.match(bodyText, /2024-03-05 14:07:09 UTC/)
    })

    it('lists each distinct source IP, HELO name, recipient domain and subject once', function () {
      const { bodyLines } = parseMessage(composeAlert(alertInput()).message)
      const once = (text: string, value: string): void =>
        assert.equal(text.split(value).length - 1, 1, `${value} once in ${text}`)
      const ips = listText(bodyLines, 'Source IPs:')
      once(ips, '203.0.113.9')
      once(ips, '198.51.100.23')
      const helos = listText(bodyLines, 'HELO names:')
      once(helos, 'WIN-7Q2F0K1')
      once(helos, 'localhost')
      const domains = listText(bodyLines, 'Recipient domains:')
      for (const d of ['gmail.com', 'yahoo.co.jp', 'hotmail.com', 'web.de']) once(domains, d)
      const subjects = listText(bodyLines, 'Subjects:')
      once(subjects, 'Invoice 4471 overdue')
      once(subjects, 'Your parcel is waiting')
    })

    it('shows at most 10 entries of a long list and says how many more there were', function () {
      const evidence = Array.from({ length: 10 }, (_, i): MessageSummary => ({
        ip: `192.0.2.${i + 1}`,
        helo: `host${i}.example`,
        domains: Array.from({ length: 5 }, (_, j) => `d${i * 5 + j}.example`),
        subject: `subject number ${i}`,
      }))
      const { bodyLines } = parseMessage(composeAlert(alertInput({ record: record({ evidence }) })).message)
      const domains = listText(bodyLines, 'Recipient domains:')
      const shown = domains.match(/\bd\d+\.example\b/g) ?? []
      assert.equal(shown.length, 10)
      assert.equal(new Set(shown).size, 10)
      assert.match(domains, /\b40 more\b/)
      assert.equal((listText(bodyLines, 'Source IPs:').match(/192\.0\.2\.\d+/g) ?? []).length, 10)
    })

    it('tells the reader to change the password before re-enabling the account', function () {
      const { bodyText } = parseMessage(composeAlert(alertInput()).message)
      const text = flat(bodyText)
      const password = text.search(/password[^.]*\bchange|change[^.]*password/i)
      assert.ok(password >= 0, 'mentions changing the password')
      const reEnable = text.search(/re-enable the account/i)
      assert.ok(reEnable > password, 'the password comes first')
    })

    it('explains both ways to re-enable: replying to the alert, or the command line', function () {
      const { bodyText } = parseMessage(composeAlert(alertInput()).message)
      assert.match(flat(bodyText), /reply to this message/i)
      assert.ok(bodyText.includes(CLI), 'the CLI command, verbatim')
    })

    it('says that doing nothing keeps the account disabled', function () {
      const { bodyText } = parseMessage(composeAlert(alertInput()).message)
      assert.match(flat(bodyText), /do nothing[^.]*stays disabled/i)
    })

    it('says until when a reply works: the moment of the disable plus token_ttl, in UTC', function () {
      const week = parseMessage(composeAlert(alertInput()).message).bodyText
      assert.match(week, /2024-03-12 14:07:09 UTC/)
      const twoDays = parseMessage(composeAlert(alertInput({ tokenTtlMs: 2 * DAY })).message).bodyText
      assert.match(twoDays, /2024-03-07 14:07:09 UTC/)
      assert.doesNotMatch(twoDays, /2024-03-12/)
    })

    it('goes to every configured recipient from the configured sender', function () {
      const mail = composeAlert(alertInput())
      assert.equal(mail.from, 'hijack-guard@mx.test.example')
      assert.deepEqual([...mail.to], ['postmaster@example.com', 'security@example.com'])
      const { header } = parseMessage(mail.message)
      assert.deepEqual(addressesOf(header, 'To'), ['postmaster@example.com', 'security@example.com'])
      assert.deepEqual(addressesOf(header, 'From'), ['hijack-guard@mx.test.example'])
    })
  })

  describe('composeAlert: headers and format', function () {
    it('is marked Auto-Submitted: auto-generated', function () {
      const { header } = parseMessage(composeAlert(alertInput()).message)
      assert.equal(header.get_decoded('Auto-Submitted').trim(), 'auto-generated')
    })

    it('sets Reply-To to local+hg-TOKEN@domain of reply_address', function () {
      const { header } = parseMessage(composeAlert(alertInput()).message)
      assert.deepEqual(addressesOf(header, 'Reply-To'), [`hijack-guard+hg-${TOKEN}@mx.test.example`])
    })

    it('replaces a +detail that reply_address already has', function () {
      const { header } = parseMessage(composeAlert(alertInput({ replyAddress: 'alerts+ops@example.org' })).message)
      assert.deepEqual(addressesOf(header, 'Reply-To'), [`alerts+hg-${TOKEN}@example.org`])
    })

    it('gives a Reply-To that the plugin recognises as its reply address, carrying this token', function () {
      const replyAddress = 'Alerts+ops@Example.org'
      const { header } = parseMessage(composeAlert(alertInput({ replyAddress })).message)
      const [address] = addressesOf(header, 'Reply-To')
      const rcpt = splitAddress(address ?? '')
      assert.ok(rcpt, `Reply-To is an address: ${address}`)
      assert.equal(isReplyRecipient(rcpt, replyAddress), true)
      assert.equal(findTokenIn(rcpt.local), TOKEN)
    })

    it('carries the token in the Message-ID and in the Subject', function () {
      const { header } = parseMessage(composeAlert(alertInput()).message)
      const messageId = header.get_decoded('Message-ID').trim()
      assert.match(messageId, /^<[^\s<>@]+@mx\.test\.example>$/)
      assert.equal(findTokenIn(messageId), TOKEN)
      assert.equal(findTokenIn(header.get_decoded('Subject')), TOKEN)
    })

    it('gives each incident its own Message-ID', function () {
      const a = parseMessage(composeAlert(alertInput()).message).header.get('Message-ID')
      const other = alertInput({
        token: 'a94c07e2b6d1f83590e4c2b7d8a6f1e3',
        record: record({ incident: 'c41e0b9f'.padEnd(32, '0') }),
      })
      const b = parseMessage(composeAlert(other).message).header.get('Message-ID')
      assert.notEqual(a, b)
    })

    it('RFC 2047-encodes a non-ASCII account in the Subject, which decodes back to the account and the token', function () {
      const account = 'jürgen.müller@example.com'
      const { header, headerLines } = parseMessage(composeAlert(alertInput({ record: record({ account }) })).message)
      const subjectLines: string[] = []
      let inSubject = false
      for (const line of headerLines) {
        if (/^Subject:/i.test(line)) inSubject = true
        else if (!/^[ \t]/.test(line)) inSubject = false
        if (inSubject) subjectLines.push(line)
      }
      assert.ok(subjectLines.length >= 1)
      for (const line of subjectLines) assert.match(line, /^[\x20-\x7e]*$/, 'raw Subject lines are printable ASCII')
      const words = subjectLines.join('').match(/=\?[^?]+\?[BQbq]\?[^?]*\?=/g) ?? []
      assert.ok(words.length >= 1, 'encoded words')
      for (const w of words) assert.ok(w.length <= 75, `encoded word of ${w.length} characters`)
      const decoded = header.get_decoded('Subject')
      assert.ok(decoded.includes(account), decoded)
      assert.match(decoded, /reached 500 messages in 30 minutes/)
      assert.equal(findTokenIn(decoded), TOKEN)
    })

    it('keeps every header line within 998 characters, even for a 1 KB account name', function () {
      for (const account of ['a'.repeat(1024), 'ü'.repeat(1024), '日本'.repeat(512)]) {
        const message = composeAlert(alertInput({ record: record({ account }) })).message
        const { headerLines, header } = parseMessage(message)
        for (const line of headerLines) {
          assert.ok(Buffer.byteLength(line) <= 998, `header line of ${Buffer.byteLength(line)} octets`)
        }
        assert.equal(findTokenIn(header.get_decoded('Subject')), TOKEN)
      }
    })

    it('ends every line with CRLF, and the message with a line end', function () {
      for (const input of [
        alertInput(),
        alertInput({ monitor: true, token: undefined }),
        alertInput({ record: record({ account: 'jürgen@example.com' }) }),
      ]) {
        assertCrlfOnly(composeAlert(input).message)
      }
    })

    it('is a well-formed RFC 5322 message: one From, To, Subject, Date and Message-ID, then a text/plain UTF-8 body', function () {
      const input = alertInput()
      const { header, headerLines, body } = parseMessage(composeAlert(input).message)
      for (const name of [
        'From',
        'To',
        'Subject',
        'Date',
        'Message-ID',
        'Auto-Submitted',
        'Reply-To',
        'MIME-Version',
        'Content-Type',
      ]) {
        assert.equal(countOf(headerLines, name), 1, name)
      }
      assert.equal(Date.parse(header.get_decoded('Date')), Math.floor(input.now / 1000) * 1000)
      assert.equal(header.get_decoded('MIME-Version').trim(), '1.0')
      assert.match(header.get_decoded('Content-Type'), /^text\/plain;\s*charset="?utf-8"?$/i)
      assert.match(body.bodytext, /alice@example\.com/)
      assert.match(body.bodytext, /reached 500 messages in 30 minutes/)
    })

    it('keeps a non-ASCII subject in the evidence readable in the UTF-8 body', function () {
      const evidence = [{ ip: '203.0.113.9', helo: 'x', domains: ['example.jp'], subject: 'お支払いの確認' }]
      const { body } = parseMessage(composeAlert(alertInput({ record: record({ evidence }) })).message)
      assert.match(body.bodytext, /お支払いの確認/)
    })

    it('keeps every body line within 998 octets, even when the evidence holds ten 120-character subjects and 50 long domains', function () {
      // summarize() keeps subjects up to 120 characters and 5 domains a message, the store 10
      // messages: all on one line that would be ~1250 characters, over RFC 5322's 998.
      for (const filler of [
        'Your account statement is ready, please review the attached invoice ',
        'お支払い方法の確認が必要です。添付の請求書をご確認ください。',
      ]) {
        const evidence = Array.from({ length: 10 }, (_, i): MessageSummary => ({
          ip: '203.0.113.9',
          helo: 'x',
          domains: Array.from(
            { length: 5 },
            (_, j) => `${String(i * 5 + j).padEnd(60, 'x')}.${'y'.repeat(60)}.example`,
          ),
          subject:
            Array.from(`${i} ${filler.repeat(5)}`)
              .slice(0, 117)
              .join('') + '...',
        }))
        const message = composeAlert(alertInput({ record: record({ evidence }) })).message
        assert.deepEqual(
          longLines(message).map((l) => `${Buffer.byteLength(l)} octets: ${l.slice(0, 40)}...`),
          [],
        )
      }
    })
  })

  describe('composeAlert in monitor mode', function () {
    const monitorInput = (): AlertInput => alertInput({ monitor: true, token: undefined })

    it('has no Reply-To and no token anywhere', function () {
      const mail = composeAlert(monitorInput())
      const { headerLines } = parseMessage(mail.message)
      assert.equal(countOf(headerLines, 'Reply-To'), 0)
      assert.equal(TOKEN_PATTERN.test(mail.message), false)
      assert.ok(!mail.message.includes(TOKEN))
    })

    it('says that nothing was refused, with the account and the limit it went over', function () {
      const { header, bodyText } = parseMessage(composeAlert(monitorInput()).message)
      const text = flat(bodyText)
      assert.match(text, /nothing was refused/i)
      assert.match(text, /alice@example\.com/)
      assert.match(text, /reached 500 messages in 30 minutes/)
      assert.match(header.get_decoded('Subject'), /monitor/i)
      assert.match(header.get_decoded('Subject'), /alice@example\.com/)
    })

    it('neither asks for a reply nor says that the account stays disabled', function () {
      const { bodyText } = parseMessage(composeAlert(monitorInput()).message)
      const text = flat(bodyText)
      assert.doesNotMatch(text, /reply to this message/i)
      assert.doesNotMatch(text, /stays disabled/i)
    })

    it('is still marked Auto-Submitted: auto-generated and well-formed', function () {
      const { header, headerLines } = parseMessage(composeAlert(monitorInput()).message)
      assert.equal(header.get_decoded('Auto-Submitted').trim(), 'auto-generated')
      for (const name of ['From', 'To', 'Subject', 'Date', 'Message-ID']) {
        assert.equal(countOf(headerLines, name), 1, name)
      }
    })
  })

  describe('composeNotice', function () {
    it('threads under the reply it answers with In-Reply-To', function () {
      const input = noticeInput()
      const { header } = parseMessage(composeNotice(input).message)
      assert.equal(header.get_decoded('In-Reply-To').trim(), input.inReplyTo)
    })

    it('is marked Auto-Submitted: auto-replied', function () {
      const { header } = parseMessage(composeNotice(noticeInput()).message)
      assert.equal(header.get_decoded('Auto-Submitted').trim(), 'auto-replied')
    })

    it('goes to the one address given, from the alert sender, with the given lines as its text', function () {
      const mail = composeNotice(noticeInput())
      assert.equal(mail.from, 'hijack-guard@mx.test.example')
      assert.deepEqual([...mail.to], ['postmaster@example.com'])
      const { header, body } = parseMessage(mail.message)
      assert.deepEqual(addressesOf(header, 'To'), ['postmaster@example.com'])
      assert.equal(header.get_decoded('Subject'), 'Account alice@example.com re-enabled')
      assert.match(
        body.bodytext,
        /The account alice@example\.com works again\.\r\n\r\nIf its password was not changed yet, change it now\./,
      )
    })

    it('has no In-Reply-To when there is no message to answer', function () {
      const { inReplyTo: _answered, ...input } = noticeInput()
      const { headerLines } = parseMessage(composeNotice(input).message)
      assert.equal(countOf(headerLines, 'In-Reply-To'), 0)
    })

    it('is a well-formed message with CRLF line ends and a unique Message-ID on this server', function () {
      const a = composeNotice(noticeInput()).message
      const b = composeNotice(noticeInput({ id: 'ffeeddccbbaa99887766554433221100' })).message
      assertCrlfOnly(a)
      const pa = parseMessage(a)
      for (const name of ['From', 'To', 'Subject', 'Date', 'Message-ID']) {
        assert.equal(countOf(pa.headerLines, name), 1, name)
      }
      assert.match(pa.header.get_decoded('Message-ID').trim(), /^<[^\s<>@]+@mx\.test\.example>$/)
      assert.notEqual(pa.header.get('Message-ID'), parseMessage(b).header.get('Message-ID'))
    })

    it('encodes a non-ASCII subject', function () {
      const subject = 'Account jürgen@example.com re-enabled'
      const { header, headerLines } = parseMessage(composeNotice(noticeInput({ subject })).message)
      for (const line of headerLines) assert.match(line, /^[\x20-\x7e\t]*$/)
      assert.equal(header.get_decoded('Subject'), subject)
    })
  })

  describe('encodeHeader', function () {
    it('leaves printable ASCII as it is', function () {
      assert.equal(encodeHeader('Account alice@example.com disabled'), 'Account alice@example.com disabled')
    })

    it('turns line breaks and control characters into spaces, so a value cannot start a header of its own', function () {
      for (const value of ['a\r\nBcc: evil@example.net', 'a\nBcc: x', 'a\rb\x00c', 'ü\r\nBcc: evil@example.net']) {
        const encoded = encodeHeader(value)
        // Only folding (CRLF followed by white space) may remain.
        assert.equal(/\r\n(?![ \t])|\r(?!\n)|(?<!\r)\n/.test(encoded), false, JSON.stringify(encoded))
        const h = new Header()
        h.parse([`Subject: ${encoded}\r\n`])
        assert.deepEqual(Object.keys(h.headers), ['subject'])
      }
    })

    it('encodes non-ASCII as UTF-8 encoded words of at most 75 characters that decode back to the value', function () {
      const value = 'Учётная запись пользователя отключена после необычной отправки писем — 日本語のテスト'
      const encoded = encodeHeader(value)
      for (const w of encoded.split(/\r\n[ \t]/)) {
        assert.match(w, /^=\?UTF-8\?B\?[A-Za-z0-9+/=]+\?=$/)
        assert.ok(w.length <= 75, `${w.length} characters`)
      }
      const h = new Header()
      h.parse([`Subject: ${encoded}\r\n`])
      assert.equal(h.get_decoded('Subject'), value)
    })
  })
})
