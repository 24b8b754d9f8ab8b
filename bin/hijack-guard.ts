#!/usr/bin/env node
import { runCli } from '../lib/cli'

runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
}).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`hijack-guard: ${(err as Error)?.stack ?? String(err)}\n`)
    process.exit(5)
  },
)
