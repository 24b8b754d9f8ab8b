/**
 * The webhook ([webhook]): each event is POSTed as JSON, signed with HMAC-SHA256 of the raw body
 * in X-Hijack-Guard-Signature, in the background, with a bounded timeout per attempt and a few
 * attempts with backoff. Sending never throws and never delays mail; failures are logged
 * (rate-limited) and counted.
 */
import { createHmac } from 'node:crypto'
import { createFailureLog, type FailureLog } from './failure-log'
import { randomId } from './ids'
import { errorText } from './messages'

/** Every event the webhook knows, in the order the shipped config lists them. */
export const WEBHOOK_EVENTS = [
  'disabled',
  'enabled',
  'warning',
  'held_released',
  'held_dropped',
  'password_refused',
] as const

export type WebhookEventName = (typeof WEBHOOK_EVENTS)[number]

/** [webhook] as parsed; null in Config when url is empty. */
export interface WebhookConfig {
  readonly url: string
  readonly secret: string
  readonly events: ReadonlySet<WebhookEventName>
  readonly timeoutMs: number
}

/** One window's count in a payload: `{ kind: 'messages', count: 501, limit: '500/30m' }`. */
export interface EventCount {
  readonly kind: string
  readonly count: number
  readonly limit: string
}

/** What the caller knows about an event; `id`, `at` and `server` are added by buildPayload. */
export interface WebhookEvent {
  readonly event: WebhookEventName
  /** The canonical account. */
  readonly account: string
  readonly incident?: string
  /** Why, in words (a disable's reason, a drop's cause). */
  readonly reason?: string
  /** What caused it: a limit kind, `warn`, `max_hold`, `drop-held`... */
  readonly trigger?: string
  readonly counts?: readonly EventCount[]
  /** Who acted (enables, manual disables, drop-held): `cli:root`, the replying admin's login. */
  readonly actor?: string
  /** How: `limit`, `reply`, `cli`, `auth`, `queue`. */
  readonly via?: string
  /** A held message's queue id (held_released, held_dropped of one message). */
  readonly message?: string
  /** How many messages (held_dropped from the CLI). */
  readonly held?: number
  /** The client's address (password_refused). */
  readonly ip?: string
  /** Store-clock ms of the event; default now. */
  readonly atMs?: number
}

/** The JSON body: `id` is unique per event (a receiver de-duplicates on it). */
export interface WebhookPayload {
  readonly id: string
  readonly event: WebhookEventName
  readonly account: string
  /** ISO 8601 UTC. */
  readonly at: string
  /** The server that sent it (config/me). */
  readonly server: string
  readonly [key: string]: unknown
}

/** The body of an event, keys in a stable order, unknown fields left out. */
export function buildPayload(event: WebhookEvent, server: string, now: number, id = randomId()): WebhookPayload {
  const { event: name, account, atMs, ...rest } = event
  const extra = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined))
  return { id, event: name, account, at: new Date(atMs ?? now).toISOString(), server, ...extra }
}

/** The X-Hijack-Guard-Signature value of a raw body: `sha256=` and the hex HMAC-SHA256 with the secret. */
export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`
}

export const SIGNATURE_HEADER = 'X-Hijack-Guard-Signature'

/** What one POST answered: an HTTP status, or the error that ended it (timeout, refused...). */
export type PostResult = { readonly status: number } | { readonly error: string }

/** Sends one POST; a seam for tests. Resolves, never rejects. */
export type Poster = (
  url: string,
  body: string,
  headers: Record<string, string>,
  timeoutMs: number,
) => Promise<PostResult>

/** The default poster: node's fetch with an AbortSignal timeout covering the whole exchange. */
export const fetchPoster: Poster = async (url, body, headers, timeoutMs) => {
  try {
    const res = await fetch(url, { method: 'POST', body, headers, signal: AbortSignal.timeout(timeoutMs) })
    // The body is not needed; reading it frees the connection.
    await res.arrayBuffer().catch(() => undefined)
    return { status: res.status }
  } catch (err) {
    return { error: (err as Error)?.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : errorText(err) }
  }
}

export interface WebhookOptions {
  readonly config: WebhookConfig
  /** config/me, the payload's `server`. */
  readonly server: string
  /** Where info and error lines go. */
  readonly log: { info(line: string): void; error(line: string): void }
  readonly post?: Poster
  /** Attempts per event (default 3). */
  readonly attempts?: number
  /** The wait before the 2nd attempt; each later one waits 4 times longer (default 1 s). */
  readonly backoffMs?: number
  /** Runs `fn` after `ms`; default setTimeout, unref'd unless keepAlive. */
  readonly schedule?: (fn: () => void, ms: number) => void
  /** Keep the process alive while an event waits for its next attempt (the CLI; Haraka does not). */
  readonly keepAlive?: boolean
  /** Events in flight at most; more are dropped, logged and counted (default 200). */
  readonly maxInFlight?: number
  readonly now?: () => number
  /** A FailureLog shared by the webhooks of one process (default: one of its own). */
  readonly failures?: FailureLog
  /** Counts shared by the webhooks of one process (default: its own). */
  readonly stats?: WebhookStats
}

/** Events delivered, given up and on their way. */
export interface WebhookStats {
  sent: number
  failed: number
  inFlight: number
}

/** Zero counts. */
export function newWebhookStats(): WebhookStats {
  return { sent: 0, failed: 0, inFlight: 0 }
}

export interface Webhook {
  /**
   * Sends the event in the background if [webhook] events lists it. The promise resolves once it
   * was delivered or given up (the CLI waits for it; hooks do not); it never rejects.
   */
  emit(event: WebhookEvent): Promise<void>
  readonly stats: Readonly<WebhookStats>
}

/** A status worth another attempt: a server error, a timeout answer, too many requests. */
function retryable(status: number): boolean {
  return status >= 500 || status === 408 || status === 429
}

/** A Webhook for [webhook]. */
export function createWebhook(options: WebhookOptions): Webhook {
  const { config, server, log } = options
  const post = options.post ?? fetchPoster
  const attempts = options.attempts ?? 3
  const backoffMs = options.backoffMs ?? 1000
  const maxInFlight = options.maxInFlight ?? 200
  const now = options.now ?? Date.now
  const schedule =
    options.schedule ??
    ((fn: () => void, ms: number): void => {
      const t = setTimeout(fn, ms)
      if (!options.keepAlive) t.unref()
    })
  const failures = options.failures ?? createFailureLog({ what: 'webhook failures' })
  const stats: WebhookStats = options.stats ?? newWebhookStats()
  const wait = (ms: number): Promise<void> => new Promise((resolve) => schedule(resolve, ms))

  function fail(payload: WebhookPayload, why: string): void {
    stats.failed++
    failures.failure(
      `webhook event ${payload.event} for ${JSON.stringify(payload.account)} (id ${payload.id}) NOT delivered to ${config.url}: ${why} (${stats.failed} failed so far)`,
      (line) => log.error(line),
    )
  }

  async function deliver(payload: WebhookPayload): Promise<void> {
    const body = JSON.stringify(payload)
    const headers = {
      'Content-Type': 'application/json',
      'User-Agent': 'hijack-guard',
      [SIGNATURE_HEADER]: signature(config.secret, body),
    }
    let last = ''
    let tried = 0
    for (let attempt = 1; attempt <= attempts; attempt++) {
      tried = attempt
      if (attempt > 1) await wait(backoffMs * 4 ** (attempt - 2))
      const result = await post(config.url, body, headers, config.timeoutMs)
      if ('status' in result && result.status >= 200 && result.status < 300) {
        stats.sent++
        log.info(`webhook event ${payload.event} for ${JSON.stringify(payload.account)} delivered (id ${payload.id})`)
        return
      }
      last = 'status' in result ? `HTTP ${result.status}` : result.error
      if ('status' in result && !retryable(result.status)) break
    }
    fail(payload, `${last} after ${tried} attempt${tried === 1 ? '' : 's'}`)
  }

  return {
    emit(event) {
      if (!config.events.has(event.event)) return Promise.resolve()
      const payload = buildPayload(event, server, now())
      if (stats.inFlight >= maxInFlight) {
        fail(payload, `${maxInFlight} events in flight already`)
        return Promise.resolve()
      }
      stats.inFlight++
      return deliver(payload)
        .catch((err: unknown) => fail(payload, errorText(err)))
        .finally(() => {
          stats.inFlight--
        })
    },
    stats,
  }
}
