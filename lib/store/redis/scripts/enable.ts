/** The ENABLE script: clear an account's disable record and counters, leave a tombstone; encoder and decoder. */
import { accountKeys, countingKeys } from '../../keys'
import { flag, script, type ScriptCall } from './script'

const SOURCE = `
-- KEYS[1]  disabled   hash, the disable record
-- KEYS[2]  enabled    hash, the tombstone: incident cleared ('' when none), at (store-clock ms)
-- KEYS[3..] what the account's mail counted (countingKeys)
-- Reply: 1 when the account was disabled, 0 when it was not
if redis.replicate_commands then pcall(redis.replicate_commands) end
local was = redis.call('EXISTS', KEYS[1])
local incident = redis.call('HGET', KEYS[1], 'incident') or ''
redis.call('DEL', KEYS[1], unpack(KEYS, 3))
local t = redis.call('TIME')
redis.call('HSET', KEYS[2], 'incident', incident, 'at', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return was
`

/** enable: clear the disable record and every counter of the account; leave a tombstone. */
export const ENABLE = {
  ...script('enable', SOURCE),

  /** KEYS (no ARGV) for enabling `account`. */
  encode(account: string): ScriptCall {
    const k = accountKeys(account)
    return { keys: [k.disabled, k.enabled, ...countingKeys(k)], args: [] }
  },

  /** True when the account was disabled; throws StoreError (failure 'reply') unless the reply is 0 or 1. */
  decode(reply: unknown): boolean {
    return flag('enable', reply)
  },
}
