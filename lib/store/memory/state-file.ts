/**
 * The memory store's state file, shared with the CLI: loaded and checked at start, changed under
 * a lock file by atomic writes that keep the file's owner, re-read when another process replaced it.
 */
import { accessSync, constants as fsConstants, mkdirSync, readFileSync, statSync } from 'node:fs'
import { open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { StoreError } from '..'
import { applyHeld, emptyDurable, parseDurable, toJson, type Durable } from './durable'
import { withFileLock } from '../file-lock'

/** The durable state as this process sees it, and the way to change it in the file. */
export interface StateFile {
  /** The durable state, with what another process wrote since taken in. */
  refresh(): Durable
  /** Applies `mutate` at once and resolves with its result once the change is in the file. */
  change<T>(mutate: (d: Durable) => T): Promise<T>
  /** Sets (`until` = when to forget it) or clears (null) a held-mail mark; written within HELD_FLUSH_MS. */
  noteHeld(account: string, id: string, until: number | null): void
  /** Writes the pending held-mail marks and waits for every queued write. */
  close(): Promise<void>
}

const LOCK_WAIT_MS = 5000
const LOCK_STALE_MS = 10_000
const LOCK_RETRY_MS = 3
/** How soon held-mail marks reach the file (they are counts for the CLI, not flags). */
const HELD_FLUSH_MS = 1000

/** The state of an open state file (see openStateFile). */
interface Open {
  readonly file: string
  readonly now: () => number
  /** Told of each account whose counters another process cleared (enable, reset). */
  readonly onCleared: (account: string) => void
  durable: Durable
  /** The file's stamp when this process last read or wrote it. */
  seen: string
  /** Held-mail marks not written yet: "account\0id" -> forget-at ms, or null for a release. */
  readonly pendingHeld: Map<string, { account: string; id: string; until: number | null }>
  heldTimer: NodeJS.Timeout | undefined
  /** Changes applied here but not yet in the file, replayed over what another process wrote. */
  readonly pending: ((d: Durable) => unknown)[]
  /** The in-process queue of writes: one at a time, each under the lock file. */
  queue: Promise<unknown>
  /** True while this process holds the lock and replaces the file: nobody else changes it. */
  writing: boolean
}

/**
 * Loads `file` (an absent file is an empty state) and keeps it: see StateFile. Throws
 * StoreError when the file exists but is not readable as state.
 */
export function openStateFile(file: string, now: () => number, onCleared: (account: string) => void): StateFile {
  const s: Open = {
    file,
    now,
    onCleared,
    durable: loadState(file),
    seen: fileStamp(file),
    pendingHeld: new Map(),
    heldTimer: undefined,
    pending: [],
    queue: Promise.resolve(),
    writing: false,
  }
  return {
    refresh: () => refresh(s),
    change: (mutate) => change(s, mutate),
    noteHeld: (account, id, until) => noteHeld(s, account, id, until),
    close: () => close(s),
  }
}

/** Takes in what another process wrote; counters of accounts it cleared are dropped too (onCleared). */
function refresh(s: Open): Durable {
  if (s.writing) return s.durable
  const stamp = fileStamp(s.file)
  if (stamp === s.seen) return s.durable
  const before = s.durable
  s.durable = loadState(s.file)
  s.seen = stamp
  for (const [account, at] of s.durable.cleared) {
    if (at !== before.cleared.get(account)) s.onCleared(account)
  }
  for (const mutate of s.pending) mutate(s.durable)
  for (const p of s.pendingHeld.values()) applyHeld(s.durable, p.account, p.id, p.until)
  return s.durable
}

/**
 * Applies a change to the latest durable state at once (so this process's next call sees it)
 * and resolves once it is in the file. Writes queue behind each other; the lock file
 * serialises the read-change-write of every process sharing the file (Haraka and the CLI), so
 * no change overwrites another: a change is replayed over what another process wrote.
 * Waiting for the lock never blocks the event loop.
 */
function change<T>(s: Open, mutate: (d: Durable) => T): Promise<T> {
  const result = mutate(refresh(s))
  s.pending.push(mutate)
  const run = s.queue.then(() =>
    withLock(s.file, async () => {
      refresh(s)
      const written = [...s.pending]
      const heldWritten = new Map(s.pendingHeld)
      s.writing = true
      try {
        await write(s, s.durable)
      } catch (err) {
        forget(s.pending, mutate)
        throw err
      } finally {
        s.writing = false
      }
      for (const m of written) forget(s.pending, m)
      for (const [key, p] of heldWritten) if (s.pendingHeld.get(key) === p) s.pendingHeld.delete(key)
      s.seen = fileStamp(s.file)
    }),
  )
  s.queue = run.catch(() => undefined)
  return run.then(() => result)
}

async function write(s: Open, d: Durable): Promise<void> {
  const t = s.now()
  for (const [token, p] of d.tokens) if (p.forgetAt <= t) d.tokens.delete(token)
  for (const [account, m] of d.dropBefore) if (m.until <= t) d.dropBefore.delete(account)
  await writeStateFile(s.file, toJson(d))
}

/** Notes a held-mail change in memory and writes it (with any others) a moment later. */
function noteHeld(s: Open, account: string, id: string, until: number | null): void {
  const p = { account, id, until }
  s.pendingHeld.set(`${account}\0${id}`, p)
  applyHeld(s.durable, account, id, until)
  if (s.heldTimer) return
  s.heldTimer = setTimeout(() => {
    s.heldTimer = undefined
    void flushHeld(s)
  }, HELD_FLUSH_MS)
  s.heldTimer.unref()
}

function flushHeld(s: Open): Promise<void> {
  if (s.pendingHeld.size === 0) return Promise.resolve()
  // A failed write keeps the marks pending for the next change: they only count held mail.
  return change(s, () => undefined).catch(() => undefined)
}

async function close(s: Open): Promise<void> {
  if (s.heldTimer) clearTimeout(s.heldTimer)
  s.heldTimer = undefined
  await flushHeld(s)
  await s.queue
}

function forget<T>(list: T[], item: T): void {
  const i = list.indexOf(item)
  if (i >= 0) list.splice(i, 1)
}

/**
 * Runs `work` holding `<file>.lock` (created exclusively). The critical sections are a read and
 * a write of a small file, so waiters retry every few milliseconds (on a timer: the event loop
 * keeps running); a lock older than LOCK_STALE_MS was left by a process that died and is taken
 * over. Rejects with StoreError after LOCK_WAIT_MS.
 */
async function withLock<T>(file: string, work: () => Promise<T>): Promise<T> {
  try {
    mkdirSync(dirname(file), { recursive: true })
  } catch (err) {
    throw new StoreError(`cannot create the directory of ${file}: ${(err as Error).message}`, {
      cause: err,
      failure: 'file',
    })
  }
  const owner = ownerFor(file)
  return withFileLock(file, work, {
    waitMs: LOCK_WAIT_MS,
    retryMs: LOCK_RETRY_MS,
    staleMs: LOCK_STALE_MS,
    what: file,
    ...(owner.chown ? { owner } : {}),
  })
}

/** Who must own a file written at `file`: its present owner and mode, else its directory's owner. */
interface Owner {
  uid: number
  gid: number
  mode: number
  /** True when this process must fchown to keep that owner. */
  chown: boolean
}

function ownerFor(file: string): Owner {
  const euid = process.geteuid?.() ?? -1
  const egid = process.getegid?.() ?? -1
  let s
  try {
    s = statSync(file)
  } catch {
    // A new file: root gives it the directory's owner (the user Haraka runs as, once set up).
    if (euid !== 0) return { uid: euid, gid: egid, mode: 0o600, chown: false }
    try {
      const dir = statSync(dirname(file))
      return { uid: dir.uid, gid: dir.gid, mode: 0o600, chown: dir.uid !== 0 || dir.gid !== egid }
    } catch {
      return { uid: euid, gid: egid, mode: 0o600, chown: false }
    }
  }
  return { uid: s.uid, gid: s.gid, mode: s.mode & 0o777, chown: s.uid !== euid || s.gid !== egid }
}

/**
 * Replaces `file` with `text` atomically (temporary file, fsync, rename), keeping the file's
 * owner, group and mode: run as root (the CLI under sudo), the new file is chowned back to the
 * user Haraka runs as. Rejects with StoreError, leaving the file untouched, when the owner
 * cannot be kept.
 */
async function writeStateFile(file: string, text: string): Promise<void> {
  const owner = ownerFor(file)
  const tmp = `${file}.${process.pid}.tmp`
  let fh
  try {
    fh = await open(tmp, 'w', 0o600)
  } catch (err) {
    throw new StoreError(`cannot write ${file}: ${(err as Error).message}`, { cause: err, failure: 'file' })
  }
  try {
    if (owner.chown) {
      try {
        await fh.chown(owner.uid, owner.gid)
      } catch (err) {
        throw new StoreError(
          `cannot keep the owner of ${file} (uid ${owner.uid}, gid ${owner.gid}): ${(err as Error).message}; ` +
            `nothing was changed: run this as that user (e.g. sudo -u '#${owner.uid}') or as root`,
          { cause: err, failure: 'file' },
        )
      }
    }
    await fh.chmod(owner.mode)
    await fh.writeFile(text)
    await fh.sync()
    await fh.close()
    fh = undefined
    await rename(tmp, file)
  } catch (err) {
    await fh?.close().catch(() => undefined)
    await unlink(tmp).catch(() => undefined)
    throw err instanceof StoreError
      ? err
      : new StoreError(`cannot write ${file}: ${(err as Error).message}`, { cause: err, failure: 'file' })
  }
}

/**
 * The startup check of a state file: it must read as state, and this process must be able to
 * read and replace it (read and write on the file, write on its directory). Creates the file,
 * empty, when it is missing. Rejects with StoreError naming the file and what to do.
 */
export async function checkStateFile(file: string): Promise<void> {
  const who = `uid ${process.getuid?.() ?? '?'} gid ${process.getgid?.() ?? '?'}`
  const fix = `give the user Haraka runs as (${who}) read and write access to the file and write access to its directory (e.g. chown that user ${file} ${dirname(file)}), or set [main] state_file to a path it can write`
  try {
    loadState(file)
  } catch (err) {
    const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code
    throw code === 'EACCES' || code === 'EPERM'
      ? new StoreError(`${(err as Error).message}; ${fix}`, { cause: err, failure: 'file' })
      : err
  }
  try {
    mkdirSync(dirname(file), { recursive: true })
    accessSync(dirname(file), fsConstants.W_OK | fsConstants.X_OK)
  } catch (err) {
    throw new StoreError(`the directory of ${file} is not writable: ${(err as Error).message}; ${fix}`, {
      cause: err,
      failure: 'file',
    })
  }
  let exists = true
  try {
    accessSync(file, fsConstants.R_OK | fsConstants.W_OK)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new StoreError(`${file} is not readable and writable: ${(err as Error).message}; ${fix}`, {
        cause: err,
        failure: 'file',
      })
    exists = false
  }
  if (exists) return
  try {
    await withLock(file, async () => {
      if (fileStamp(file) === 'missing') await writeStateFile(file, toJson(emptyDurable()))
    })
  } catch (err) {
    throw new StoreError(`${(err as Error).message}; ${fix}`, { cause: err, failure: 'file' })
  }
}

/** Changes whenever another process replaces the file (rename gives a new inode). */
function fileStamp(file: string): string {
  try {
    const s = statSync(file)
    return `${s.ino}:${s.mtimeMs}:${s.size}`
  } catch {
    return 'missing'
  }
}

function loadState(file: string): Durable {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyDurable()
    throw new StoreError(`cannot read ${file}: ${(err as Error).message}`, { cause: err, failure: 'file' })
  }
  return parseDurable(file, text)
}
