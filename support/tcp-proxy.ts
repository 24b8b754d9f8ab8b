// A loopback TCP proxy that stands for the network between a client and a server: cut() drops
// every connection and refuses new ones (a partition), heal() lets them through again. Tests use
// it to decide what a client can and cannot have heard while it was cut off.

import * as net from 'node:net'
import { HOST, track, untrack } from './process'

export interface TcpProxy {
  /** The port clients connect to. */
  readonly port: number
  /** Connections passed through right now. */
  connections(): number
  /** Drops every connection and refuses new ones until heal(). */
  cut(): void
  /**
   * Holds back what the server sends on the connections whose client has sent `text` so far
   * (e.g. 'TRACKING'), until release(); answers how many it holds.
   */
  hold(text: string): number
  /** Delivers what hold() held back, and forwards again. */
  release(): void
  /** Lets connections through again. */
  heal(): void
  stop(): Promise<void>
}

/** A proxy on a free loopback port to `targetPort` on loopback. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  interface Pair {
    readonly inbound: net.Socket
    readonly outbound: net.Socket
    /** What the client sent, up to 4 KiB. */
    sent: string
    /** Server data held back by hold(), or null while forwarding. */
    held: Buffer[] | null
  }
  const pairs = new Set<Pair>()
  let open = true
  const server = net.createServer((inbound) => {
    if (!open) {
      inbound.destroy()
      return
    }
    const outbound = net.connect(targetPort, HOST)
    const pair: Pair = { inbound, outbound, sent: '', held: null }
    pairs.add(pair)
    const drop = (): void => {
      pairs.delete(pair)
      inbound.destroy()
      outbound.destroy()
    }
    for (const socket of [inbound, outbound]) socket.on('error', drop).on('close', drop)
    inbound.on('data', (data: Buffer) => {
      if (pair.sent.length < 4096) pair.sent += data.toString('latin1')
      outbound.write(data)
    })
    outbound.on('data', (data: Buffer) => {
      if (pair.held) pair.held.push(data)
      else inbound.write(data)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, HOST, () => resolve())
  })
  const cut = (): void => {
    open = false
    for (const { inbound, outbound } of [...pairs]) {
      inbound.destroy()
      outbound.destroy()
    }
    pairs.clear()
  }
  const proxy: TcpProxy = {
    port: (server.address() as net.AddressInfo).port,
    connections: () => pairs.size,
    cut,
    heal(): void {
      open = true
    },
    hold(text: string): number {
      const chosen = [...pairs].filter((p) => p.sent.includes(text))
      for (const p of chosen) p.held ??= []
      return chosen.length
    },
    release(): void {
      for (const p of pairs) {
        for (const data of p.held ?? []) p.inbound.write(data)
        p.held = null
      }
    },
    async stop(): Promise<void> {
      untrack(resource)
      cut()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  const resource = {
    stop: () => proxy.stop(),
    killSync: (): void => {
      cut()
      server.close()
    },
  }
  track(resource)
  return proxy
}
