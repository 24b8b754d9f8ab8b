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
  /** One raw command through client() (replies as node-redis gives them: HGETALL is an object); rejects after timeoutMs (default 2000). */
  command(args: readonly RedisArg[], options?: { timeoutMs?: number }): Promise<unknown>
  /** FLUSHALL */
  flushall(): Promise<void>
  /** KEYS pattern (default '*'), sorted. */
  keys(pattern?: string): Promise<string[]>
}

/** Runs `work` with a bound; rejects (and calls onTimeout) when it has not settled in time. */
async function bounded<T>(work: Promise<T>, timeoutMs: number, what: string, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`${what}: no reply within ${timeoutMs} ms`))
      onTimeout()
    }, timeoutMs)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Resolves true when a fresh connection to `port` gets PONG within ~500 ms. */
async function answersPing(port: number): Promise<boolean> {
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

class RedisProcess implements RedisServer {
  readonly host = HOST
  readonly url: string
  #child: childProcess.ChildProcess | null = null
  #output = ''
  #client: RedisClient | null = null
  #connecting: Promise<RedisClient> | null = null

  constructor(
    readonly port: number,
    readonly dir: string,
    private readonly options: RedisServerOptions,
  ) {
    this.url = `redis://${HOST}:${port}`
  }

  get pid(): number | null {
    return this.#child && isRunning(this.#child) ? (this.#child.pid ?? null) : null
  }

  alive(): boolean {
    return isRunning(this.#child)
  }

  log(): string {
    return this.#output
  }

  async start(): Promise<void> {
    if (this.pid !== null) throw new Error(`redis on ${this.port} is already running (pid ${this.pid})`)
    const args = ['--port', String(this.port), '--bind', HOST, '--save', '', '--appendonly', 'no']
    args.push('--dir', this.dir, '--daemonize', 'no', '--logfile', '', ...(this.options.args ?? []))
    const child = childProcess.spawn(REDIS_SERVER, args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] })
    this.#child = child
    const collect = (data: Buffer): void => {
      this.#output += data.toString()
    }
    child.stdout.on('data', collect)
    child.stderr.on('data', collect)
    let spawnError: Error | null = null
    child.on('error', (err) => {
      spawnError = err
    })
    track(this)
    const up = async (): Promise<boolean> => {
      if (spawnError) throw new Error(`cannot run ${REDIS_SERVER}: ${spawnError.message}`)
      if (!isRunning(child)) {
        throw new Error(
          `redis-server exited (code ${child.exitCode}, signal ${child.signalCode}):\n${tail(this.#output)}`,
        )
      }
      return answersPing(this.port)
    }
    try {
      await waitUntil(up, {
        timeoutMs: this.options.startTimeoutMs ?? 10_000,
        intervalMs: 20,
        message: () => `redis-server on ${this.port} did not answer PING\n${tail(this.#output)}`,
      })
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  async stop(): Promise<void> {
    this.#dropClient()
    if (this.#child) {
      // a paused server cannot act on SIGTERM
      killPid(this.#child.pid, 'SIGCONT')
      await stopChild(this.#child)
    }
    untrack(this)
  }

  async restart(): Promise<void> {
    await this.stop()
    await this.start()
  }

  pause(): void {
    this.#signal('SIGSTOP')
  }

  resume(): void {
    this.#signal('SIGCONT')
  }

  async client(): Promise<RedisClient> {
    if (this.#client?.isReady) return this.#client
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = null
    })
    return this.#connecting
  }

  async command(args: readonly RedisArg[], { timeoutMs = 2000 }: { timeoutMs?: number } = {}): Promise<unknown> {
    const client = await this.client()
    const work = client.sendCommand(args.map((a) => (typeof a === 'number' ? String(a) : a)))
    // After a timeout a late reply would be taken for the next command's: start a new client.
    return bounded(work, timeoutMs, `redis ${String(args[0])} on ${this.port}`, () => {
      if (this.#client === client) this.#dropClient()
    })
  }

  async flushall(): Promise<void> {
    await (await this.client()).flushAll()
  }

  async keys(pattern = '*'): Promise<string[]> {
    return (await (await this.client()).keys(pattern)).sort()
  }

  killSync(): void {
    if (this.#client?.isOpen) this.#client.destroy()
    if (this.#child && isRunning(this.#child)) killPid(this.#child.pid, 'SIGKILL')
  }

  async #connect(): Promise<RedisClient> {
    this.#dropClient()
    const client = await connectRedis(this.port)
    client.on('end', () => {
      if (this.#client === client) this.#client = null
    })
    this.#client = client
    return client
  }

  #dropClient(): void {
    if (this.#client?.isOpen) this.#client.destroy()
    this.#client = null
  }

  #signal(signal: NodeJS.Signals): void {
    if (this.pid === null) throw new Error(`redis on ${this.port} is not running`)
    killPid(this.pid, signal)
  }
}

/** Starts redis-server on loopback (a free port unless given) and waits until it answers PING. */
export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  const server = new RedisProcess(options.port ?? (await freePort()), tmpDir('redis'), options)
  await server.start()
  return server
}

/** Every key name and value in the client's database, whatever its type, as one text (one item a line). */
export async function dumpRedis(client: RedisClient): Promise<string> {
  const out: string[] = []
  for (const key of await client.keys('*')) {
    out.push(key)
    const type = await client.type(key)
    if (type === 'string') out.push((await client.get(key)) ?? '')
    else if (type === 'hash') out.push(JSON.stringify(await client.hGetAll(key)))
    else if (type === 'list') out.push(JSON.stringify(await client.lRange(key, 0, -1)))
    else if (type === 'set') out.push(JSON.stringify(await client.sMembers(key)))
    else out.push(`<${type}>`)
  }
  return out.join('\n')
}

/** One command redis-server showed to MONITOR. */
export interface MonitoredCommand {
  /** `lua` for a command a script ran, else the sending client's address (ip:port). */
  readonly from: string
  /** The command name in lower case. */
  readonly name: string
  /** The arguments after the name, as MONITOR quotes them. */
  readonly args: readonly string[]
}

export interface Monitor {
  /** The commands seen since the start or reset(), oldest first (see caughtUp). */
  readonly commands: readonly MonitoredCommand[]
  /**
   * Resolves once MONITOR has shown every command Redis ran before this call (it comes on a
   * connection of its own, so it may lag the replies other clients got).
   */
  caughtUp(): Promise<void>
  /** Commands by name, sent by a client / run by a Lua script, since the start or reset(). */
  counts(): { client: Record<string, number>; script: Record<string, number> }
  reset(): void
  stop(): void
}

/**
 * MONITOR on a connection of its own (its own commands are not shown, nor the ECHOs of
 * caughtUp); resolves once redis confirmed it.
 */
export async function monitorRedis(port: number): Promise<Monitor> {
  const client = await connectRedis(port)
  const marker = await connectRedis(port)
  const MARK = `monitor-mark-${process.pid}-`
  let marks = 0
  let lastMark = -1
  let commands: MonitoredCommand[] = []
  await client.monitor((line) => {
    const m = /^\+?\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/.exec(String(line))
    if (!m?.[1] || m[2] === undefined) return
    const words = [...m[2].matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((w) => (w[1] ?? '').replace(/\\(["\\])/g, '$1'))
    const [name, ...args] = words
    if (name === undefined) return
    if (name.toLowerCase() === 'echo' && args[0]?.startsWith(MARK)) lastMark = Number(args[0].slice(MARK.length))
    else commands.push({ from: m[1], name: name.toLowerCase(), args })
  })
  return {
    get commands() {
      return commands
    },
    async caughtUp(): Promise<void> {
      const mark = marks++
      await marker.echo(`${MARK}${mark}`)
      await waitUntil(() => lastMark >= mark, { timeoutMs: 2000, intervalMs: 2, message: 'MONITOR caught up' })
    },
    counts() {
      const counts: ReturnType<Monitor['counts']> = { client: {}, script: {} }
      for (const c of commands) {
        const into = c.from === 'lua' ? counts.script : counts.client
        into[c.name] = (into[c.name] ?? 0) + 1
      }
      return counts
    },
    reset() {
      commands = []
    },
    stop() {
      for (const c of [client, marker]) if (c.isOpen) c.destroy()
    },
  }
}
