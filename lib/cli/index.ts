/**
 * The operator's command line: `hijack-guard -c HARAKA_DIR COMMAND`. It reads the same config
 * as the plugin (the package defaults with HARAKA_DIR/config over them) and talks to the same
 * store. runCli returns the exit code; bin/hijack-guard.ts exits with it.
 */
import { existsSync, readFileSync, statSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import hc from 'haraka-config'
import { readConfig, type Config, type ConfigReader } from '../config'
import { errorText } from '../messages'
import type { Store } from '../store'
import { createMemoryStore } from '../store/memory'
import { createRedisStore } from '../store/redis'
import { createWebhook, type WebhookEvent } from '../webhook'
import { COMMANDS, EXIT, UsageError, type Command, type Context } from './commands'

export { EXIT } from './commands'

export interface CliIo {
  out(text: string): void
  err(text: string): void
  /** Opens haraka-config for a Haraka directory; a seam for tests. */
  configFor?(harakaDir: string): ConfigReader
}

/** The commands in --help: each line as COMMANDS has it, the description in a second column. */
function commandLines(): string[] {
  return Object.entries(COMMANDS).flatMap(([name, c]) => {
    const left = `  ${name}${c.usage ? ` ${c.usage}` : ''}`
    return c.help.map((line, n) => `${(n === 0 ? left : '').padEnd(32)}${line}`)
  })
}

const HELP = `hijack-guard: look after the accounts haraka-plugin-hijack-guard disabled

Usage: hijack-guard -c HARAKA_DIR [--json] COMMAND [ARGUMENTS]

Commands:
${commandLines().join('\n')}

Options:
  -c, --config DIR   the Haraka directory (the one with config/, whose config/plugins
                     lists hijack-guard); default: $HARAKA or the current directory
  --json             machine-readable output (every command)
  --reason TEXT      why, for disable (kept in the record and the audit trail)
  --limit N          how many audit entries
  --allow-old-password
                     for enable: let the password in use at the incident log in
                     again ([reactivate] require_new_password)
  -h, --help         this text

Exit codes: 0 done; 1 nothing to do (not disabled, already disabled, unknown account);
2 usage error; 3 bad config; 4 store unreachable.
Exit 3 also when DIR is not a Haraka directory whose config/plugins enables
hijack-guard. Text output starts with the store used ("store: redis
127.0.0.1:6379/0"); --json objects carry it as "store".

Examples (the plugin installs this command into HARAKA_DIR/node_modules/.bin;
this path works from any directory, while a bare "npx hijack-guard" outside
the Haraka directory would ask the public npm registry for a package):
  /etc/haraka/node_modules/.bin/hijack-guard -c /etc/haraka list
  /etc/haraka/node_modules/.bin/hijack-guard -c /etc/haraka show alice@example.com
  /etc/haraka/node_modules/.bin/hijack-guard -c /etc/haraka enable alice@example.com
  /etc/haraka/node_modules/.bin/hijack-guard -c /etc/haraka disable bob@example.com --reason "phished, ticket 4711"
  /etc/haraka/node_modules/.bin/hijack-guard -c /etc/haraka --json audit alice@example.com
`

/** Throws UsageError for a call that cannot be right, before any config or store is touched. */
function checkUsage(
  name: string,
  args: readonly string[],
  values: { reason?: string; limit?: string; 'allow-old-password'?: boolean },
): Command {
  const command = COMMANDS[name]
  if (!command) throw new UsageError(`unknown command ${JSON.stringify(name)}`)
  const [min, max] = command.accounts
  if (args.length < min || args.length > max) {
    throw new UsageError(
      max === 0
        ? `${name} takes no arguments`
        : min === max
          ? `${name} takes exactly one ACCOUNT`
          : `${name} takes at most one ACCOUNT`,
    )
  }
  for (const option of ['reason', 'limit', 'allow-old-password'] as const) {
    if (values[option] === undefined || command.options.includes(option)) continue
    const owner = Object.entries(COMMANDS).find(([, c]) => c.options.includes(option))?.[0] ?? 'no command'
    throw new UsageError(`--${option} goes with ${owner}`)
  }
  if (values.limit !== undefined && !(/^\d+$/.test(values.limit) && Number(values.limit) >= 1)) {
    throw new UsageError(`--limit must be a whole number of at least 1, not ${JSON.stringify(values.limit)}`)
  }
  return command
}

const PLUGIN_NAMES = ['hijack-guard', 'haraka-plugin-hijack-guard']

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

/**
 * Why `dir` is not the Haraka directory of a server running hijack-guard, or null when it is:
 * the CLI must never act on a default store because -c named the wrong place.
 */
function harakaDirProblem(dir: string): string | null {
  if (!isDirectory(dir)) return `${dir} is not a directory; give the Haraka directory (the one that holds config/)`
  const configDir = join(dir, 'config')
  if (!isDirectory(configDir)) {
    const hint =
      basename(dir) === 'config'
        ? `${dir} looks like the config directory itself, give its parent (-c ${resolve(dir, '..')})`
        : 'give the Haraka directory (the one that holds config/)'
    return `${dir} is not a Haraka directory: ${configDir} does not exist; ${hint}`
  }
  const pluginsFile = join(configDir, 'plugins')
  let lines: string[]
  try {
    lines = readFileSync(pluginsFile, 'utf8').split(/\r\n|\r|\n/)
  } catch (err) {
    return `${dir} is not a Haraka directory running hijack-guard: ${pluginsFile} cannot be read (${errorText(err)})`
  }
  // Haraka's list format: one name a line; a line starting with # or ; is a comment.
  const listed = lines.some((line) => !/^\s*[#;]/.test(line) && PLUGIN_NAMES.includes(line.trim()))
  if (!listed)
    return `hijack-guard is not enabled in ${dir}: ${pluginsFile} has no line "hijack-guard"; is this the Haraka directory of the server?`
  return null
}

/** "redis 127.0.0.1:6379/0" or "memory /path/state.json": the store the CLI acts on. */
function storeName(config: Config, harakaDir: string): string {
  return config.store === 'redis'
    ? `redis ${config.redis.host}:${config.redis.port}/${config.redis.db}`
    : `memory ${resolve(harakaDir, config.stateFile)}`
}

/** The package's own directory (its config/ holds the defaults), from dist/lib/cli or lib/cli alike. */
function packageDir(): string {
  let dir = __dirname
  while (!existsSync(join(dir, 'config', 'hijack-guard.ini')) && dirname(dir) !== dir) dir = dirname(dir)
  return dir
}

function defaultConfigFor(harakaDir: string): ConfigReader {
  return hc.module_config(packageDir(), harakaDir)
}

function openStore(config: Config, harakaDir: string): Store {
  if (config.store === 'memory') return createMemoryStore({ stateFile: resolve(harakaDir, config.stateFile) })
  const quiet = (): void => undefined
  return createRedisStore({
    redis: config.redis,
    timeoutMs: config.storeTimeoutMs,
    log: { info: quiet, warn: quiet, error: quiet },
  })
}

/** The command line as node:util parseArgs reads it; throws on an unknown or malformed option. */
function parseCommandLine(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      json: { type: 'boolean' },
      reason: { type: 'string' },
      limit: { type: 'string' },
      'allow-old-password': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
}

/** Runs one command; resolves with the exit code. Never rejects. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed
  try {
    parsed = parseCommandLine(argv)
  } catch (err) {
    io.err(`hijack-guard: ${(err as Error).message}\nTry: hijack-guard --help`)
    return EXIT.usage
  }
  const { values, positionals } = parsed
  const [command, ...args] = positionals
  if (values.help || command === 'help') {
    io.out(HELP)
    return EXIT.ok
  }
  if (!command) {
    io.err(`hijack-guard: no command given\n\n${HELP}`)
    return EXIT.usage
  }
  let run: Command
  try {
    run = checkUsage(command, args, values)
  } catch (err) {
    io.err(`hijack-guard: ${(err as Error).message}\nTry: hijack-guard --help`)
    return EXIT.usage
  }
  const harakaDir = resolve(values.config ?? process.env.HARAKA ?? '.')
  const problem = harakaDirProblem(harakaDir)
  if (problem) {
    io.err(`hijack-guard: ${problem}`)
    return EXIT.config
  }
  let config: Config
  try {
    config = readConfig((io.configFor ?? defaultConfigFor)(harakaDir))
  } catch (err) {
    io.err(`hijack-guard: ${(err as Error).message} (Haraka directory ${harakaDir})`)
    return EXIT.config
  }
  return runOnStore(run, { config, harakaDir, args, values }, values.json === true, io)
}

/** Opens the store, runs the command on it and closes the store; resolves with the exit code. */
async function runOnStore(
  run: Command,
  ctx: Omit<Context, 'store' | 'print' | 'emit'>,
  json: boolean,
  io: CliIo,
): Promise<number> {
  const { config, harakaDir } = ctx
  let store: Store | undefined
  try {
    store = openStore(config, harakaDir)
    await store.ready(Math.max(3 * config.storeTimeoutMs, 2000))
    const opened = store
    const name = storeName(config, harakaDir)
    // Text names the store first; a JSON object gets a "store" field (lists stay plain arrays).
    const print = (data: unknown, text: string): void =>
      io.out(
        json
          ? JSON.stringify(
              data && typeof data === 'object' && !Array.isArray(data) ? { ...data, store: name } : data,
              null,
              2,
            )
          : `store: ${name}\n${text}`,
      )
    // The CLI sends the events of what it did itself, and waits for them (bounded by
    // [webhook] timeout and the retries) so that the process does not end first.
    const webhook = config.webhook
      ? createWebhook({
          config: config.webhook,
          server: config.me,
          log: { info: () => undefined, error: (line) => io.err(`hijack-guard: ${line}`) },
          keepAlive: true,
        })
      : null
    const emit = (event: WebhookEvent): Promise<void> => webhook?.emit(event) ?? Promise.resolve()
    return await run.run({ ...ctx, store: opened, print, emit })
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`hijack-guard: ${err.message}\nTry: hijack-guard --help`)
      return EXIT.usage
    }
    io.err(`hijack-guard: the store (${storeName(config, harakaDir)}) cannot be used: ${errorText(err)}`)
    return EXIT.store
  } finally {
    await store?.close().catch(() => undefined)
  }
}
