// The one redis-server launcher (a throwaway server on a free loopback port, nothing saved to
// disk, stopped by pid; it can be stopped, frozen with SIGSTOP, resumed and restarted on the same
// port) and node-redis clients for the commands tests send to it.

import * as childProcess from 'node:child_process'
import { createClient } from 'redis'
import { HOST, freePort, isRunning, killPid, stopChild, tail, tmpDir, track, untrack, waitUntil } from './process'

/** The redis-server binary: $REDIS_SERVER, else redis-server on PATH. */
export const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server'

function newClient(port: number, timeoutMs: number) {
  return createClient({
    socket: { host: HOST, port, connectTimeout: timeoutMs, reconnectStrategy: false },
    disableOfflineQueue: true,
  })
}

/** A node-redis client (RESP2, default modules). */
export type RedisClient = ReturnType<typeof newClient>

/** A redis argument as node-redis's sendCommand takes it. */
export type RedisArg = string | number | Buffer

/**
 * A connected node-redis client for `port` on loopback that does not reconnect. It is closed by
 * stopAll() and at exit; close it earlier with `client.destroy()`.
 */
export async function connectRedis(
  port: number,
  { timeoutMs = 2000 }: { timeoutMs?: number } = {},
): Promise<RedisClient> {
  const client = newClient(port, timeoutMs)
  // node-redis emits 'error' for a lost connection; an unheard one would kill the process.
  client.on('error', () => undefined)
  const resource = {
    async stop(): Promise<void> {
      untrack(resource)
      if (client.isOpen) client.destroy()
    },
    killSync(): void {
      if (client.isOpen) client.destroy()
    },
  }
  client.on('end', () => untrack(resource))
  await client.connect()
  track(resource)
  return client
}

export interface RedisServerOptions {
  /** Default: a free port. */
  readonly port?: number
  /** More redis-server arguments (they come last, so they win). */
  readonly args?: readonly string[]
  /** How long start() waits for PONG (default 10000 ms). */
  readonly startTimeoutMs?: number
}

export interface RedisServer {
  readonly host: string
  readonly port: number
  /** redis://127.0.0.1:port */
  readonly url: string
  /** Its working directory (under the temporary root). */
  readonly dir: string
  /** The pid while it runs, else null. */
  readonly pid: number | null
  alive(): boolean
  /** Its stdout and stderr so far, across restarts. */
  log(): string
  /** Starts it again on the same port (after stop()); resolves once it answers PING. */
  start(): Promise<void>
  /** SIGTERM (after SIGCONT, in case it is paused), SIGKILL after a bound; closes the client. */
  stop(): Promise<void>
  /** stop() then start(), on the same port. */
  restart(): Promise<void>
  /** SIGSTOP: it keeps its socket open and answers nothing. */
  pause(): void
  /** SIGCONT after pause(). */
  resume(): void
  /** The server's own node-redis client, connected on first use and closed by stop(). */
  client(): Promise<RedisClient>
  /** One raw command through client() (replies as RESP2 gives them: HGETALL is a flat array); rejects after timeoutMs (default 2000). */
  command(args: readonly RedisArg[], options?: { timeoutMs?: number }): Promise<unknown>
  /** FLUSHALL */
  flushall(): Promise<void>
  /** KEYS pattern (default '*'), sorted. */
  keys(pattern?: string): Promise<string[]>
}

/** Starts redis-server on loopback (a free port unless given) and waits until it answers PING. */
export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort())
  const dir = tmpDir('redis')
  const startTimeoutMs = options.startTimeoutMs ?? 10_000
  let child: childProcess.ChildProcess | null = null
  let output = ''
  let client: RedisClient | null = null
  let connecting: Promise<RedisClient> | null = null

  const dropClient = (): void => {
    if (client?.isOpen) client.destroy()
    client = null
    connecting = null
  }

  const getClient = async (): Promise<RedisClient> => {
    if (client?.isReady) return client
    if (!connecting) {
      dropClient()
      const attempt = connectRedis(port).then((c) => {
        c.on('end', () => {
          if (client === c) client = null
        })
        client = c
        return c
      })
      connecting = attempt.finally(() => {
        connecting = null
      })
    }
    return connecting
  }

  const pingOnce = async (): Promise<boolean> => {
    try {
      const probe = await connectRedis(port, { timeoutMs: 500 })
      try {
        return (await probe.ping()) === 'PONG'
      } finally {
        probe.destroy()
      }
    } catch {
      return false
    }
  }

  const server: RedisServer & { killSync(): void } = {
    host: HOST,
    port,
    url: `redis://${HOST}:${port}`,
    dir,
    get pid() {
      return child && isRunning(child) ? (child.pid ?? null) : null
    },
    alive: () => isRunning(child),
    log: () => output,

    async start() {
      if (child && isRunning(child)) throw new Error(`redis on ${port} is already running (pid ${child.pid})`)
      const args = ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no']
      args.push('--dir', dir, '--daemonize', 'no', '--logfile', '', ...(options.args ?? []))
      const me = childProcess.spawn(REDIS_SERVER, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
      child = me
      const collect = (data: Buffer): void => {
        output += data.toString()
      }
      me.stdout.on('data', collect)
      me.stderr.on('data', collect)
      let spawnError: Error | null = null
      me.on('error', (err) => {
        spawnError = err
      })
      track(server)
      try {
        await waitUntil(
          async () => {
            if (spawnError) throw new Error(`cannot run ${REDIS_SERVER}: ${spawnError.message}`)
            if (!isRunning(me)) {
              throw new Error(`redis-server exited (code ${me.exitCode}, signal ${me.signalCode}):\n${tail(output)}`)
            }
            return pingOnce()
          },
          {
            timeoutMs: startTimeoutMs,
            intervalMs: 20,
            message: () => `redis-server on ${port} did not answer PING\n${tail(output)}`,
          },
        )
      } catch (err) {
        await server.stop()
        throw err
      }
    },

    async stop() {
      dropClient()
      if (child) {
        killPid(child.pid, 'SIGCONT')
        await stopChild(child)
      }
      untrack(server)
    },

    async restart() {
      await server.stop()
      await server.start()
    },

    pause() {
      if (!child || !isRunning(child)) throw new Error(`redis on ${port} is not running`)
      killPid(child.pid, 'SIGSTOP')
    },

    resume() {
      if (!child || !isRunning(child)) throw new Error(`redis on ${port} is not running`)
      killPid(child.pid, 'SIGCONT')
    },

    client: getClient,

    async command(args, { timeoutMs = 2000 } = {}) {
      const c = await getClient()
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`redis ${String(args[0])} on ${port}: no reply within ${timeoutMs} ms`))
          // A late reply would be taken for the next command's: start over with a new client.
          if (client === c) dropClient()
        }, timeoutMs)
      })
      try {
        return await Promise.race([c.sendCommand(args.map((a) => (typeof a === 'number' ? String(a) : a))), timeout])
      } finally {
        clearTimeout(timer)
      }
    },

    async flushall() {
      await (await getClient()).flushAll()
    },

    async keys(pattern = '*') {
      return (await (await getClient()).keys(pattern)).sort()
    },

    killSync() {
      if (client?.isOpen) client.destroy()
      if (child && isRunning(child)) killPid(child.pid, 'SIGKILL')
    },
  }

  await server.start()
  return server
}
