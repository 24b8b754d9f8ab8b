/** The lock file that serialises the read-change-write of a small file shared by processes. */
import { closeSync, fchownSync, openSync, statSync, unlinkSync } from 'node:fs'
import { StoreError } from '.'

export interface FileLockOptions {
  /** How long to wait for the lock before rejecting with StoreError. */
  readonly waitMs: number
  /** How often a waiter tries again (on a timer: the event loop keeps running). */
  readonly retryMs: number
  /** A lock older than this was left by a process that died, and is taken over. */
  readonly staleMs: number
  /** The file as error messages name it, e.g. "the journal /path". */
  readonly what: string
  /** Who must own the lock file (a root CLI's lock must stay removable by Haraka's user). */
  readonly owner?: { readonly uid: number; readonly gid: number }
}

/** Runs `work` holding `<file>.lock`, created exclusively; rejects with StoreError after waitMs. */
export async function withFileLock<T>(file: string, work: () => Promise<T>, options: FileLockOptions): Promise<T> {
  const lock = `${file}.lock`
  const deadline = Date.now() + options.waitMs
  while (!take(lock, options)) {
    try {
      if (Date.now() - statSync(lock).mtimeMs > options.staleMs) unlinkSync(lock)
    } catch {
      // gone already: try again
    }
    if (Date.now() > deadline)
      throw new StoreError(`${lock} has been held by another process for ${options.waitMs} ms`, { failure: 'file' })
    await new Promise((resolve) => setTimeout(resolve, options.retryMs))
  }
  try {
    return await work()
  } finally {
    try {
      unlinkSync(lock)
    } catch {
      // removed by someone who thought it stale: nothing to release
    }
  }
}

/** Creates the lock file; false when another process holds it. */
function take(lock: string, { what, owner }: FileLockOptions): boolean {
  let fd: number
  try {
    fd = openSync(lock, 'wx', 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw new StoreError(`cannot lock ${what}: ${(err as Error).message}`, { cause: err, failure: 'file' })
  }
  try {
    if (owner) fchownSync(fd, owner.uid, owner.gid)
  } catch {
    // only a lock: removed after the work
  } finally {
    closeSync(fd)
  }
  return true
}
