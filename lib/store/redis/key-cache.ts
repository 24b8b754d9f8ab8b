/**
 * A bounded map from Redis keys to the values last read from them, kept true by the one who
 * feeds it invalidations (tracking.ts). A read that an invalidation or a clear overtook while it
 * was on its way is answered but never stored: begin() before sending the read, settle() with its
 * reply.
 */

/** A read on its way; settle() stores its reply only while `valid` holds. */
export interface Ticket {
  readonly key: string
  valid: boolean
}

/** See the module comment. */
export interface KeyCache<T> {
  /** The value stored for `key`, or undefined; a hit makes it the most recently used. */
  get(key: string): T | undefined
  /** Registers a read of `key` about to be sent. */
  begin(key: string): Ticket
  /** Ends the read; stores `value` when nothing invalidated the key or cleared the cache since begin(). True when stored. */
  settle(ticket: Ticket, value: T): boolean
  /** Ends a read that failed; nothing is stored. */
  abandon(ticket: Ticket): void
  /** Forgets `key` and voids the reads of it on their way. */
  invalidate(key: string): void
  /** Forgets everything and voids every read on its way. */
  clear(): void
  /** How many keys are stored. */
  size(): number
}

/**
 * An empty KeyCache that holds at most `maxEntries` keys; storing one more drops the least
 * recently used. Throws RangeError when maxEntries is not a positive integer.
 */
export function createKeyCache<T>(maxEntries: number): KeyCache<T> {
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`maxEntries ${maxEntries}`)
  // A Map iterates in insertion order: re-inserting on every hit keeps the oldest first.
  const values = new Map<string, T>()
  const reading = new Map<string, Set<Ticket>>()

  const end = (ticket: Ticket): void => {
    const tickets = reading.get(ticket.key)
    tickets?.delete(ticket)
    if (tickets?.size === 0) reading.delete(ticket.key)
  }

  return {
    get(key: string): T | undefined {
      const value = values.get(key)
      if (value === undefined) return undefined
      values.delete(key)
      values.set(key, value)
      return value
    },
    begin(key: string): Ticket {
      const ticket: Ticket = { key, valid: true }
      const tickets = reading.get(key)
      if (tickets) tickets.add(ticket)
      else reading.set(key, new Set([ticket]))
      return ticket
    },
    settle(ticket: Ticket, value: T): boolean {
      end(ticket)
      if (!ticket.valid) return false
      ticket.valid = false
      values.delete(ticket.key)
      values.set(ticket.key, value)
      if (values.size > maxEntries) {
        const oldest = values.keys().next()
        if (!oldest.done) values.delete(oldest.value)
      }
      return true
    },
    abandon(ticket: Ticket): void {
      end(ticket)
      ticket.valid = false
    },
    invalidate(key: string): void {
      values.delete(key)
      for (const ticket of reading.get(key) ?? []) ticket.valid = false
      reading.delete(key)
    },
    clear(): void {
      values.clear()
      for (const tickets of reading.values()) for (const ticket of tickets) ticket.valid = false
      reading.clear()
    },
    size: () => values.size,
  }
}
