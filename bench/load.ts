// The load generator: a small SMTP client that sends one command at a time, as most submission
// clients do, and times each message from MAIL FROM to the 250 after DATA. Kept apart from
// support/smtp.ts (nodemailer) on purpose: it is the measuring instrument, and must cost little.

import * as net from 'node:net'
import { HOST } from '../support'

export const MESSAGE_SIZE = 1024
export const RCPT = 'customer@outside.example'
export const FILL = 'The quarterly figures are attached below; please check the totals before Friday.'

interface Reply {
  readonly code: number
  readonly text: string
}

interface RawConnection {
  readonly sock: net.Socket
  read(timeoutMs?: number): Promise<Reply>
  cmd(line: string): Promise<Reply>
  quit(): Promise<void>
}

function rawSmtp(port: number): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: HOST, port })
    sock.setNoDelay(true)
    let buf = ''
    let lines: string[] = []
    const replies: Reply[] = []
    let waiter: { resolve(r: Reply): void; reject(e: Error): void } | null = null
    let closed = false
    const c: RawConnection = {
      sock,
      read(timeoutMs = 30_000) {
        const queued = replies.shift()
        if (queued) return Promise.resolve(queued)
        if (closed) return Promise.reject(new Error('connection closed'))
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => {
            waiter = null
            reject(new Error(`no reply within ${timeoutMs} ms`))
          }, timeoutMs)
          waiter = {
            resolve: (r) => {
              clearTimeout(timer)
              resolve(r)
            },
            reject: (e) => {
              clearTimeout(timer)
              reject(e)
            },
          }
        })
      },
      cmd(line) {
        sock.write(`${line}\r\n`)
        return c.read()
      },
      async quit() {
        if (closed) return
        try {
          sock.write('QUIT\r\n')
          await c.read(1000)
        } catch {
          // closing anyway
        }
        sock.destroy()
      },
    }
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => {
      buf += d
      let nl
      while ((nl = buf.indexOf('\r\n')) !== -1) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 2)
        lines.push(line)
        if (/^\d{3}(?: |$)/.test(line)) {
          const r = { code: Number(line.slice(0, 3)), text: lines.join('\n') }
          lines = []
          const w = waiter
          waiter = null
          if (w) w.resolve(r)
          else replies.push(r)
        }
      }
    })
    const gone = (err?: Error): void => {
      closed = true
      const w = waiter
      waiter = null
      w?.reject(err ?? new Error('connection closed'))
    }
    sock.on('error', (err) => {
      gone(err)
      reject(err)
    })
    sock.on('close', () => gone())
    sock.on('connect', () => resolve(c))
  })
}

function expectCode(r: Reply, code: number, what: string): void {
  if (r.code !== code) throw new Error(`${what}: ${r.text}`)
}

async function openRaw(port: number, user: string, pass: string): Promise<RawConnection> {
  const c = await rawSmtp(port)
  try {
    expectCode(await c.read(), 220, 'greeting')
    expectCode(await c.cmd('EHLO bench-client.test.example'), 250, 'EHLO')
    expectCode(await c.cmd(`AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`), 235, 'AUTH')
  } catch (err) {
    c.sock.destroy()
    throw err
  }
  return c
}

let msgSeq = 0

/** A MESSAGE_SIZE-byte message from `from` to `to`, dot-terminated. */
function buildMessage(from: string, to: string): string {
  const head =
    [
      `From: <${from}>`,
      `To: <${to}>`,
      'Subject: Quarterly figures, please review before Friday',
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: <${Date.now()}.${++msgSeq}@bench-client.test.example>`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
    ].join('\r\n') + '\r\n'
  let body = ''
  while (head.length + body.length + FILL.length + 2 <= MESSAGE_SIZE) body += `${FILL}\r\n`
  body += `${'x'.repeat(Math.max(0, MESSAGE_SIZE - head.length - body.length - 2))}\r\n`
  return `${head}${body}.\r\n`
}

type Sent =
  { readonly ok: true; readonly ms: number } | { readonly ok: false; readonly stage: string; readonly text: string }

/** MAIL FROM ... the 250 after DATA, timed. */
async function sendRaw(c: RawConnection, from: string, to: string): Promise<Sent> {
  const t0 = process.hrtime.bigint()
  let r = await c.cmd(`MAIL FROM:<${from}>`)
  if (r.code !== 250) return { ok: false, stage: 'mail', text: r.text }
  r = await c.cmd(`RCPT TO:<${to}>`)
  if (r.code !== 250) return { ok: false, stage: 'rcpt', text: r.text }
  r = await c.cmd('DATA')
  if (r.code !== 354) return { ok: false, stage: 'data', text: r.text }
  c.sock.write(buildMessage(from, to))
  r = await c.read()
  if (r.code !== 250) return { ok: false, stage: 'data', text: r.text }
  return { ok: true, ms: Number(process.hrtime.bigint() - t0) / 1e6 }
}

export interface LoadOptions {
  readonly port: number
  /** Logins (password 'pw'), taken in turn by the sessions. */
  readonly accounts: readonly string[]
  readonly sessions: number
  readonly perSession: number
  /** Stop after this long (when given). */
  readonly seconds?: number
  /** Stop after this many messages (when given). */
  readonly maxMessages?: number
}

export interface LoadResult {
  sent: number
  sessions: number
  errors: number
  readonly firstErrors: string[]
  /** ms per message. */
  readonly latencies: number[]
  /** Wall time of the load. */
  seconds: number
}

let accountSeq = 0

/**
 * `sessions` SMTP sessions in parallel; each logs in as the next account, sends up to
 * `perSession` messages back to back, QUITs and starts over, until the deadline or until
 * `maxMessages` messages were sent.
 */
export async function load({
  port,
  accounts,
  sessions,
  perSession,
  seconds,
  maxMessages,
}: LoadOptions): Promise<LoadResult> {
  const deadline = seconds ? Date.now() + seconds * 1000 : Infinity
  let claimed = 0
  const res: LoadResult = { sent: 0, sessions: 0, errors: 0, firstErrors: [], latencies: [], seconds: 0 }
  const claim = (n: number): number => {
    if (Date.now() >= deadline) return 0
    if (maxMessages === undefined) return n
    const k = Math.max(0, Math.min(n, maxMessages - claimed))
    claimed += k
    return k
  }
  const error = (what: string): void => {
    res.errors++
    if (res.firstErrors.length < 5) res.firstErrors.push(what)
  }
  const message = (err: unknown): string => (err instanceof Error ? err.message : String(err))
  async function worker(): Promise<void> {
    for (;;) {
      let n = claim(perSession)
      if (n === 0) return
      const user = accounts[accountSeq++ % accounts.length] ?? ''
      let c: RawConnection
      try {
        c = await openRaw(port, user, 'pw')
      } catch (err) {
        error(`session: ${message(err)}`)
        if (maxMessages !== undefined) claimed -= n
        await new Promise((resolve) => setTimeout(resolve, 20))
        continue
      }
      res.sessions++
      try {
        for (;;) {
          const r = await sendRaw(c, user, RCPT)
          if (!r.ok) {
            error(`${r.stage}: ${r.text}`)
            break
          }
          res.sent++
          res.latencies.push(r.ms)
          if (--n === 0) break
          if (Date.now() >= deadline) break
        }
      } catch (err) {
        error(`send: ${message(err)}`)
      }
      await c.quit()
    }
  }
  const t0 = process.hrtime.bigint()
  await Promise.all(Array.from({ length: sessions }, worker))
  res.seconds = Number(process.hrtime.bigint() - t0) / 1e9
  return res
}
