/**
 * A webhook receiver on a free loopback port: keeps every POST it gets with whether its
 * X-Hijack-Guard-Signature verifies with `secret`. `hang` makes it read requests and never answer
 * (a receiver that is slow or stuck).
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ReceivedEvent {
  readonly payload: Record<string, unknown>
  readonly body: string
  readonly signature: string
  readonly verified: boolean
}

export interface WebhookReceiver {
  readonly url: string
  readonly events: ReceivedEvent[]
  /** The events named `name`. */
  named(name: string): ReceivedEvent[]
  close(): Promise<void>
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

/** Starts a receiver on 127.0.0.1 and a free port. */
export async function startWebhookReceiver(options: { secret: string; hang?: boolean }): Promise<WebhookReceiver> {
  const events: ReceivedEvent[] = []
  const server = createServer((req, res) => {
    void readBody(req).then((raw) => {
      const signature = String(req.headers['x-hijack-guard-signature'] ?? '')
      const want = Buffer.from(`sha256=${createHmac('sha256', options.secret).update(raw).digest('hex')}`)
      const got = Buffer.from(signature)
      const verified = got.length === want.length && timingSafeEqual(got, want)
      let payload: Record<string, unknown> = {}
      try {
        payload = JSON.parse(raw.toString('utf8')) as Record<string, unknown>
      } catch {
        // kept with an empty payload: the test sees it
      }
      events.push({ payload, body: raw.toString('utf8'), signature, verified })
      if (!options.hang) res.writeHead(verified ? 204 : 401).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/hook`,
    events,
    named: (name) => events.filter((e) => e.payload.event === name),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
