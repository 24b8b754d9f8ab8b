// The hijack-guard CLI as an operator runs it: the bin the package installed into a Haraka
// instance (DIR/node_modules/.bin/hijack-guard -c DIR), run as a process with a bound, its exit
// code and output returned, never thrown. HARAKA is left out of its environment, so `-c` decides.

import * as path from 'node:path'
import { execBounded, type ExecResult } from './process'

export interface CliOptions {
  /** Killed with SIGKILL after this long (default 20000 ms). */
  readonly timeoutMs?: number
  /** Run as this user and group (needs root). */
  readonly uid?: number
  readonly gid?: number
}

/** What a CLI run gave: the process's result and the arguments it ran with. */
export interface CliResult extends ExecResult {
  /** The arguments after `-c DIR`. */
  readonly args: readonly string[]
}

/** The CLI the package installed into a Haraka instance directory. */
export function cliPath(instance: { readonly dir: string }): string {
  return path.join(instance.dir, 'node_modules', '.bin', 'hijack-guard')
}

/** Runs `hijack-guard -c DIR ...args` in the instance directory; resolves whatever it exits with. */
export async function runCli(
  instance: { readonly dir: string },
  args: readonly string[],
  { timeoutMs = 20_000, uid, gid }: CliOptions = {},
): Promise<CliResult> {
  const env = { ...process.env }
  delete env.HARAKA
  const r = await execBounded(cliPath(instance), ['-c', instance.dir, ...args], {
    cwd: instance.dir,
    env,
    timeoutMs,
    ...(uid === undefined ? {} : { uid }),
    ...(gid === undefined ? {} : { gid }),
  })
  return { args, ...r }
}

/** A CliResult as text for an assertion message: the command, exit code, time and output. */
export function describeCli(r: CliResult): string {
  const how = r.code !== null ? `exit ${r.code}` : r.signal ? `killed by ${r.signal}` : `not run: ${r.error?.message}`
  return `hijack-guard ${r.args.join(' ')}: ${how} after ${r.ms} ms\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`
}
