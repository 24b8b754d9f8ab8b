// The loopback SMTP sink: the "outside world" every message Haraka delivers ends up in. It keeps
// (or only counts) what it receives and can refuse MAIL FROM on demand, to make Haraka retry,
// and refuse given recipients at RCPT TO, like an unknown user at the next hop.

import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server'
import { HOST, freePort, track, untrack, waitUntil } from './process'

/** One message the sink received. */
export interface SinkMessage {
  /** The envelope sender; null for the null sender <>. */
  readonly from: string | null
  readonly to: readonly string[]
  readonly raw: string
  /** Header names in lower case; a repeated header is an array. */
  readonly headers: Readonly<Record<string, string | string[]>>
  readonly subject: string | undefined
  readonly body: string
  /** The name the client gave in EHLO/HELO. */
  readonly helo: string
  readonly receivedAt: number
}

export interface SinkOptions {
  /** Default: a free port. */
  readonly port?: number
  /** false: count messages without keeping or parsing them (benchmarks). Default true. */
  readonly keepMessages?: boolean
  /** A code to answer every MAIL FROM with from the start (see Sink.refuse). */
  readonly refuse?: number
  /** Addresses answered 550 "no such user" at RCPT TO (an unknown user at the next hop); case-insensitive. */
  readonly refuseRcpt?: readonly string[]
}

export interface Sink {
  readonly host: string
  readonly port: number
  /** The messages kept since the start or the last clear(). */
  readonly messages: SinkMessage[]
  /** How many messages arrived since the start or the last clear(), kept or not. */
  readonly count: number
  /** How many MAIL FROM were refused so far. */
  readonly refused: number
  /** Resolves the messages once at least n arrived (default 1, 5000 ms). */
  waitFor(n?: number, timeoutMs?: number): Promise<SinkMessage[]>
  clear(): void
  /** Answers every MAIL FROM with `code` until accept() (451: Haraka retries per outbound.ini temp_fail_intervals). */
  refuse(code?: number, message?: string): void
  accept(): void
  stop(): Promise<void>
}

/** Splits a message into lower-cased, unfolded headers and its body. */
export function parseHeaders(raw: string): { headers: Record<string, string | string[]>; body: string } {
  const end = raw.search(/\r?\n\r?\n/)
  const head = end === -1 ? raw : raw.slice(0, end)
  const headers: Record<string, string | string[]> = {}
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    const seen = headers[name]
    headers[name] = seen === undefined ? value : [...(Array.isArray(seen) ? seen : [seen]), value]
  }
  const body = end === -1 ? '' : raw.slice(end).replace(/^\r?\n\r?\n/, '')
  return { headers, body }
}

/** Starts the sink on loopback; plain SMTP, no AUTH, no STARTTLS. */
export async function startSink(options: SinkOptions = {}): Promise<Sink> {
  const messages: SinkMessage[] = []
  const keep = options.keepMessages !== false
  let count = 0
  let refusal: { code: number; message: string } | null =
    options.refuse === undefined ? null : { code: options.refuse, message: 'sink: try again later' }
  let refused = 0
  const refuseRcpt = new Set((options.refuseRcpt ?? []).map((a) => a.toLowerCase()))

  const onData = (
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    callback: (err?: Error | null, message?: string) => void,
  ): void => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => {
      if (keep) chunks.push(chunk)
    })
    stream.on('error', callback)
    stream.on('end', () => {
      count++
      if (keep) {
        const raw = Buffer.concat(chunks).toString('utf8')
        const { headers, body } = parseHeaders(raw)
        const { mailFrom, rcptTo } = session.envelope
        messages.push({
          from: mailFrom ? mailFrom.address : null,
          to: rcptTo.map((r) => r.address),
          raw,
          headers,
          subject: typeof headers.subject === 'string' ? headers.subject : undefined,
          body,
          helo: session.hostNameAppearsAs,
          receivedAt: Date.now(),
        })
      }
      callback(null, 'sink: ok')
    })
  }

  const server = new SMTPServer({
    secure: false,
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    hideSTARTTLS: true,
    disableReverseLookup: true,
    banner: 'loopback sink',
    logger: false,
    closeTimeout: 500,
    onMailFrom(_address, _session, callback) {
      if (!refusal) return callback()
      refused++
      callback(Object.assign(new Error(refusal.message), { responseCode: refusal.code }))
    },
    onRcptTo(address, _session, callback) {
      if (!refuseRcpt.has(address.address.toLowerCase())) return callback()
      callback(Object.assign(new Error('sink: no such user'), { responseCode: 550 }))
    },
    onData,
  })
  server.on('error', () => undefined) // a client's broken connection is not the sink's business
  const port = options.port ?? (await freePort())
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, HOST, () => {
      server.removeListener('error', reject)
      resolve()
    })
  })

  let stopped = false
  const got = (): number => (keep ? messages.length : count)
  const sink: Sink & { killSync(): void } = {
    host: HOST,
    port,
    messages,
    get count() {
      return count
    },
    get refused() {
      return refused
    },
    async waitFor(n = 1, timeoutMs = 5000) {
      await waitUntil(() => got() >= n, {
        timeoutMs,
        intervalMs: 20,
        message: () => `sink got ${got()} of ${n} messages`,
      })
      return messages
    },
    clear() {
      messages.length = 0
      count = 0
    },
    refuse(code = 451, message = code < 500 ? 'sink: try again later' : 'sink: refused') {
      refusal = { code, message }
    },
    accept() {
      refusal = null
    },
    stop() {
      if (stopped) return Promise.resolve()
      stopped = true
      untrack(sink)
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
    killSync() {
      server.close()
    },
  }
  track(sink)
  return sink
}
