/**
 * The operator's command line: `hijack-guard -c HARAKA_DIR COMMAND`. It reads the same config
 * as the plugin (the package defaults with HARAKA_DIR/config over them) and talks to the same
 * store. runCli returns the exit code; bin/hijack-guard.ts exits with it.
 */
import { existsSync, readFileSync, statSync } from 'node:fs'
import { userInfo } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import hc from 'haraka-config'
import { canonicalAccount } from '../account'
import { alertReason, evidenceLines } from '../alert'
import { readConfig, rulesForAccount, type Config, type ConfigReader } from '../config'
import { createMemoryStore } from '../store/memory'
import { formatDuration, errorText } from '../messages'
import { utc } from '../text'
import { createRedisStore } from '../store/redis'
import type { AuditEntry, DisabledRecord, Store, WindowCount } from '../store'

/** Exit codes scripts can rely on. */
export const EXIT = {
  ok: 0,
  /** Nothing to do or nothing known: enable of an account that is not disabled, show of an unknown account. */
  noChange: 1,
  usage: 2,
  config: 3,
  store: 4,
} as const

export interface CliIo {
  out(text: string): void
  err(text: string): void
  /** Opens haraka-config for a Haraka directory; a seam for tests. */
  configFor?(harakaDir: string): ConfigReader
}

const HELP = `hijack-guard: look after the accounts haraka-plugin-hijack-guard disabled

Usage: hijack-guard -c HARAKA_DIR [--json] COMMAND [ARGUMENTS]

Commands:
  list                          disabled accounts: when, why, counts, held mail
  show ACCOUNT                  one account: state, live counts against its limits,
                                last incident, evidence, held mail, recent audit
  enable ACCOUNT                re-enable: clear the flag and the counters; held mail goes out
  disable ACCOUNT [--reason T]  disable by hand (AUTH 535, MAIL FROM 550 until enabled)
  reset ACCOUNT                 clear the counters, keep the flag
  audit [ACCOUNT] [--limit N]   the audit trail, newest first (default 50 entries)
  drop-held ACCOUNT             discard the account's held outbound mail, without bounces

Options:
  -c, --config DIR   the Haraka directory (the one with config/, whose config/plugins
                     lists hijack-guard); default: $HARAKA or the current directory
  --json             machine-readable output (every command)
  --reason TEXT      why, for disable (kept in the record and the audit trail)
  --limit N          how many audit entries
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

/** Each command with how many ACCOUNT arguments it takes (at least, at most). */
const ARITY: Record<string, readonly [number, number]> = {
  list: [0, 0],
  show: [1, 1],
  enable: [1, 1],
  disable: [1, 1],
  reset: [1, 1],
  audit: [0, 1],
  'drop-held': [1, 1],
}

class UsageError extends Error {}

/** Throws UsageError for a call that cannot be right, before any config or store is touched. */
function checkUsage(command: string, args: readonly string[], values: { reason?: string; limit?: string }): void {
  const arity = ARITY[command]
  if (!arity) throw new UsageError(`unknown command ${JSON.stringify(command)}`)
  const [min, max] = arity
  if (args.length < min || args.length > max) {
    throw new UsageError(max === 0 ? `${command} takes no arguments` : min === max ? `${command} takes exactly one ACCOUNT` : `${command} takes at most one ACCOUNT`)
  }
  if (values.reason !== undefined && command !== 'disable') throw new UsageError('--reason goes with disable')
  if (values.limit !== undefined && command !== 'audit') throw new UsageError('--limit goes with audit')
  if (values.limit !== undefined && !(/^\d+$/.test(values.limit) && Number(values.limit) >= 1)) {
    throw new UsageError(`--limit must be a whole number of at least 1, not ${JSON.stringify(values.limit)}`)
  }
}

function actor(): string {
  try {
    return `cli:${userInfo().username}`
  } catch {
    return `cli:${process.env.USER ?? 'unknown'}`
  }
}


function countText(c: WindowCount): string {
  return `${c.kind} ${c.count}/${c.max} in ${formatDuration(c.windowMs)}`
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
    const hint = basename(dir) === 'config' ? `${dir} looks like the config directory itself, give its parent (-c ${resolve(dir, '..')})` : 'give the Haraka directory (the one that holds config/)'
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
  if (!listed) return `hijack-guard is not enabled in ${dir}: ${pluginsFile} has no line "hijack-guard"; is this the Haraka directory of the server?`
  return null
}

/** "redis 127.0.0.1:6379/0" or "memory /path/state.json": the store the CLI acts on. */
function storeName(config: Config, harakaDir: string): string {
  return config.store === 'redis' ? `redis ${config.redis.host}:${config.redis.port}/${config.redis.db}` : `memory ${resolve(harakaDir, config.stateFile)}`
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
  return createRedisStore({ redis: config.redis, timeoutMs: config.storeTimeoutMs, log: { info: quiet, warn: quiet, error: quiet } })
}

function recordJson(r: DisabledRecord, held: number | null): Record<string, unknown> {
  return {
    account: r.account,
    disabledAt: new Date(r.at).toISOString(),
    by: r.by,
    reason: alertReason(r),
    limit: r.over ? `${r.over.kind} ${r.over.text}` : null,
    counts: r.counts,
    incident: r.incident,
    held,
    ...(r.tokenExpiresAt ? { replyExpiresAt: new Date(r.tokenExpiresAt).toISOString() } : {}),
  }
}

function evidenceOf(evidence: DisabledRecord['evidence']): string[] {
  return evidence.length ? evidenceLines(evidence) : []
}

function auditLine(e: AuditEntry): string {
  return `${utc(e.at)}  ${e.action.padEnd(17)} ${JSON.stringify(e.account)} by ${e.actor} via ${e.how}${e.reason ? `: ${e.reason}` : ''}`
}

/** Runs one command; resolves with the exit code. Never rejects. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean' },
        reason: { type: 'string' },
        limit: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    })
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
  try {
    checkUsage(command, args, values)
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
  let store: Store | undefined
  try {
    store = openStore(config, harakaDir)
    await store.ready(Math.max(3 * config.storeTimeoutMs, 2000))
    return await dispatch(command, args, values, { config, store, io, harakaDir })
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

interface Context {
  readonly config: Config
  readonly store: Store
  readonly io: CliIo
  readonly harakaDir: string
}

function oneAccount(args: readonly string[], config: Config): string {
  const account = canonicalAccount(args[0] ?? '', config.accounts)
  if (account === '') throw new UsageError(`${JSON.stringify(args[0] ?? '')} names no account`)
  return account
}

async function dispatch(command: string, args: string[], values: { json?: boolean; reason?: string; limit?: string }, ctx: Context): Promise<number> {
  const { config, store, io } = ctx
  const json = values.json === true
  const store_ = storeName(config, ctx.harakaDir)
  // Text names the store first; a JSON object gets a "store" field (lists stay plain arrays).
  const print = (data: unknown, text: string): void =>
    io.out(json ? JSON.stringify(data && typeof data === 'object' && !Array.isArray(data) ? { ...data, store: store_ } : data, null, 2) : `store: ${store_}\n${text}`)
  const heldOf = (account: string): Promise<number> => store.heldCount(account)
  const retry = formatDuration(config.held.retryMs)

  switch (command) {
    case 'list': {
      const records = await store.listDisabled()
      const rows = await Promise.all(records.map(async (r) => ({ r, held: await heldOf(r.account) })))
      const lines = rows.flatMap(({ r, held }) => [
        r.account,
        `  disabled ${utc(r.at)} by ${r.by}: ${alertReason(r)}`,
        ...(r.counts.length ? [`  counts ${r.counts.map(countText).join(', ')}`] : []),
        `  held mail ${held}; incident ${r.incident}`,
      ])
      print(
        rows.map(({ r, held }) => recordJson(r, held)),
        `${records.length} disabled account${records.length === 1 ? '' : 's'}${lines.length ? `\n${lines.join('\n')}` : ''}`,
      )
      return EXIT.ok
    }
    case 'show': {
      const account = oneAccount(args, config)
      const rules = rulesForAccount(config, account)
      const [record, counts, evidence, held, audit] = await Promise.all([
        store.getDisabled(account),
        store.counts(account, rules),
        store.evidence(account),
        heldOf(account),
        store.auditLog({ account, limit: 10 }),
      ])
      const liveKnown = store.kind === 'redis'
      const known = record !== null || counts.some((c) => c.count > 0) || evidence.length > 0 || held > 0 || audit.length > 0
      const state = record ? 'disabled' : config.exempt.has(account) ? 'exempt' : 'active'
      const lines = [
        `Account   ${account}`,
        `State     ${state}${record ? ` since ${utc(record.at)} by ${record.by}: ${alertReason(record)}` : ''}`,
        ...(record ? [`Incident  ${record.incident}${record.tokenExpiresAt ? ` (reply to the alert until ${utc(record.tokenExpiresAt)})` : ''}`] : []),
        `Held mail ${held} message${held === 1 ? '' : 's'}`,
        liveKnown ? 'Limits (live counts):' : 'Limits (live counts are kept inside the Haraka process with store = memory):',
        ...(liveKnown ? counts.map((c) => `  ${countText(c)}`) : rules.map((r) => `  ${r.kind} ${r.text}`)),
        ...(record?.counts.length ? ['At the incident:', ...record.counts.map((c) => `  ${countText(c)}`)] : []),
        ...evidenceOf(record?.evidence.length ? record.evidence : evidence),
        ...(audit.length ? ['Recent audit:', ...audit.map((e) => `  ${auditLine(e)}`)] : []),
      ]
      print(
        { account, state, disabled: record ? recordJson(record, held) : null, counts: liveKnown ? counts : null, held, evidence: record?.evidence.length ? record.evidence : evidence, audit },
        known ? lines.join('\n') : `${lines.join('\n')}\nhijack-guard has no record of ${account}: not disabled, nothing counted in its windows, no audit entries`,
      )
      return known ? EXIT.ok : EXIT.noChange
    }
    case 'enable': {
      const account = oneAccount(args, config)
      const held = await heldOf(account)
      // Nothing changes for an account that is not disabled (its counters stay).
      const was = (await store.getDisabled(account)) !== null && (await store.enable(account))
      if (!was) {
        print({ account, action: 'enable', done: false }, `${account} is not disabled: nothing changed`)
        return EXIT.noChange
      }
      await store.audit({ at: Date.now(), account, action: 'enable', actor: actor(), how: 'cli' })
      print(
        { account, action: 'enable', done: true, held },
        `${account} enabled: flag and counters cleared.` +
          (held ? `\n${held} held message${held === 1 ? '' : 's'} go out at the next delivery attempt (within ${retry}); to send now: haraka -c ${ctx.harakaDir} --qunstick` : ''),
      )
      return EXIT.ok
    }
    case 'disable': {
      const account = oneAccount(args, config)
      const reason = values.reason?.trim() || 'disabled by an operator'
      const who = actor()
      if (!(await store.disable({ account, reason, by: who, incident: `manual-${Date.now().toString(36)}` }))) {
        print({ account, action: 'disable', done: false }, `${account} is disabled already: nothing changed`)
        return EXIT.noChange
      }
      await store.audit({ at: Date.now(), account, action: 'disable', actor: who, how: 'cli', reason })
      print({ account, action: 'disable', done: true }, `${account} disabled: AUTH gets 535 5.7.8 and MAIL FROM 550 5.7.1 until it is enabled`)
      return EXIT.ok
    }
    case 'reset': {
      const account = oneAccount(args, config)
      await store.reset(account)
      await store.audit({ at: Date.now(), account, action: 'reset', actor: actor(), how: 'cli' })
      const stillDisabled = (await store.getDisabled(account)) !== null
      print({ account, action: 'reset', done: true, disabled: stillDisabled }, `${account}: counters cleared${stillDisabled ? ' (it stays disabled)' : ''}`)
      return EXIT.ok
    }
    case 'audit': {
      const limit = values.limit === undefined ? 50 : Number(values.limit)
      const account = args[0] === undefined ? undefined : canonicalAccount(args[0], config.accounts)
      const entries = await store.auditLog({ ...(account !== undefined ? { account } : {}), limit })
      print(entries, entries.length ? entries.map(auditLine).join('\n') : 'no audit entries')
      return EXIT.ok
    }
    case 'drop-held': {
      const account = oneAccount(args, config)
      // Only a disabled account's mail is held: a mistyped name must not throw away good mail.
      if ((await store.getDisabled(account)) === null) {
        print({ account, action: 'drop-held', done: false }, `${account} is not disabled: its mail is not held, nothing dropped`)
        return EXIT.noChange
      }
      const held = await store.dropHeld(account, config.held.maxHoldMs)
      await store.audit({ at: Date.now(), account, action: 'drop-held', actor: actor(), how: 'cli', reason: `${held} held` })
      print(
        { account, action: 'drop-held', done: true, held },
        `${account}: ${held} held message${held === 1 ? '' : 's'} (and any other mail it queued until now) will be discarded at the next delivery attempt (within ${retry}), without bounces`,
      )
      return EXIT.ok
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`)
  }
}
