/**
 * The journal file: its JSON format, and changes to it as read-merge-writes under a lock file,
 * written atomically with the owner kept, so that every Haraka process of a server shares it.
 */
import { chown, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { StoreError } from '..'
import type { Logger } from '../redis'
import { withFileLock } from '../file-lock'

/** One journaled disable record. */
export interface JournalEntry {
  readonly incident: string
  /** The disable time (store-clock ms). */
  readonly at: number
  /** The record's fields as Redis keeps them, written back as they are. */
  readonly fields: Readonly<Record<string, string>>
}

/** The journal's durable part (a seam: unit tests pass one in memory). */
export interface JournalFile {
  /** What the file holds now; an absent file is an empty journal. */
  load(): Promise<Map<string, JournalEntry>>
  /** Applies `change` to what the file holds now and writes it when `change` answers true; answers the result. */
  update(change: (entries: Map<string, JournalEntry>) => boolean): Promise<Map<string, JournalEntry>>
  /** Changes whenever the file was replaced (by any process). */
  stamp(): Promise<string>
}

const LOCK_WAIT_MS = 2000
const LOCK_STALE_MS = 10_000
const FORMAT = 1

/**
 * The journal as one JSON file shared by every Haraka process of this server. Each change is a
 * read-merge-write under `<file>.lock` (created exclusively), written to a temporary file and
 * renamed, so readers never see half a file and no process overwrites another's entries. The
 * file is created on the first change (after Haraka dropped privileges), mode 0600.
 */
export function createJournalFile(file: string, log: Logger): JournalFile {
  let damagedReported = ''

  async function read(): Promise<Map<string, JournalEntry>> {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
      throw new StoreError(`cannot read the journal ${file}: ${(err as Error).message}`, {
        cause: err,
        failure: 'file',
      })
    }
    const entries = parseJournal(text)
    if (entries === null) {
      if (damagedReported !== text)
        log.error(
          `journal ${file} is damaged (not a hijack-guard journal); it is kept aside as ${file}.damaged at the next change`,
        )
      damagedReported = text
      throw new DamagedJournal()
    }
    return entries
  }

  async function load(): Promise<Map<string, JournalEntry>> {
    try {
      return await read()
    } catch (err) {
      if (err instanceof DamagedJournal) return new Map()
      throw err
    }
  }

  return { load, update: (change) => update(file, read, change), stamp: () => stampOf(file) }
}

/** The read-merge-write of one change (see createJournalFile); a damaged file is moved aside. */
async function update(
  file: string,
  read: () => Promise<Map<string, JournalEntry>>,
  change: (entries: Map<string, JournalEntry>) => boolean,
): Promise<Map<string, JournalEntry>> {
  await mkdir(dirname(file), { recursive: true }).catch(() => undefined)
  return withLock(file, async () => {
    let entries: Map<string, JournalEntry>
    try {
      entries = await read()
    } catch (err) {
      if (!(err instanceof DamagedJournal)) throw err
      await rename(file, `${file}.damaged`)
      entries = new Map()
    }
    if (!change(entries)) return entries
    const tmp = `${file}.${process.pid}.tmp`
    try {
      await writeFile(tmp, serializeJournal(entries), { mode: 0o600 })
      await keepOwner(tmp, file)
      await rename(tmp, file)
    } catch (err) {
      await unlink(tmp).catch(() => undefined)
      throw new StoreError(`cannot write the journal ${file}: ${(err as Error).message}`, {
        cause: err,
        failure: 'file',
      })
    }
    return entries
  })
}

async function stampOf(file: string): Promise<string> {
  try {
    const s = await stat(file)
    return `${s.ino}:${s.mtimeMs}:${s.size}`
  } catch {
    return 'missing'
  }
}

class DamagedJournal extends Error {}

/**
 * Run as root (before Haraka drops privileges, or the CLI under sudo), gives the new file the
 * owner of the file it replaces, or of its directory: the user Haraka runs as must read it.
 */
async function keepOwner(tmp: string, file: string): Promise<void> {
  if (process.getuid?.() !== 0) return
  const owner = await stat(file).catch(() => stat(dirname(file)))
  await chown(tmp, owner.uid, owner.gid)
}

/** The journal file's text for these entries. */
export function serializeJournal(entries: ReadonlyMap<string, JournalEntry>): string {
  return `${JSON.stringify({ format: FORMAT, accounts: Object.fromEntries(entries) }, null, 1)}\n`
}

/** The entries of a journal file's text, or null when it is not one; bad entries are skipped. */
export function parseJournal(text: string): Map<string, JournalEntry> | null {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    return null
  }
  if (!data || typeof data !== 'object') return null
  const accounts = (data as { accounts?: unknown }).accounts
  if ((data as { format?: unknown }).format !== FORMAT || !accounts || typeof accounts !== 'object') return null
  const entries = new Map<string, JournalEntry>()
  for (const [account, value] of Object.entries(accounts as Record<string, unknown>)) {
    const fields = (value as { fields?: unknown } | null)?.fields
    if (!fields || typeof fields !== 'object') continue
    const clean: Record<string, string> = {}
    for (const [k, v] of Object.entries(fields as Record<string, unknown>)) if (typeof v === 'string') clean[k] = v
    if (Object.keys(clean).length === 0) continue
    entries.set(account, toEntry(clean))
  }
  return entries
}

/** The journal entry of a disable record's stored fields. */
export function toEntry(fields: Readonly<Record<string, string>>): JournalEntry {
  return { incident: fields.incident ?? '', at: Number(fields.at) || 0, fields: { ...fields } }
}

/** Runs `work` holding the journal's lock file. */
function withLock<T>(file: string, work: () => Promise<T>): Promise<T> {
  return withFileLock(file, work, {
    waitMs: LOCK_WAIT_MS,
    retryMs: 5,
    staleMs: LOCK_STALE_MS,
    what: `the journal ${file}`,
  })
}
