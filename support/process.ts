// Process-level plumbing shared by the tests, the bench and the demo: bounded waits, free
// loopback ports, temporary directories under one root (removed at exit and on SIGINT/SIGTERM
// unless HIJACK_GUARD_E2E_KEEP=1), a registry of the child processes and servers started here
// (stopped by pid), and run() for a command whose output matters only when it fails.

import * as childProcess from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

/** The only address anything here listens on or connects to. */
export const HOST = '127.0.0.1'

/** The repository's root directory. */
export const REPO_ROOT = path.resolve(__dirname, '..')

/** HIJACK_GUARD_E2E_KEEP=1 keeps the temporary root for inspection. */
export const KEEP = process.env.HIJACK_GUARD_E2E_KEEP === '1'

/** Something started here that must not outlive the process: stop() nicely, killSync() at exit. */
export interface Resource {
  stop(): Promise<void>
  killSync(): void
}

const resources = new Set<Resource>()
let tmpRoot: string | null = null
let seq = 0

/** Registers a resource for stopAll() and for the kill at exit. */
export function track(resource: Resource): void {
  resources.add(resource)
}

/** Forgets a resource (it has stopped). */
export function untrack(resource: Resource): void {
  resources.delete(resource)
}

/** Stops every resource still registered, newest first; failures are ignored. */
export async function stopAll(): Promise<void> {
  for (const resource of [...resources].reverse()) {
    try {
      await resource.stop()
    } catch {
      // keep going: the rest must stop too
    }
  }
}

/** Sends `signal` to `pid` (a negative pid: its process group); false when there is no such process. */
export function killPid(pid: number | null | undefined, signal: NodeJS.Signals | 0): boolean {
  if (!pid) return false
  try {
    process.kill(pid, signal)
    return true
  } catch {
    return false
  }
}

function cleanupSync(): void {
  for (const resource of resources) {
    try {
      resource.killSync()
    } catch {
      // best effort at exit
    }
  }
  resources.clear()
  try {
    // a child killed just now (npm install on Ctrl-C) may still be writing into it
    if (tmpRoot && !KEEP) fs.rmSync(tmpRoot, { recursive: true, force: true, maxRetries: 3 })
  } catch {
    // best effort at exit
  }
  tmpRoot = null
}

process.once('exit', cleanupSync)
for (const [signal, number] of [
  ['SIGINT', 2],
  ['SIGTERM', 15],
] as const) {
  process.on(signal, function onSignal() {
    cleanupSync()
    // Nobody else handles it: end the way the default handler would.
    if (process.listenerCount(signal) === 1) process.exit(128 + number)
  })
}

/** This process's temporary root (removed at exit), or null before the first tmpDir(). */
export function tempRoot(): string | null {
  return tmpRoot
}

/** A new directory `<prefix>-<n>` under this process's temporary root. */
export function tmpDir(prefix: string): string {
  tmpRoot ??= fs.mkdtempSync(path.join(os.tmpdir(), 'hijack-guard-e2e-'))
  const dir = path.join(tmpRoot, `${prefix}-${++seq}`)
  fs.mkdirSync(dir, { recursive: true })
  return dir
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export interface WaitOptions {
  /** The bound (default 5000 ms). */
  readonly timeoutMs?: number
  /** Time between two looks (default 25 ms). */
  readonly intervalMs?: number
  /** What was awaited, for the timeout error; a function is called only on timeout. */
  readonly message?: string | (() => string)
  /** true: an error thrown by the condition counts as "not yet" (the last one is named on timeout). */
  readonly ignoreErrors?: boolean
}

type Falsy = false | 0 | '' | null | undefined

/**
 * Polls `condition` until it returns a truthy value, which it resolves with. Rejects after
 * `timeoutMs` with an error naming `message`, or at once with the error `condition` throws
 * (unless ignoreErrors).
 */
export async function waitUntil<T>(
  condition: () => T | Promise<T>,
  { timeoutMs = 5000, intervalMs = 25, message, ignoreErrors = false }: WaitOptions = {},
): Promise<Exclude<T, Falsy>> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown = undefined
  for (;;) {
    try {
      const value = await condition()
      if (value) return value as Exclude<T, Falsy>
    } catch (err) {
      if (!ignoreErrors) throw err
      lastError = err
    }
    if (Date.now() >= deadline) {
      const what = typeof message === 'function' ? message() : message
      const last =
        lastError === undefined
          ? ''
          : ` (last error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)})`
      throw new Error(`waitUntil: timed out after ${timeoutMs} ms${what ? `: ${what}` : ''}${last}`)
    }
    await delay(Math.min(intervalMs, Math.max(1, deadline - Date.now())))
  }
}

/** A loopback port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, HOST, () => {
      const address = server.address()
      if (address === null || typeof address === 'string') {
        reject(new Error(`freePort: unexpected address ${String(address)}`))
        return
      }
      server.close(() => resolve(address.port))
    })
  })
}

/** The last `lines` lines of `text`. */
export function tail(text: string, lines = 60): string {
  return text.split('\n').slice(-lines).join('\n')
}

/** `text` with every RegExp metacharacter escaped. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

export interface RunOptions {
  readonly cwd?: string
  /** Killed with SIGKILL after this long (default 240 s). */
  readonly timeoutMs?: number
  /** Added to this process's environment. */
  readonly env?: NodeJS.ProcessEnv
}

/**
 * Runs `cmd args` to completion; resolves its stdout and stderr interleaved. Rejects when it
 * cannot start or exits non-zero, with the tail of its output.
 */
export function run(
  cmd: string,
  args: readonly string[],
  { cwd, timeoutMs = 240_000, env }: RunOptions = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = childProcess.spawn(cmd, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    const collect = (data: Buffer): void => {
      out += data.toString()
    }
    child.stdout.on('data', collect)
    child.stderr.on('data', collect)
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    // killed with the rest on Ctrl-C and at exit (npm install writes into the temporary root)
    const resource: Resource = { stop: () => stopChild(child), killSync: () => void killPid(child.pid, 'SIGKILL') }
    track(resource)
    child.on('error', (err) => {
      clearTimeout(timer)
      untrack(resource)
      reject(err)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      untrack(resource)
      if (code === 0) resolve(out)
      else {
        const where = cwd ?? process.cwd()
        reject(
          new Error(`${cmd} ${args.join(' ')} (in ${where}) failed: code=${code} signal=${signal}\n${tail(out, 80)}`),
        )
      }
    })
  })
}

/** Whether a spawned child is still running. */
export function isRunning(child: childProcess.ChildProcess | null): boolean {
  return child !== null && child.exitCode === null && child.signalCode === null
}

/** Resolves true once `child` has exited, false if it is still running after `timeoutMs`. */
export function waitExit(child: childProcess.ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!isRunning(child)) return Promise.resolve(true)
  return new Promise((resolve) => {
    const onExit = (): void => {
      clearTimeout(timer)
      resolve(true)
    }
    const timer = setTimeout(() => {
      child.removeListener('exit', onExit)
      resolve(false)
    }, timeoutMs)
    child.once('exit', onExit)
  })
}

/** SIGTERM (or `signal`), then SIGKILL when the child has not exited within `timeoutMs`. */
export async function stopChild(
  child: childProcess.ChildProcess,
  { signal = 'SIGTERM', timeoutMs = 5000 }: { signal?: NodeJS.Signals; timeoutMs?: number } = {},
): Promise<void> {
  if (!isRunning(child)) return
  killPid(child.pid, signal)
  if (await waitExit(child, timeoutMs)) return
  killPid(child.pid, 'SIGKILL')
  await waitExit(child, 2000)
}

export interface ExecOptions {
  readonly cwd?: string
  readonly env?: NodeJS.ProcessEnv
  /** SIGKILL after this long (default 20000 ms). */
  readonly timeoutMs?: number
  /** Run as this user and group (needs root). */
  readonly uid?: number
  readonly gid?: number
  /** Most bytes of stdout or stderr kept (Node's default when left out). */
  readonly maxBuffer?: number
}

export interface ExecResult {
  /** The exit code; null when it did not exit by itself (killed at the bound, or it could not start: see error). */
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** How long it ran, in ms. */
  readonly ms: number
  /** Why it could not start, if it could not. */
  readonly error?: Error
}

/**
 * Runs `file ...args` as a process with a bound (SIGKILL after it), tracked so that stopAll()
 * stops it if it is still going; resolves whatever it exits with, never rejects.
 */
export function execBounded(
  file: string,
  args: readonly string[],
  { cwd, env, timeoutMs = 20_000, uid, gid, maxBuffer }: ExecOptions = {},
): Promise<ExecResult> {
  const t0 = Date.now()
  return new Promise((resolve) => {
    const child = childProcess.execFile(
      file,
      args,
      {
        ...(cwd === undefined ? {} : { cwd }),
        ...(env === undefined ? {} : { env }),
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        ...(uid === undefined ? {} : { uid }),
        ...(gid === undefined ? {} : { gid }),
        ...(maxBuffer === undefined ? {} : { maxBuffer }),
      },
      (err, stdout, stderr) => {
        untrack(resource)
        const ms = Date.now() - t0
        if (!err) return resolve({ code: 0, signal: null, stdout, stderr, ms })
        const code = typeof err.code === 'number' ? err.code : null
        const signal = (err.signal as NodeJS.Signals | null | undefined) ?? null
        resolve({ code, signal, stdout, stderr, ms, ...(code === null && signal === null ? { error: err } : {}) })
      },
    )
    const resource: Resource = {
      async stop(): Promise<void> {
        killPid(child.pid, 'SIGKILL')
      },
      killSync(): void {
        killPid(child.pid, 'SIGKILL')
      },
    }
    track(resource)
  })
}
