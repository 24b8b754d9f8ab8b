/** The REDEEM script: re-enable an account with its current incident's token, once; encoder and decoder. */
import { accountKeys, countingKeys } from '../../keys'
import type { RedeemResult } from '../..'
import { tokenDigest } from '../../../ids'
import { script, unexpectedReply, type ScriptCall } from './script'

const SOURCE = `
-- KEYS[1]  disabled   hash, the disable record
-- KEYS[2]  enabled    hash, the tombstone written on success (see enable)
-- KEYS[3..] what the account's mail counted (countingKeys), cleared on success
-- ARGV[1]  tokenHash  SHA-256 (hex) of the token from the reply
-- Reply: "ok" (the account is enabled, counters cleared) | "not-disabled" | "mismatch" (not
--        this incident's token: made up, or from an earlier incident) | "expired"
if redis.replicate_commands then pcall(redis.replicate_commands) end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'not-disabled' end
local rec = redis.call('HMGET', KEYS[1], 'token_sha256', 'token_expires', 'incident')
if not rec[1] or rec[1] == '' or rec[1] ~= ARGV[1] then return 'mismatch' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(rec[2] or 0) < now then return 'expired' end
redis.call('DEL', KEYS[1], unpack(KEYS, 3))
redis.call('HSET', KEYS[2], 'incident', rec[3] or '', 'at', now)
return 'ok'
`

/** redeem: re-enable an account with the token of its current incident, once. */
export const REDEEM = {
  ...script('redeem', SOURCE),

  /** KEYS and ARGV for redeeming `token` for `account` (only the token's digest is sent). */
  encode(account: string, token: string): ScriptCall {
    const k = accountKeys(account)
    return { keys: [k.disabled, k.enabled, ...countingKeys(k)], args: [tokenDigest(token)] }
  },

  /** The RedeemResult; throws StoreError (failure 'reply') for any other reply. */
  decode(reply: unknown): RedeemResult {
    const result = String(reply)
    if (result !== 'ok' && result !== 'not-disabled' && result !== 'mismatch' && result !== 'expired') {
      throw unexpectedReply('redeem', result)
    }
    return result
  },
}
