/**
 * haraka-plugin-hijack-guard: Haraka's face of the plugin. Every entry point is here; the
 * decisions live in lib/hooks/ (one file per SMTP phase).
 */
import { cpus } from 'node:os'
import { resolve } from 'node:path'
import { CONFIG_FILE, ConfigError, readConfig, type Config } from './lib/config'
import type { MailSender } from './lib/alert'
import {
  authOutcome,
  authRefusal,
  bouncedRecipients,
  checkHeld,
  checkMail,
  checkRcpt,
  checkRecipientCap,
  consumeReply,
  countInvalid,
  countMessage,
  holdCandidate,
  releaseWaiting,
  isReplyToAlert,
  newProcessState,
  refuseDropped,
  refusedRecipient,
  storeErrorVerdict,
  suppressBounce,
  wrapAuthPlugins,
  type CountNote,
  type DenyParams,
  type GuardState,
  type InvalidRecipients,
  type ProcessState,
  type QueuedMail,
} from './lib/hooks'
import {
  answer,
  asHook,
  DENY,
  outboundRequeue,
  outboundSender,
  registeredPlugins,
  type Address,
  type Connection,
  type HarakaPlugin,
  type Next,
  type Verdict,
} from './lib/haraka'
import { createJournalFile, withJournal } from './lib/store/journal'
import { errorText } from './lib/messages'
import { checkStateFile, createMemoryStore } from './lib/store/memory'
import { createRedisStore } from './lib/store/redis'
import { autoEnableDue, autoEnableEveryMs } from './lib/hooks/auto-enable'
import type { Store } from './lib/store'

interface GuardPlugin extends HarakaPlugin {
  /** The live config, the store once opened, and the mail seam. Tests may replace `store` and `sendMail`. */
  guard: { config: Config; store?: Store; sendMail: MailSender; process: ProcessState; state?: GuardState }
}

export function register(this: GuardPlugin): void {
  let config: Config
  try {
    config = readConfig(this.config, () => reloadConfig(this))
    refuseUnsupportedProcessModel(this, config)
  } catch (err) {
    this.logcrit(`refusing to start: ${(err as Error).message}`)
    throw err
  }
  for (const w of config.warnings) this.logwarn(`${CONFIG_FILE}: ${w}`)
  this.guard = { config, sendMail: outboundSender(this), process: newProcessState() }
  this.guard.process.held.requeue = outboundRequeue(this)
  // Ahead of other plugins: the reply address must be accepted before a relay check refuses
  // it, and no queue plugin may take a message before it is counted.
  this.register_hook('rcpt', 'check_rcpt', -100)
  this.register_hook('queue', 'consume_reply', -100)
  this.register_hook('queue_outbound', 'count_message', -100)
  this.register_hook('get_mx', 'refuse_dropped', -100)
  // Last of the deny hooks: one before it may answer OK and take the refusal back.
  this.register_hook('deny', 'count_refused_rcpt', 100)
  this.loginfo(summary(config))
}

export function hook_init_master(this: GuardPlugin, next: Next): void {
  startOrStop(this, next)
}

export function hook_init_child(this: GuardPlugin, next: Next): void {
  startOrStop(this, next)
}

/** An unexpected error in a hook that decides on mail answers as a store failure would. */
function onStoreError(this: GuardPlugin): Verdict {
  return storeErrorVerdict(this.guard)
}

export const hook_mail = asHook(async function (this: GuardPlugin, connection: Connection) {
  return checkMail(this, connection, state(this))
}, onStoreError)

// The hooks below run for every recipient, message or delivery attempt and decide most of them
// without waiting: plain functions that answer at once, with no promise and no store call then.
export function check_rcpt(this: GuardPlugin, next: Next, connection: Connection, params: [Address]): void {
  const config = this.guard.config
  answer(next, checkRcpt(connection, config, params[0]) ?? checkRecipientCap(this, connection, config))
}

// Inbound mail of sessions that did not authenticate: never refused for the plugin's own trouble
// (consumeReply keeps a reply to an alert from being delivered whatever fails).
export const consume_reply = asHook(function (this: GuardPlugin, connection: Connection) {
  if (isReplyToAlert(connection)) return consumeReply(this, connection, state(this))
})

export const count_message = asHook(function (this: GuardPlugin, connection: Connection) {
  const s = state(this)
  return isReplyToAlert(connection) ? consumeReply(this, connection, s) : countMessage(this, connection, s)
}, onStoreError)

export function hook_send_email(this: GuardPlugin, next: Next, mail: QueuedMail): void {
  const note = holdCandidate(mail)
  if (note === null) return next()
  checkHeldMail.call(this, next, mail, note)
}

const checkHeldMail = asHook(function (this: GuardPlugin, mail: QueuedMail, note: CountNote) {
  return checkHeld(this, mail, state(this), note)
})

// get_mx and bounce must stay registered: an operator may drop held mail at any time, and
// send_email can only delay a message or let it go on, so a drop is get_mx DENY, then bounce OK.
export function refuse_dropped(this: GuardPlugin, next: Next, mail: QueuedMail): void {
  answer(next, refuseDropped(mail))
}

/** deny: a RCPT another plugin refused with a 5xx counts toward [signals] invalid_recipients; always CONT. */
export function count_refused_rcpt(this: GuardPlugin, next: Next, connection: Connection, params: DenyParams): void {
  // Counted before the refusal goes out: the client's next MAIL FROM finds the account disabled.
  countThen(this, next, () => refusedRecipient(this, connection, this.guard.config, params), connection)
}

/** bounce: no bounce for dropped mail; a hard bounce counts toward [signals] invalid_recipients. */
export function hook_bounce(this: GuardPlugin, next: Next, mail: QueuedMail, err: unknown): void {
  const verdict = suppressBounce(this, mail)
  if (verdict) return answer(next, verdict)
  countThen(this, next, () => bouncedRecipients(mail, err, this.guard.config))
}

/** Counts what `find` finds as invalid recipients, then answers CONT; never throws, calls next once. */
function countThen(
  plugin: GuardPlugin,
  next: Next,
  find: () => InvalidRecipients | null,
  connection?: Connection,
): void {
  let counting: Promise<void> | undefined
  try {
    const found = find()
    if (found) counting = countInvalid(plugin, state(plugin), found, connection)
  } catch (err) {
    plugin.logerror(`invalid_recipients not counted: ${errorText(err)}`)
  }
  if (!counting) return next()
  counting.then(
    () => next(),
    () => next(),
  )
}

export function shutdown(this: GuardPlugin): void {
  clearTimeout(autoEnableTimers.get(this))
  autoEnableTimers.delete(this)
  const store = this.guard?.store
  if (!store) return
  delete this.guard.store
  store.close().catch(() => undefined)
}

/** The config and the store, opening the store on first use; one object while neither changes. */
function state(plugin: GuardPlugin): GuardState {
  const guard = plugin.guard
  const store = guard.store ?? openStore(plugin, guard.config)
  guard.store = store
  const known = guard.state
  if (known && known.config === guard.config && known.store === store && known.sendMail === guard.sendMail) return known
  if (known?.store !== store) watchEnables(plugin, store)
  guard.state = { config: guard.config, store, sendMail: guard.sendMail, process: guard.process }
  return guard.state
}

/** An enable, here or on any server sharing the store, sends the account's held mail in this process now. */
function watchEnables(plugin: GuardPlugin, store: Store): void {
  store.watchEnables((account) => {
    if (plugin.guard.store !== store) return
    releaseWaiting(plugin.guard.process.held, account, (line) => plugin.lognotice(line))
  })
}

function openStore(plugin: GuardPlugin, config: Config): Store {
  if (config.store === 'memory') return createMemoryStore({ stateFile: stateFilePath(config) })
  const log = {
    info: (m: string) => plugin.loginfo(m),
    warn: (m: string) => plugin.logwarn(m),
    error: (m: string) => plugin.logerror(m),
  }
  // The journal keeps disabled flags through a Redis that loses its data (lib/store/journal/).
  const redis = createRedisStore({
    redis: config.redis,
    timeoutMs: config.storeTimeoutMs,
    log,
    checkDurability: true,
    cacheDisabled: true,
  })
  const journal = createJournalFile(resolve(process.env.HARAKA ?? process.cwd(), config.redis.journal), log)
  return withJournal(redis, { file: journal, log, checkMs: config.redis.journalCheckMs })
}

/**
 * init_master / init_child: opens and checks the store, then puts the AUTH gate on the auth
 * plugins. A store that cannot open stops Haraka (an exception here would only be logged and
 * Haraka would run unguarded): `next(DENY, why)` makes Haraka exit.
 */
function startOrStop(plugin: GuardPlugin, next: Next): void {
  startInProcess(plugin).then(
    () => next(),
    (err: unknown) => {
      const why = `hijack-guard cannot start: ${errorText(err)}`
      try {
        plugin.logcrit(why)
      } finally {
        next(DENY, why)
      }
    },
  )
}

/** Opens the store early (without waiting for Redis), checks a memory store's file, and wraps AUTH. */
async function startInProcess(plugin: GuardPlugin): Promise<void> {
  const config = plugin.guard.config
  // Haraka 3.3.4 runs init_master after dropping privileges to smtp.ini user/group, so this
  // checks the state file as the user that must read and write it.
  if (config.store === 'memory') await checkStateFile(stateFilePath(config))
  state(plugin)
  // async: even a synchronous throw becomes a rejection, which the wrapper turns into "MAIL FROM decides".
  const wrapped = wrapAuthPlugins(
    plugin,
    registeredPlugins(plugin),
    async (connection, user) => authRefusal(plugin, connection, user, state(plugin)),
    async (connection, user, valid, password) => authOutcome(plugin, connection, user, valid, password, state(plugin)),
  )
  plugin.loginfo(
    wrapped.length
      ? `AUTH of disabled accounts refused in: ${wrapped.join(', ')}`
      : 'no auth plugin found to guard; MAIL FROM still refuses disabled accounts',
  )
  scheduleAutoEnable(plugin)
}

const autoEnableTimers = new WeakMap<GuardPlugin, NodeJS.Timeout>()

/**
 * [reactivate] auto_enable_after: looks for accounts due now and then, at a pace taken from the
 * config in force (a reload may turn it on or off); the timer never keeps Haraka alive.
 */
function scheduleAutoEnable(plugin: GuardPlugin): void {
  const after = plugin.guard.config.reactivate.autoEnableAfterMs
  const timer = setTimeout(
    () => {
      const run = plugin.guard.config.reactivate.autoEnableAfterMs > 0 && plugin.guard.store
      void (run ? autoEnableDue(plugin, state(plugin)) : Promise.resolve([])).finally(() => {
        if (autoEnableTimers.get(plugin) === timer) scheduleAutoEnable(plugin)
      })
    },
    after > 0 ? autoEnableEveryMs(after) : 60_000,
  )
  timer.unref()
  autoEnableTimers.set(plugin, timer)
}

function stateFilePath(config: Config): string {
  return resolve(process.env.HARAKA ?? process.cwd(), config.stateFile)
}

/** Bumped by every reload: a slower, older reload never overwrites a newer one. */
let reloads = 0

/** The config file changed: never throws (haraka-config does not catch, and Haraka would exit). */
function reloadConfig(plugin: GuardPlugin): void {
  const mine = ++reloads
  let pending: Promise<void>
  try {
    pending = reload(plugin, () => mine === reloads)
  } catch (err) {
    pending = Promise.reject(err instanceof Error ? err : new Error(String(err)))
  }
  pending.catch((err: unknown) => {
    try {
      plugin.logerror(`${CONFIG_FILE} reload failed, keeping the previous configuration and store: ${errorText(err)}`)
    } catch {
      // nothing left to tell
    }
  })
}

/**
 * Reads the new config; when it names another store, opens and checks that store before
 * swapping, so a store that cannot open leaves the old config and store in place.
 */
async function reload(plugin: GuardPlugin, current: () => boolean): Promise<void> {
  let config: Config
  try {
    config = readConfig(plugin.config, () => reloadConfig(plugin))
  } catch (err) {
    plugin.logerror(`${(err as Error).message}; keeping the previous configuration`)
    return
  }
  const before = plugin.guard.config
  const storeChanged =
    JSON.stringify([before.store, before.redis, before.stateFile, before.storeTimeoutMs]) !==
    JSON.stringify([config.store, config.redis, config.stateFile, config.storeTimeoutMs])
  if (storeChanged && config.store === 'memory' && before.store !== 'memory') {
    plugin.logerror(`${CONFIG_FILE}: switching to store = memory needs a restart; keeping the previous configuration`)
    return
  }
  let store: Store | undefined
  if (storeChanged) {
    if (config.store === 'memory') await checkStateFile(stateFilePath(config))
    store = openStore(plugin, config)
  }
  if (!current()) {
    await store?.close()
    return
  }
  for (const w of config.warnings) plugin.logwarn(`${CONFIG_FILE}: ${w}`)
  if (store) {
    shutdown.call(plugin)
    plugin.guard.store = store
  }
  plugin.guard.config = config
  plugin.loginfo(`${CONFIG_FILE} reloaded: ${summary(config)}`)
}

function summary(config: Config): string {
  const where =
    config.store === 'redis'
      ? `redis=${config.redis.host}:${config.redis.port}/${config.redis.db}`
      : `state_file=${resolve(process.env.HARAKA ?? process.cwd(), config.stateFile)}`
  return (
    `mode=${config.mode} store=${config.store} ${where} on_store_error=${config.onStoreError} limits=${config.rules.map((r) => `${r.kind} ${r.text}`).join(', ') || 'none'} ` +
    `max_recipients_per_message=${config.maxRecipients || 'none'} exempt_networks=${config.exemptNetworks.join(',') || 'none'} ` +
    `auth_failures=${config.authFailures?.text ?? 'off'} warn_at=${config.warnAt ? `${Math.round(config.warnAt * 100)}%` : 'off'} ` +
    `invalid_recipients=${config.invalidRecipients.map((r) => r.text).join(',') || 'none'} ` +
    `admins=${[...config.reactivate.admins].join(',')} reply_address=${config.alert.replyAddress} fold=${config.accounts.fold}`
  )
}

/** The memory store counts in one process only: refuse to run when Haraka forks several workers. */
function refuseUnsupportedProcessModel(plugin: HarakaPlugin, config: Config): void {
  if (config.store !== 'memory') return
  const smtp = plugin.config.get('smtp.ini', 'ini') as { main?: { nodes?: unknown } } | undefined
  const nodes = smtp?.main?.nodes
  const workers = nodes === 'cpus' ? cpus().length : nodes === undefined || nodes === '' ? 1 : Number(nodes)
  if (workers > 1) {
    throw new ConfigError(
      'main.store',
      'memory',
      `smtp.ini nodes = ${String(nodes)} runs ${workers} workers, and the memory store counts in one process only; use store = redis`,
    )
  }
}
