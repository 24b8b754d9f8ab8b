// The built CLI as an operator runs it: `node dist/bin/hijack-guard.js ARGS` as a process with a
// bound (SIGKILL after it), $HARAKA left out of its environment unless given, its exit code and
// output returned, never thrown. Every run is stopped by stopAll() if it is still going.

import * as childProcess from 'node:child_process'
import * as path from 'node:path'
import { REPO_ROOT, killPid, tmpDir, track, untrack } from '../../support'

/** The built bin (`npm run build` first). */
export const BIN = path.join(REPO_ROOT, 'dist', 'bin', 'hijack-guard.js')

export interface CliRunOptions {
  /** SIGKILL after this long (default 20000 ms). */
  readonly timeoutMs?: number
  /** The working directory (default: an empty directory under the temporary root). */
  readonly cwd?: string
  /** Added to the environment; HARAKA is removed unless given here. */
  readonly env?: NodeJS.ProcessEnv
}

export interface CliRun {
  /** The exit code; null when it was killed (the bound) or could not start. */
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** How long it ran, in ms. */
  readonly ms: number
}

let defaultCwd: string | undefined

/** Runs `node BIN ...args`; resolves whatever it exits with. */
export function runBin(
  args: readonly string[],
  { timeoutMs = 20_000, cwd, env: extra = {} }: CliRunOptions = {},
): Promise<CliRun> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra }
  if (!('HARAKA' in extra)) delete env.HARAKA
  const t0 = Date.now()
  return new Promise((resolve) => {
    const child = childProcess.execFile(
      process.execPath,
      [BIN, ...args],
      {
        cwd: cwd ?? (defaultCwd ??= tmpDir('cli-cwd')),
        env,
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        untrack(resource)
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0
        const signal = (err?.signal as NodeJS.Signals | null | undefined) ?? null
        resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 })
      },
    )
    const resource = {
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

/** `hijack-guard -c DIR ...args` (dir null: no -c). */
export function cli(dir: string | null, args: readonly string[], options?: CliRunOptions): Promise<CliRun> {
  return runBin([...(dir === null ? [] : ['-c', dir]), ...args], options)
}

/** A run's exit, time and output, for assertion messages. */
export function show(r: CliRun): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ''} after ${r.ms} ms\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`
}
