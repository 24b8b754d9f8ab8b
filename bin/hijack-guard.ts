#!/usr/bin/env node
import { runCli } from '../lib/cli'

/** Exits once both streams have handed everything to the OS (a pipe may take it slowly). */
function exitAfterFlush(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
}

runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
}).then(exitAfterFlush, (err: unknown) => {
  process.stderr.write(`hijack-guard: ${(err as Error)?.stack ?? String(err)}\n`)
  exitAfterFlush(5)
})
