'use strict'

// Small helpers shared by the end-to-end tests: assertions on SMTP results, the sink's
// messages, Haraka's log and outbound queue, Redis keys, and the messages and config the tests
// write. The process-level machinery (Haraka, Redis, the sink, the SMTP client) is in
// harness.js. See test/e2e/README.md.

const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')

const h = require('./harness')

// -------------------------------------------------------------------------------------------
// SMTP results (from h.sendOne / session.send / h.tryAuth)

// a result that is exactly "250" at the end of the transaction
function assert250 (r, what) {
  assert.equal(r.stage, 'ok', `${what}: ${JSON.stringify(r)}`)
  assert.equal(r.code, 250, `${what}: ${JSON.stringify(r)}`)
}

// a result that is exactly "550 5.7.1 ..." at the given stage
function assert550 (r, stage, what) {
  assert.equal(r.stage, stage, `${what}: ${JSON.stringify(r)}`)
  assert.equal(r.code, 550, `${what}: ${JSON.stringify(r)}`)
  assert.match(r.response, /^550 5\.7\.1 /, what)
}

// an AUTH answered "535 5.7.8 ..." whose text also matches `text` (the plugin's "is disabled"
// by default; null: any text)
function assert535 (r, what, { text = /is disabled/ } = {}) {
  assert.equal(r.code, 535, `${what}: ${JSON.stringify(r)}`)
  assert.match(r.response, /^535 5\.7\.8 /, what)
  if (text) assert.match(r.response, text, what)
}

// -------------------------------------------------------------------------------------------
// the sink

// the sink messages whose subject starts with prefix, and (optionally) that went to rcpt
function bySubject (sink, prefix, rcpt) {
  return sink.messages.filter((m) => typeof m.subject === 'string' && m.subject.startsWith(prefix) && (!rcpt || m.to.includes(rcpt)))
}

// waits until the sink holds at least n messages bySubject(sink, prefix, rcpt); returns them all
async function waitSubjects (sink, prefix, n, { rcpt, timeoutMs = 15000 } = {}) {
  await h.waitUntil(() => bySubject(sink, prefix, rcpt).length >= n, {
    timeoutMs,
    message: () => `sink has ${bySubject(sink, prefix, rcpt).length} of ${n} messages with subject ${prefix}*${rcpt ? ` to ${rcpt}` : ''}; all: ${JSON.stringify(sink.messages.map((m) => [m.from, m.to, m.subject]))}`,
  })
  return bySubject(sink, prefix, rcpt)
}

// The subjects of the plugin's mail: the alert (followed by the reason and the token), the
// confirmation of a re-enable, the notice that a reply was not accepted
const alertPrefix = (account) => `Account ${account} disabled: `
const reenabledSubject = (account) => `Account ${account} re-enabled`
const NOT_ACCEPTED = 'Reply to hijack-guard alert not accepted'

// -------------------------------------------------------------------------------------------
// Haraka's log and outbound queue

// the number of lines of text that match regex
function countMatches (text, regex) {
  return text.split('\n').filter((line) => regex.test(line)).length
}

// Every outbound.send_email() call (alerts and notices; relayed mail does not go through it)
// logs this line, synchronously, inside the call.
const SEND_EMAIL = /\[outbound\] Sending email via params/

// The Haraka transaction id in a 250 / 550 answer: "... (UUID.N)"; null when there is none
function txnId (response) {
  const m = /\(([0-9A-F]{8}-[0-9A-F-]+\.\d+)\)\s*$/.exec(String(response))
  return m ? m[1] : null
}

// Sends a message (h.sendOne options, port of srv) and waits until Haraka's log has caught up
// with the end of that transaction (the queue line that precedes the answer). Adds to the result
// r.id (txnId), r.log (srv's log since the send) and r.sendEmails (the send_email calls logged
// meanwhile: the plugin queues a notice, if any, before it answers, so this is exact).
async function sendAndSettle (srv, opts) {
  const mark = srv.logMark()
  const r = await h.sendOne({ port: srv.port, ...opts })
  const id = txnId(r.response)
  if (id) await srv.waitForLog(new RegExp(`\\(${h.escapeRegExp(id)}\\)`), { since: mark })
  r.id = id
  r.log = srv.log().slice(mark)
  r.sendEmails = countMatches(r.log, SEND_EMAIL)
  return r
}

// Outbound queue files of an instance (Haraka removes them once delivered)
function queueFiles (haraka) {
  try {
    return fs.readdirSync(path.join(haraka.dir, 'queue'))
  } catch (err) {
    if (err.code === 'ENOENT') return []
    throw err
  }
}

// waits until the outbound queue of an instance is empty (intervalMs: h.waitUntil's default)
async function waitQueueEmpty (haraka, { timeoutMs = 10000, intervalMs } = {}) {
  await h.waitUntil(() => queueFiles(haraka).length === 0, {
    timeoutMs,
    intervalMs,
    message: () => `outbound queue of ${haraka.dir} still holds ${JSON.stringify(queueFiles(haraka))}`,
  })
}

// -------------------------------------------------------------------------------------------
// Redis

// The account's hash-tag body as lib/store/keys.ts documents it (written independently here):
// letters, digits and @ . _ + - stay, every other UTF-8 byte is %XX, the empty login is %.
function encodeAccount (account) {
  if (account === '') return '%'
  let out = ''
  for (const byte of Buffer.from(account, 'utf8')) {
    const ch = String.fromCharCode(byte)
    out += byte < 0x80 && /^[A-Za-z0-9@._+-]$/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

// Redis keys as lib/store/keys.ts documents them: an account's disable record and counts, the audit list
const disabledKey = (account) => `hijack-guard:{${encodeAccount(account)}}:disabled`
const countsKey = (account) => `hijack-guard:{${encodeAccount(account)}}:counts`
const AUDIT_KEY = 'hijack-guard:audit'

// Redis TIME in ms (the plugin's clock)
async function redisNowMs (redis) {
  const [s, us] = await redis.command('TIME')
  return Number(s) * 1000 + Math.floor(Number(us) / 1000)
}

// -------------------------------------------------------------------------------------------
// what the tests write: config, test-only plugins, messages

// config/hijack-guard.ini: [main] store (and the `main` lines), [redis] port (left out when
// redisPort is null), [limits], [alert] to, and [reactivate] / [held] when given
function pluginIni (redisPort, { store = 'redis', main = '', limits = 'messages = 3/1m\nrecipients = 100/1h', to = 'postmaster@test.example', reactivate, held } = {}) {
  return [
    '[main]',
    `store = ${store}`,
    main,
    ...(redisPort == null ? [] : ['[redis]', `port = ${redisPort}`]),
    '[limits]',
    limits,
    '[alert]',
    `to = ${to}`,
    ...(reactivate === undefined ? [] : ['[reactivate]', reactivate]),
    ...(held === undefined ? [] : ['[held]', held]),
    '',
  ].join('\n')
}

// Test-only auth path the plugin cannot wrap (for createHaraka's testPlugins, placed in
// beforePlugins): a session whose EHLO name is preauthName(login), preauth-<hex>.test, counts
// as logged in as the hex-decoded login, the way a session of an auth plugin that is not an
// auth_base descendant (or one logged in before a restart) would. It lets a test reach MAIL FROM
// for an account whose AUTH is refused.
const PREAUTH_PLUGIN = `'use strict'
exports.hook_ehlo = function (next, connection, helo) {
  const m = /^preauth-([0-9a-f]+)\\.test$/.exec(String(helo))
  if (m) {
    connection.relaying = true
    connection.notes.auth_user = Buffer.from(m[1], 'hex').toString('utf8')
    connection.loginfo(this, 'preauth ' + JSON.stringify(connection.notes.auth_user))
  }
  next()
}
`

const preauthName = (login) => `preauth-${Buffer.from(login, 'utf8').toString('hex')}.test`

// 32 random hex digits (the shape of an incident token)
const randomHex = () => crypto.randomBytes(16).toString('hex')

// A reply as a mail client writes it: Re: subject, In-Reply-To and References naming the
// alert's Message-ID, the alert quoted below the answer. Any part may be left out or replaced.
function replyRaw ({ from, to, alert, subject, inReplyTo, references, headers = {}, text = 'Password changed. Please re-enable the account.' }) {
  const quoted = alert ? alert.body.replace(/\r?\n$/, '').split(/\r?\n/).map((l) => (l ? `> ${l}` : '>')) : []
  const lines = [
    `From: Admin <${from}>`,
    `To: ${[].concat(to).join(', ')}`,
    `Subject: ${subject !== undefined ? subject : `Re: ${alert.subject}`}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <reply-${randomHex()}@client.test.example>`,
  ]
  const irt = inReplyTo !== undefined ? inReplyTo : alert && alert.headers['message-id']
  const refs = references !== undefined ? references : alert && alert.headers['message-id']
  if (irt) lines.push(`In-Reply-To: ${irt}`)
  if (refs) lines.push(`References: ${refs}`)
  lines.push(
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    '',
    text,
    '',
  )
  if (alert) lines.push(`On ${alert.headers.date}, Hijack Guard wrote:`, ...quoted, '')
  return lines.join('\r\n')
}

module.exports = {
  assert250,
  assert550,
  assert535,
  bySubject,
  waitSubjects,
  alertPrefix,
  reenabledSubject,
  NOT_ACCEPTED,
  countMatches,
  SEND_EMAIL,
  txnId,
  sendAndSettle,
  queueFiles,
  waitQueueEmpty,
  encodeAccount,
  disabledKey,
  countsKey,
  AUDIT_KEY,
  redisNowMs,
  pluginIni,
  PREAUTH_PLUGIN,
  preauthName,
  randomHex,
  replyRaw,
}
