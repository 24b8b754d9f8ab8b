// The SMTP client side: nodemailer's SMTPConnection on loopback, no TLS, AUTH PLAIN or LOGIN
// forced. Every call answers a typed result (the stage reached, the server's code and text) and
// never throws on a 4xx/5xx or on a server that answers and hangs up; only openSession rejects,
// when the connection or its AUTH fails.

import * as util from 'node:util'
import SMTPConnection from 'nodemailer/lib/smtp-connection'
import { HOST } from './process'

/** How far a transaction got: where it was refused, or 'ok' when the message was accepted. */
export type Stage = 'connect' | 'auth' | 'mail' | 'rcpt' | 'data' | 'rset' | 'quit' | 'ok'

/** The server's answer to one step. */
export interface SmtpResult {
  readonly stage: Stage
  /** The reply code; null when there was none (connection refused or closed). */
  readonly code: number | null
  /** The whole reply line, or the client's error text when there was no reply. */
  readonly response: string
  /** A client-side error (socket, timeout) when the server did not answer. */
  readonly error?: Error
}

export interface RecipientError {
  readonly recipient: string
  readonly code: number | null
  readonly response: string
}

/** The outcome of sending one message. */
export interface SendResult extends SmtpResult {
  readonly accepted?: readonly string[]
  readonly rejected?: readonly string[]
  readonly rejectedErrors?: readonly RecipientError[]
  /** The session's transcript, on sendOne's results (C: client, S: server). */
  readonly transcript?: readonly string[]
}

export interface ConnectOptions {
  readonly port: number
  readonly host?: string
  /** The EHLO name (default client.test.example). */
  readonly name?: string
  /** Greeting and socket timeout (default 10000 ms). */
  readonly timeoutMs?: number
  /** The loopback address to connect from (e.g. 127.1.0.1, another /24); default the system's choice. */
  readonly localAddress?: string
}

export interface Credentials {
  readonly user: string
  readonly pass: string
  /** Default PLAIN. */
  readonly method?: 'PLAIN' | 'LOGIN'
}

export interface MessageSpec {
  readonly from: string
  readonly to: string | readonly string[]
  readonly subject?: string
  readonly body?: string
  /** Extra headers, after the usual ones. */
  readonly headers?: Readonly<Record<string, string>>
  /** The whole message as is, instead of one built from the fields above. */
  readonly raw?: string
}

/** An open, possibly authenticated session. */
export interface Session {
  /** The AUTH result, null when the session did not authenticate. */
  readonly auth: SmtpResult | null
  readonly transcript: readonly string[]
  /** True once the server hung up or close() ran. */
  readonly closed: boolean
  /** MAIL FROM, RCPT TO, DATA; never throws on a refusal or a hang-up. */
  send(message: MessageSpec): Promise<SendResult>
  rset(): Promise<SmtpResult>
  /** QUIT and wait (bounded, default 2000 ms) for the server to close. */
  close(timeoutMs?: number): Promise<void>
}

/** openSession's rejection: the connection or the AUTH failed. */
export class SmtpFailure extends Error {
  readonly stage: Stage
  readonly code: number | null
  readonly response: string
  constructor(message: string, result: SmtpResult) {
    super(message)
    this.name = 'SmtpFailure'
    this.stage = result.stage
    this.code = result.code
    this.response = result.response
  }
}

const STAGES: Readonly<Record<string, Stage>> = {
  EHLO: 'connect',
  HELO: 'connect',
  AUTH: 'auth',
  MAIL: 'mail',
  RCPT: 'rcpt',
  DATA: 'data',
  RSET: 'rset',
  QUIT: 'quit',
}

type Callback<T> = (err: SMTPConnection.SMTPError | null | undefined, value?: T) => void

interface State {
  stage: Stage
  closed: boolean
  readonly transcript: string[]
  /** The callback of the operation in flight; settled by a hang-up if the server never answers. */
  pending: Callback<unknown> | null
}

/** The reply code at the start of a reply line, or null. */
export function codeOf(response: string | false | undefined): number | null {
  const m = /^(\d{3})/.exec(String(response || ''))
  return m ? Number(m[1]) : null
}

const toList = (to: string | readonly string[]): string[] => (typeof to === 'string' ? [to] : [...to])

/** The message text for `spec`: the usual headers, then `headers`, then `body` (CRLF line ends). */
export function buildMessage(spec: MessageSpec): string {
  if (spec.raw !== undefined) return spec.raw
  const { from, subject = 'test', body = 'test body', headers = {} } = spec
  return [
    `From: <${from}>`,
    `To: ${toList(spec.to)
      .map((t) => `<${t}>`)
      .join(', ')}`,
    `Subject: ${subject}`,
    `Date: ${new Date().toUTCString()}`,
    `Message-ID: <${Date.now()}.${Math.random().toString(36).slice(2)}@client.test.example>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    '',
    ...body.split(/\r?\n/),
    '',
  ].join('\r\n')
}

const isGone = (conn: SMTPConnection, state: State): boolean =>
  state.closed || (conn as unknown as { _destroyed: boolean })._destroyed

function closedError(): SMTPConnection.SMTPError {
  return Object.assign(new Error('connection closed'), { code: 'ECONNECTION' })
}

function settlePending(state: State, err: SMTPConnection.SMTPError | null): void {
  const pending = state.pending
  if (!pending) return
  state.pending = null
  pending(err ?? closedError())
}

function transcriptLogger(state: State): SMTPConnection.Options['logger'] {
  const record = (entry: unknown, message: unknown, ...args: unknown[]): void => {
    const tnx = (entry as { tnx?: unknown } | null)?.tnx
    if (tnx !== 'client' && tnx !== 'server') return
    const text = util.format(message, ...args)
    state.transcript.push(`${tnx === 'client' ? 'C' : 'S'}: ${text}`)
    if (tnx === 'client') {
      const stage = STAGES[(text.split(/[\s:]/)[0] ?? '').toUpperCase()]
      if (stage) state.stage = stage
    }
  }
  return {
    level: () => undefined,
    trace: record,
    debug: record,
    info: record,
    warn: record,
    error: record,
    fatal: record,
  }
}

/** Runs one callback-style client operation; a hang-up while it waits settles it too. */
function op<T>(
  conn: SMTPConnection,
  state: State,
  fn: (cb: Callback<T>) => void,
): Promise<{ err?: SMTPConnection.SMTPError | null; value?: T }> {
  return new Promise((resolve) => {
    if (isGone(conn, state)) return resolve({ err: closedError() })
    state.pending = (err, value) => resolve({ err, value: value as T })
    fn((err, value) => {
      const pending = state.pending
      state.pending = null
      if (pending) pending(err, value)
    })
  })
}

function resultFromError(state: State, err: SMTPConnection.SMTPError, stageOverride?: Stage): SmtpResult {
  let stage = stageOverride ?? state.stage
  if (err.command === 'MAIL FROM') stage = 'mail'
  else if (err.command === 'RCPT TO') stage = 'rcpt'
  else if (err.command === 'DATA') stage = 'data'
  else if (err.command?.startsWith('AUTH')) stage = 'auth'
  const code = err.responseCode ?? codeOf(err.response)
  return { stage, code, response: err.response ?? err.message, ...(err.responseCode ? {} : { error: err }) }
}

const recipientErrors = (errors: SMTPConnection.SMTPError[] | undefined): RecipientError[] =>
  (errors ?? []).map((e) => ({
    recipient: (e as { recipient?: string }).recipient ?? '',
    code: e.responseCode ?? null,
    response: e.response ?? e.message,
  }))

interface Connected {
  readonly conn: SMTPConnection
  readonly state: State
  readonly error?: SMTPConnection.SMTPError
}

/** Opens a connection and waits for the greeting and EHLO; never rejects. */
function connect({
  port,
  host = HOST,
  name = 'client.test.example',
  timeoutMs = 10_000,
  localAddress,
}: ConnectOptions): Promise<Connected> {
  return new Promise((resolve) => {
    const state: State = { stage: 'connect', closed: false, transcript: [], pending: null }
    const conn = new SMTPConnection({
      host,
      port,
      name,
      ...(localAddress ? { localAddress } : {}),
      secure: false,
      ignoreTLS: true,
      connectionTimeout: Math.min(timeoutMs, 5000),
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
      logger: transcriptLogger(state),
      transactionLog: true,
    })
    // A server may answer and then hang up (550 and disconnect at MAIL FROM): nodemailer then
    // emits 'error' after the answer was delivered. Settle what is pending; never throw.
    conn.on('error', (err) => settlePending(state, err))
    conn.on('end', () => {
      state.closed = true
      settlePending(state, null)
    })
    state.pending = (err) => resolve(err ? { conn, state, error: err } : { conn, state })
    conn.connect((err) => {
      const pending = state.pending
      state.pending = null
      if (pending) pending(err)
    })
  })
}

async function doAuth(
  conn: SMTPConnection,
  state: State,
  { user, pass, method = 'PLAIN' }: Credentials,
): Promise<SmtpResult> {
  // nodemailer reads `method` from the credentials although its types do not list it.
  const credentials = { user, pass, method } as SMTPConnection.Credentials
  const { err } = await op<void>(conn, state, (cb) => conn.login(credentials, cb))
  if (err) return resultFromError(state, err, 'auth')
  return {
    stage: 'auth',
    code: codeOf(conn.lastServerResponse) ?? 235,
    response: String(conn.lastServerResponse || ''),
  }
}

function makeSession(conn: SMTPConnection, state: State, auth: SmtpResult | null): Session {
  return {
    auth,
    transcript: state.transcript,
    get closed() {
      return isGone(conn, state)
    },
    async send(message) {
      const to = toList(message.to)
      state.stage = 'mail'
      const { err, value } = await op<SMTPConnection.SentMessageInfo>(conn, state, (cb) =>
        conn.send({ from: message.from, to }, buildMessage({ ...message, to }), cb),
      )
      if (err) {
        const rejected = (err as { rejected?: string[] }).rejected
        const rejectedErrors = (err as { rejectedErrors?: SMTPConnection.SMTPError[] }).rejectedErrors
        return {
          ...resultFromError(state, err),
          ...(rejected ? { rejected } : {}),
          ...(rejectedErrors ? { rejectedErrors: recipientErrors(rejectedErrors) } : {}),
        }
      }
      const info = value as SMTPConnection.SentMessageInfo
      return {
        stage: 'ok',
        code: codeOf(info.response),
        response: String(info.response || ''),
        accepted: info.accepted,
        rejected: info.rejected,
        rejectedErrors: recipientErrors(info.rejectedErrors),
      }
    },
    async rset() {
      const { err } = await op<void>(conn, state, (cb) => conn.reset(cb))
      if (err) return resultFromError(state, err, 'rset')
      return { stage: 'rset', code: codeOf(conn.lastServerResponse), response: String(conn.lastServerResponse || '') }
    },
    async close(timeoutMs = 2000) {
      if (isGone(conn, state)) return
      const ended = new Promise<void>((resolve) => conn.once('end', resolve))
      try {
        conn.quit()
      } catch {
        // already closing
      }
      let timer: NodeJS.Timeout | undefined
      const bound = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs)
      })
      await Promise.race([ended, bound])
      clearTimeout(timer)
      conn.close()
    },
  }
}

/** Opens a session, authenticated when `user` is given. Rejects with SmtpFailure when the connection or AUTH fails. */
export async function openSession(options: ConnectOptions & Partial<Credentials>): Promise<Session> {
  const { conn, state, error } = await connect(options)
  if (error) {
    conn.close()
    const r = resultFromError(state, error, 'connect')
    throw new SmtpFailure(`connect to ${options.port} failed: ${r.code ?? ''} ${r.response}`, r)
  }
  let auth: SmtpResult | null = null
  if (options.user !== undefined) {
    auth = await doAuth(conn, state, { user: options.user, pass: options.pass ?? '', method: options.method })
    if (auth.code !== 235) {
      conn.close()
      throw new SmtpFailure(`AUTH as ${JSON.stringify(options.user)} failed: ${auth.code} ${auth.response}`, auth)
    }
  }
  return makeSession(conn, state, auth)
}

/** Connects, authenticates and quits: the AUTH answer (stage 'auth'), or the connection failure (stage 'connect'). */
export async function tryAuth(options: ConnectOptions & Credentials): Promise<SmtpResult> {
  const { conn, state, error } = await connect(options)
  if (error) {
    conn.close()
    return resultFromError(state, error, 'connect')
  }
  const r = await doAuth(conn, state, options)
  await makeSession(conn, state, r).close()
  return r
}

/**
 * Connects, authenticates when `user` is given, sends one message and quits. The result's stage
 * says where it stopped: 'connect', 'auth', 'mail', 'rcpt', 'data', or 'ok'.
 */
export async function sendOne(options: ConnectOptions & Partial<Credentials> & MessageSpec): Promise<SendResult> {
  const { conn, state, error } = await connect(options)
  if (error) {
    conn.close()
    return resultFromError(state, error, 'connect')
  }
  const session = makeSession(conn, state, null)
  if (options.user !== undefined) {
    const auth = await doAuth(conn, state, { user: options.user, pass: options.pass ?? '', method: options.method })
    if (auth.code !== 235) {
      await session.close()
      return auth
    }
  }
  const r = await session.send(options)
  await session.close()
  return { ...r, transcript: state.transcript }
}
