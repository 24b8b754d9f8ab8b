// The compiled plugin (dist/, so `npm run build` first) as Haraka loads it, through
// haraka-test-fixtures: its config written into a directory under the temporary root, the store
// seam filled with the compiled memory store (or the test's store, e.g. a fakeStore), the mail
// seam recording what the plugin sends, and hooks called the way Haraka calls them.

import * as fs from 'node:fs'
import { createRequire } from 'node:module'
import * as path from 'node:path'
import * as fixtures from 'haraka-test-fixtures'
import type { FixtureConnection, FixturePlugin, FixtureTransaction } from 'haraka-test-fixtures'
import type { OutgoingMail } from '../lib/alert'
import type { Config } from '../lib/config'
import type { DSN, Next } from '../lib/haraka'
import type * as memoryStore from '../lib/store/memory'
import type * as storeModule from '../lib/store'
import type { Store } from '../lib/store'
import { fakeStore } from './fake-store'
import { REPO_ROOT, tmpDir } from './process'

/** The plugin's seams, as index.ts keeps them on the plugin object. */
export interface GuardSeams {
  config: Config
  store?: Store
  sendMail: (mail: OutgoingMail) => Promise<void>
}

/** A registered plugin with its seams. */
export type GuardPlugin = FixturePlugin & { guard: GuardSeams }

export interface GuardOptions {
  /** config/smtp.ini (default one process: nodes=0). */
  readonly smtpIni?: string
  /** The store seam; default the compiled memory store with its state file in the plugin's directory. */
  readonly store?: Store
  /** Replaces register_hook before register() runs (to see what the plugin registers). */
  readonly onRegisterHook?: (hook: string, method: string, priority?: number) => void
}

export interface Guard {
  readonly plugin: GuardPlugin
  /** Its Haraka directory (config/ inside), under the temporary root. */
  readonly dir: string
  /** What the plugin logged: [level, text]. */
  readonly logs: Array<[string, string]>
  /** What the plugin sent through the mail seam. */
  readonly sent: OutgoingMail[]
}

const LEVELS = ['loginfo', 'lognotice', 'logwarn', 'logerror', 'logcrit'] as const

// The compiled code, loaded at run time: the plugin's own StoreError must be the one its store throws.
const loadDist = createRequire(__filename)
/** The compiled memory store module (dist/lib/store/memory). */
export const distMemoryStore = (): typeof memoryStore =>
  loadDist(path.join(REPO_ROOT, 'dist', 'lib', 'store', 'memory')) as typeof memoryStore
/** The compiled store module (dist/lib/store): its StoreError is the one the plugin takes for a store failure. */
export const distStore = (): typeof storeModule =>
  loadDist(path.join(REPO_ROOT, 'dist', 'lib', 'store')) as typeof storeModule

/**
 * A store that is down: every member rejects with the compiled StoreError(`message`), except
 * close(), which resolves.
 */
export function failingStore(message = 'connection refused', kind: Store['kind'] = 'redis'): Store {
  const { StoreError } = distStore()
  const fail = (): Promise<never> => Promise.reject(new StoreError(message))
  const members = Object.entries(fakeStore({ kind })).map(([name, value]: [string, unknown]): [string, unknown] => [
    name,
    typeof value === 'function' && name !== 'close' ? fail : value,
  ])
  return { ...(Object.fromEntries(members) as unknown as Store), close: async () => undefined }
}

/** The store at the plugin's store seam (makeGuard always fills it). */
export function guardStore(plugin: GuardPlugin): Store {
  const store = plugin.guard.store
  if (!store) throw new Error('the plugin has no store at its seam')
  return store
}

/** A registered plugin reading `ini` as config/hijack-guard.ini. Throws what register() throws (a bad config). */
export function makeGuard(
  ini: string,
  { smtpIni = '[main]\nnodes=0\n', store, onRegisterHook }: GuardOptions = {},
): Guard {
  const dir = tmpDir('plugin')
  fs.mkdirSync(path.join(dir, 'config'))
  fs.writeFileSync(path.join(dir, 'config', 'hijack-guard.ini'), ini)
  fs.writeFileSync(path.join(dir, 'config', 'smtp.ini'), smtpIni)
  fs.writeFileSync(path.join(dir, 'config', 'me'), 'mx.test.example\n')
  const plugin = fixtures.makePlugin('hijack-guard', { register: false })
  plugin.config = plugin.config.module_config(REPO_ROOT, dir)
  const logs: Array<[string, string]> = []
  for (const level of LEVELS) plugin[level] = (...args: unknown[]) => logs.push([level, args.map(String).join(' ')])
  if (onRegisterHook) plugin.register_hook = onRegisterHook
  plugin.register()
  const guard = plugin.guard as GuardSeams
  guard.store = store ?? distMemoryStore().createMemoryStore({ stateFile: path.join(dir, 'state.json') })
  const sent: OutgoingMail[] = []
  guard.sendMail = async (mail) => {
    sent.push(mail)
  }
  return { plugin: plugin as GuardPlugin, dir, logs, sent }
}

/** What a hook passed to `next`. */
export interface HookOutcome {
  readonly rc: number | undefined
  readonly msg: string | DSN | number | undefined
}

/** Calls the plugin's `method` as Haraka does (next first); resolves with what it passed to next. */
export function callHook(plugin: FixturePlugin, method: string, ...args: unknown[]): Promise<HookOutcome> {
  const hook = plugin[method]
  if (typeof hook !== 'function') throw new Error(`the plugin has no method ${method}`)
  return new Promise((resolve) => {
    const next: Next = (rc, msg) => resolve({ rc, msg })
    ;(hook as (next: Next, ...rest: unknown[]) => void).call(plugin, next, ...args)
  })
}

/** The SMTP reply Haraka writes for a hook's message (a DSN: "code text"). */
export function replyText(msg: HookOutcome['msg']): string {
  return msg !== null && typeof msg === 'object' ? `${msg.code} ${msg.reply}` : String(msg)
}

/** A fixtures connection's transaction (made with mailFrom, rcptTo or withTxn); throws when it has none. */
export function transactionOf(connection: FixtureConnection): FixtureTransaction {
  if (!connection.transaction) throw new Error('the connection has no transaction')
  return connection.transaction
}
