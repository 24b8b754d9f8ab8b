/** What every Lua script module shares: the Script record, its SHA, and the error for an unexpected reply. */
import { createHash } from 'node:crypto'
import { StoreError } from '../..'

/** A Lua script and its SHA1, as EVALSHA needs it. */
export interface Script {
  readonly name: string
  readonly source: string
  readonly sha: string
}

/** A script's KEYS and ARGV for one call, in the order its contract header lists them. */
export interface ScriptCall {
  readonly keys: string[]
  readonly args: string[]
}

/** The Script for `source`, its SHA1 computed from the source. */
export function script(name: string, source: string): Script {
  return { name, source, sha: createHash('sha1').update(source).digest('hex') }
}

/** The StoreError (failure 'reply') for a reply that breaks the script's contract. */
export function unexpectedReply(name: string, reply: unknown): StoreError {
  return new StoreError(`${name}: unexpected reply ${JSON.stringify(reply)}`, { failure: 'reply' })
}

/** A 0/1 integer reply as a boolean; throws unexpectedReply for anything else. */
export function flag(name: string, reply: unknown): boolean {
  if (reply === 0 || reply === 1) return reply === 1
  throw unexpectedReply(name, reply)
}
