/** The DISABLE script: set an account's disable record unless it has one, with its encoder and decoder. */
import { accountKeys } from '../../keys'
import type { DisableInput } from '../..'
import { flag, script, type ScriptCall } from './script'

const SOURCE = `
-- KEYS[1]  disabled   hash: the disable record
-- ARGV     field, value pairs of the record; "at" is filled in from Redis TIME
-- Reply: 1 when this call disabled the account, 0 when it was disabled already
if redis.replicate_commands then pcall(redis.replicate_commands) end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'at', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), unpack(ARGV))
return 1
`

/** disable: set the disable record unless the account is disabled already. */
export const DISABLE = {
  ...script('disable', SOURCE),

  /** KEYS and ARGV for disabling by hand (the record's fields as pairs; the script adds "at"). */
  encode(input: DisableInput): ScriptCall {
    const k = accountKeys(input.account)
    const fields = ['account', input.account, 'reason', input.reason, 'by', input.by, 'incident', input.incident]
    return { keys: [k.disabled], args: fields }
  },

  /** True when this call disabled the account; throws StoreError (failure 'reply') unless the reply is 0 or 1. */
  decode(reply: unknown): boolean {
    return flag('disable', reply)
  },
}
