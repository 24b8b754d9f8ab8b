/** The REASSERT script: put back a disable record Redis lost unless an enable removed it; encoder and decoder. */
import { accountKeys } from '../../keys'
import { StoreError } from '../..'
import { script, unexpectedReply, type ScriptCall } from './script'

const SOURCE = `
-- KEYS[1]  disabled   hash: the disable record
-- KEYS[2]  enabled    hash, the tombstone of the last enable (see enable)
-- ARGV[1]  incident   the journaled record's incident id
-- ARGV[2]  at         the journaled record's disable time (store-clock ms)
-- ARGV[3..]           field, value pairs of the journaled record, written as they are
-- Reply: { "present", field, value, ... } a record is there (this or a later incident): nothing
--          written, its fields returned
--        { "enabled" }  the tombstone names this incident, or an enable came after its disable
--        { "restored" } the record was lost: written back
if redis.call('EXISTS', KEYS[1]) == 1 then
  local reply = redis.call('HGETALL', KEYS[1])
  table.insert(reply, 1, 'present')
  return reply
end
local tomb = redis.call('HMGET', KEYS[2], 'incident', 'at')
if (ARGV[1] ~= '' and tomb[1] == ARGV[1]) or (tomb[2] and tonumber(tomb[2]) > (tonumber(ARGV[2]) or 0)) then
  return { 'enabled' }
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return { 'restored' }
`

/** What the REASSERT script answered: the fields of a record that is there, or what it did. */
export type ReassertReply =
  | { readonly state: 'present'; readonly fields: Record<string, string> }
  | { readonly state: 'enabled' }
  | { readonly state: 'restored' }

/**
 * reassert: put back a disable record that Redis lost, unless an enable removed it.
 * A journal (lib/store/journal/) calls it for a record it holds and Redis no longer has.
 */
export const REASSERT = {
  ...script('reassert', SOURCE),

  /** KEYS and ARGV for writing back `fields` as `account`'s record; throws StoreError when `fields` is empty. */
  encode(account: string, fields: Readonly<Record<string, string>>): ScriptCall {
    const k = accountKeys(account)
    const pairs = Object.entries(fields).flat()
    if (pairs.length === 0) throw new StoreError(`reassert: no fields for ${JSON.stringify(account)}`)
    return { keys: [k.disabled, k.enabled], args: [fields.incident ?? '', fields.at ?? '0', ...pairs] }
  },

  /** The ReassertReply; throws StoreError (failure 'reply') for another state or a "present" without fields. */
  decode(reply: unknown): ReassertReply {
    const [state, ...rest] = Array.isArray(reply) ? (reply as unknown[]).map(String) : []
    if (state === 'enabled' || state === 'restored') return { state }
    if (state === 'present') {
      const fields: Record<string, string> = {}
      for (let i = 0; i + 1 < rest.length; i += 2) fields[rest[i] as string] = rest[i + 1] as string
      if (Object.keys(fields).length > 0) return { state, fields }
    }
    throw unexpectedReply('reassert', reply)
  },
}
