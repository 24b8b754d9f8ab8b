// What the end-to-end tests share beyond support/: assertions on SMTP results, the sink's
// messages, Haraka's log and outbound queue, Redis keys, and the messages and config the tests
// write. The process-level machinery (Haraka, Redis, the sink, the SMTP client) is support/.
// See test/e2e/README.md.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import {
  createHaraka,
  dumpLogsIfFailed,
  escapeRegExp,
  packPlugin,
  sendOne,
  startRedis,
  startSink,
  stopAll,
  waitUntil,
  type ConnectOptions,
  type Credentials,
  type HarakaInstance,
  type HarakaOptions,
  type MessageSpec,
  type RedisServer,
  type RedisServerOptions,
  type SendResult,
  type Sink,
  type SinkMessage,
  type SinkOptions,
  type SmtpResult,
} from '../../support'
import { describeCli, runCli, type CliOptions, type CliResult } from '../../support/cli'

export { preauthName } from '../../support'

// -------------------------------------------------------------------------------------------
// SMTP results (from sendOne / session.send / tryAuth)

/** A result that is exactly "250" at the end of the transaction. */
export function assert250(r: SmtpResult, what: string): void {
  assert.equal(r.stage, 'ok', `${what}: ${JSON.stringify(r)}`)
  assert.equal(r.code, 250, `${what}: ${JSON.stringify(r)}`)
}

/** A result that is exactly "550 5.7.1 ..." at the given stage. */
export function assert550(r: SmtpResult, stage: SmtpResult['stage'], what: string): void {
  assert.equal(r.stage, stage, `${what}: ${JSON.stringify(r)}`)
  assert.equal(r.code, 550, `${what}: ${JSON.stringify(r)}`)
  assert.match(r.response, /^550 5\.7\.1 /, what)
}

/**
 * An AUTH answered "535 5.7.8 ..." whose text also matches `text` (the plugin's "is disabled" by
 * default; null: any text).
 */
export function assert535(r: SmtpResult, what: string, { text = /is disabled/ }: { text?: RegExp | null } = {}): void {
  assert.equal(r.code, 535, `${what}: ${JSON.stringify(r)}`)
  assert.match(r.response, /^535 5\.7\.8 /, what)
  if (text) assert.match(r.response, text, what)
}

// -------------------------------------------------------------------------------------------
// the sink

/** The sink messages whose subject starts with prefix, and (optionally) that went to rcpt. */
export function bySubject(sink: Sink, prefix: string, rcpt?: string): SinkMessage[] {
  return sink.messages.filter(
    (m) => typeof m.subject === 'string' && m.subject.startsWith(prefix) && (!rcpt || m.to.includes(rcpt)),
  )
}

/** Waits until the sink holds at least n messages bySubject(sink, prefix, rcpt); returns them all. */
export async function waitSubjects(
  sink: Sink,
  prefix: string,
  n: number,
  { rcpt, timeoutMs = 15000 }: { rcpt?: string; timeoutMs?: number } = {},
): Promise<SinkMessage[]> {
  await waitUntil(() => bySubject(sink, prefix, rcpt).length >= n, {
    timeoutMs,
    message: () =>
      `sink has ${bySubject(sink, prefix, rcpt).length} of ${n} messages with subject ${prefix}*${rcpt ? ` to ${rcpt}` : ''}; all: ${JSON.stringify(sink.messages.map((m) => [m.from, m.to, m.subject]))}`,
  })
  return bySubject(sink, prefix, rcpt)
}

// The subjects of the plugin's mail: the alert (followed by the reason and the token), the
// confirmation of a re-enable, the notice that a reply was not accepted.
export const alertPrefix = (account: string): string => `Account ${account} disabled: `
export const reenabledSubject = (account: string): string => `Account ${account} re-enabled`
export const NOT_ACCEPTED = 'Reply to hijack-guard alert not accepted'

// -------------------------------------------------------------------------------------------
// Haraka's log and outbound queue

/** The number of lines of text that match regex. */
export function countMatches(text: string, regex: RegExp): number {
  return text.split('\n').filter((line) => regex.test(line)).length
}

/**
 * Every outbound.send_email() call (alerts and notices; relayed mail does not go through it)
 * logs this line, synchronously, inside the call.
 */
export const SEND_EMAIL = /\[outbound\] Sending email via params/

/** The Haraka transaction id in a 250 / 550 answer: "... (UUID.N)"; null when there is none. */
export function txnId(response: string): string | null {
  const m = /\(([0-9A-F]{8}-[0-9A-F-]+\.\d+)\)\s*$/.exec(String(response))
  return m?.[1] ?? null
}

export interface SettledResult extends SendResult {
  /** The transaction id in the answer (txnId). */
  readonly id: string | null
  /** The instance's log since the send. */
  readonly log: string
  /** The send_email calls logged meanwhile. */
  readonly sendEmails: number
}

/**
 * Sends a message (sendOne options, port of srv) and waits until Haraka's log has caught up with
 * the end of that transaction (the queue line that precedes the answer). The plugin queues a
 * notice, if any, before it answers, so `sendEmails` is exact.
 */
export async function sendAndSettle(
  srv: HarakaInstance,
  opts: Omit<ConnectOptions, 'port'> & Partial<Credentials> & MessageSpec,
): Promise<SettledResult> {
  const mark = srv.logMark()
  const r = await sendOne({ port: srv.port, ...opts })
  const id = txnId(r.response)
  if (id) await srv.waitForLog(new RegExp(`\\(${escapeRegExp(id)}\\)`), { since: mark })
  const log = srv.log().slice(mark)
  return { ...r, id, log, sendEmails: countMatches(log, SEND_EMAIL) }
}

/** Outbound queue files of an instance (Haraka removes them once delivered). */
export function queueFiles(haraka: HarakaInstance): string[] {
  try {
    return readdirSync(join(haraka.dir, 'queue'))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
}

/** Waits until the outbound queue of an instance is empty. */
export async function waitQueueEmpty(
  haraka: HarakaInstance,
  { timeoutMs = 10000, intervalMs }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  await waitUntil(() => queueFiles(haraka).length === 0, {
    timeoutMs,
    ...(intervalMs === undefined ? {} : { intervalMs }),
    message: () => `outbound queue of ${haraka.dir} still holds ${JSON.stringify(queueFiles(haraka))}`,
  })
}

// -------------------------------------------------------------------------------------------
// Redis

/**
 * The account's hash-tag body as docs/store.md documents it (written independently here):
 * letters, digits and @ . _ + - stay, every other UTF-8 byte is %XX, the empty login is %.
 */
export function encodeAccount(account: string): string {
  if (account === '') return '%'
  let out = ''
  for (const byte of Buffer.from(account, 'utf8')) {
    const ch = String.fromCharCode(byte)
    out += byte < 0x80 && /^[A-Za-z0-9@._+-]$/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/** Redis keys as docs/store.md documents them: an account's disable record and counts, the audit list. */
export const disabledKey = (account: string): string => `hijack-guard:{${encodeAccount(account)}}:disabled`
export const countsKey = (account: string): string => `hijack-guard:{${encodeAccount(account)}}:counts`
export const AUDIT_KEY = 'hijack-guard:audit'

/** Redis TIME in ms (the plugin's clock). */
export async function redisNowMs(redis: RedisServer): Promise<number> {
  const [s, us] = (await redis.command(['TIME'])) as [string, string]
  return Number(s) * 1000 + Math.floor(Number(us) / 1000)
}

// -------------------------------------------------------------------------------------------
// what the tests write: config and messages

/**
 * config/outbound.ini with which Haraka retries a temporary failure after 5 s (its smallest
 * interval) for a long while, so mail the sink refuses with 451 stays in the queue; the support/
 * default is no retry at all.
 */
export const RETRYING_OUTBOUND = [
  '[main]',
  'enable_tls=false',
  'local_mx_ok=true',
  'inet_prefer=v4',
  'connect_timeout=5',
  'temp_fail_intervals=5s*30',
  '',
].join('\n')

export interface PluginIniOptions {
  readonly store?: 'redis' | 'memory'
  /** More [main] lines. */
  readonly main?: string
  readonly limits?: string
  readonly to?: string
  readonly reactivate?: string
  readonly held?: string
  /** [signals] lines. */
  readonly signals?: string
  /** [warn] lines. */
  readonly warn?: string
  /**
   * Keep the [reactivate] defaults that change what happens after an enable (the incident's
   * password refused, probation, the cap on reply enables). Off by default: most tests re-enable
   * an account and use it again as before; the tests of those features turn it on.
   */
  readonly afterEnableDefaults?: boolean
}

/**
 * config/hijack-guard.ini: [main] store (and the `main` lines), [redis] port (left out when
 * redisPort is null), [limits], [alert] to, and [reactivate] / [held] / [signals] / [warn] when given.
 */
export function pluginIni(
  redisPort: number | null,
  {
    store = 'redis',
    main = '',
    limits = 'messages = 3/1m\nrecipients = 100/1h',
    to = 'postmaster@test.example',
    reactivate,
    held,
    signals,
    warn,
    afterEnableDefaults = false,
  }: PluginIniOptions = {},
): string {
  return [
    '[main]',
    `store = ${store}`,
    main,
    ...(redisPort === null ? [] : ['[redis]', `port = ${redisPort}`]),
    '[limits]',
    limits,
    '[alert]',
    `to = ${to}`,
    '[reactivate]',
    ...(afterEnableDefaults ? [] : ['require_new_password = false', 'probation = 0', 'max_reply_enables = 0']),
    ...(reactivate === undefined ? [] : [reactivate]),
    ...(held === undefined ? [] : ['[held]', held]),
    ...(signals === undefined ? [] : ['[signals]', signals]),
    ...(warn === undefined ? [] : ['[warn]', warn]),
    '',
  ].join('\n')
}

/** 32 random hex digits (the shape of an incident token). */
export const randomHex = (): string => randomBytes(16).toString('hex')

export interface ReplyOptions {
  readonly from: string
  readonly to: string | readonly string[]
  /** The alert as the sink got it: quoted, and its Message-ID and subject answered. */
  readonly alert?: SinkMessage
  readonly subject?: string
  readonly inReplyTo?: string
  readonly references?: string
  readonly headers?: Readonly<Record<string, string>>
  readonly text?: string
}

function header(message: SinkMessage | undefined, name: string): string | undefined {
  const value = message?.headers[name]
  return Array.isArray(value) ? value[0] : value
}

/**
 * A reply as a mail client writes it: Re: subject, In-Reply-To and References naming the alert's
 * Message-ID, the alert quoted below the answer. Any part may be left out or replaced.
 */
export function replyRaw({
  from,
  to,
  alert,
  subject,
  inReplyTo,
  references,
  headers = {},
  text = 'Password changed. Please re-enable the account.',
}: ReplyOptions): string {
  const quoted = alert
    ? alert.body
        .replace(/\r?\n$/, '')
        .split(/\r?\n/)
        .map((l) => (l ? `> ${l}` : '>'))
    : []
  const lines = [
    `From: Admin <${from}>`,
    `To: ${([] as string[]).concat(to).join(', ')}`,
    `Subject: ${subject !== undefined ? subject : `Re: ${alert?.subject ?? ''}`}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <reply-${randomHex()}@client.test.example>`,
  ]
  const irt = inReplyTo !== undefined ? inReplyTo : header(alert, 'message-id')
  const refs = references !== undefined ? references : header(alert, 'message-id')
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
  if (alert) lines.push(`On ${header(alert, 'date') ?? ''}, Hijack Guard wrote:`, ...quoted, '')
  return lines.join('\r\n')
}

/** The value of a header the message has exactly once. */
export function headerOf(message: SinkMessage, name: string): string {
  const value = message.headers[name]
  assert.ok(typeof value === 'string', `${name} of ${JSON.stringify(message.subject)}: ${JSON.stringify(value)}`)
  return value
}

/** The element at `index`; fails the test when there is none. */
export function at<T>(list: readonly T[], index: number, what: string): T {
  const value = list[index]
  assert.ok(value !== undefined, `${what}: no element ${index} in a list of ${list.length}`)
  return value
}

/**
 * An audit entry as the store writes it to the Redis list (docs/store.md) and `hijack-guard
 * --json audit` prints it (newest first).
 */
export interface AuditEntry {
  /** Milliseconds since the epoch. */
  readonly at: number
  readonly account: string
  readonly action: string
  readonly actor: string
  readonly how: string
  readonly reason?: string
}

// -------------------------------------------------------------------------------------------
// the CLI

/** Runs the CLI the package installed into the instance (support/cli.ts runCli); asserts its exit code. */
export async function cliOk(
  instance: { readonly dir: string },
  args: readonly string[],
  { code = 0, ...opts }: CliOptions & { code?: number } = {},
): Promise<CliResult> {
  const r = await runCli(instance, args, opts)
  assert.equal(r.code, code, describeCli(r))
  return r
}

// -------------------------------------------------------------------------------------------
// the set-up every suite shares

export interface E2eWorldOptions {
  /** Start one sink for the suite (default true); false: tests start their own (extraSink). */
  readonly sink?: boolean
  /** Start one redis-server for the suite (default true). */
  readonly redis?: boolean
  /** Logins every haraka() instance has besides its own users ({ login: password }). */
  readonly users?: Readonly<Record<string, string>>
  /** Plugins placed before the auth plugin of every haraka() instance, before its own. */
  readonly beforePlugins?: readonly string[]
  /** Whether haraka() starts the instance unless told otherwise (default true). */
  readonly start?: boolean
}

export interface E2eWorld {
  /** The suite's sink (cleared and accepting mail at the start of every test). */
  readonly sink: Sink
  /** The suite's redis-server (running and flushed at the start of every test). */
  readonly redis: RedisServer
  /**
   * A Haraka instance with the packed plugin that delivers to the suite's sink and the suite's
   * users and beforePlugins; destroyed after the test; started unless start is false.
   */
  readonly haraka: (opts?: HarakaOptions, options?: { start?: boolean }) => Promise<HarakaInstance>
  /** Another redis-server, stopped after the test (stop() also resumes a frozen one). */
  readonly extraRedis: (opts?: RedisServerOptions) => Promise<RedisServer>
  /** Another sink, stopped after the test. */
  readonly extraSink: (opts?: SinkOptions) => Promise<Sink>
  /** Runs fn after the current test (newest first, with the instances above). */
  readonly cleanup: (fn: () => Promise<void>) => void
}

/**
 * Registers the mocha hooks every e2e suite shares and returns what they set up. Call it at the
 * top of a describe(): before (packPlugin with its long timeout, the sink, redis-server),
 * beforeEach (the sink accepts mail again and forgets it, Redis runs and is flushed), afterEach
 * (Haraka's log if the test failed; whatever the test started is stopped, newest first), after
 * (stopAll).
 */
export function e2eWorld(options: E2eWorldOptions = {}): E2eWorld {
  const { users = {}, beforePlugins = [], start: startByDefault = true } = options
  let sink: Sink | undefined
  let redis: RedisServer | undefined
  const cleanups: Array<() => Promise<void>> = []

  before(async function () {
    this.timeout(240000) // npm pack (build) + npm install, once per run
    await packPlugin()
    if (options.sink !== false) sink = await startSink()
    if (options.redis !== false) redis = await startRedis()
  })

  after(async function () {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
    await stopAll() // redis, the sink, anything left
  })

  beforeEach(async function () {
    sink?.accept()
    sink?.clear()
    if (redis) {
      if (!redis.alive()) await redis.start()
      await redis.flushall()
    }
  })

  afterEach(async function () {
    dumpLogsIfFailed(this)
    sink?.accept()
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  })

  return {
    get sink(): Sink {
      assert.ok(sink, 'e2eWorld: no suite sink (sink: false, or before() has not run)')
      return sink
    },
    get redis(): RedisServer {
      assert.ok(redis, 'e2eWorld: no suite redis-server (redis: false, or before() has not run)')
      return redis
    },
    async haraka(opts: HarakaOptions = {}, { start = startByDefault }: { start?: boolean } = {}) {
      const inst = await createHaraka({
        ...(sink ? { sink } : {}),
        ...opts,
        users: { ...users, ...opts.users },
        beforePlugins: [...beforePlugins, ...(opts.beforePlugins ?? [])],
      })
      cleanups.push(() => inst.destroy())
      if (start) await inst.start()
      return inst
    },
    async extraRedis(opts?: RedisServerOptions) {
      const r = await startRedis(opts)
      cleanups.push(() => r.stop())
      return r
    },
    async extraSink(opts?: SinkOptions) {
      const s = await startSink(opts)
      cleanups.push(() => s.stop())
      return s
    },
    cleanup(fn: () => Promise<void>): void {
      cleanups.push(fn)
    },
  }
}

/**
 * `login` answers the alert as a mail client does (replyRaw: Re: subject, In-Reply-To, the alert
 * quoted) to the alert's Reply-To, over an authenticated session; the settled result.
 */
export function replyToAlert(
  srv: HarakaInstance,
  alert: SinkMessage,
  login: Credentials,
  reply: Omit<ReplyOptions, 'from' | 'to' | 'alert'> = {},
): Promise<SettledResult> {
  const to = headerOf(alert, 'reply-to')
  return sendAndSettle(srv, {
    ...login,
    from: login.user,
    to: [to],
    raw: replyRaw({ ...reply, from: login.user, to, alert }),
  })
}
