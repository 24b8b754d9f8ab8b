/** The AUTH_FAILURE script: count one failed AUTH of an account in a sliding window; encoder and decoder. */
import { accountKeys } from '../../keys'
import { AUTH_SOURCES_CAP, type AuthFailureInput, type AuthFailureResult } from '../..'
import { randomId } from '../../../ids'
import { script, unexpectedReply, type ScriptCall } from './script'

const SOURCE = `
-- KEYS[1]  failures   sorted set: one member per failed AUTH, score = store-clock ms
-- KEYS[2]  sources    hash: client address -> ms of its last failure, capped
-- KEYS[3]  alerted    string: set (NX, PX window) by the failure that reached the limit
-- ARGV[1]  max        ARGV[2] windowMs   ARGV[3] source   ARGV[4] nonce (unique member)
-- ARGV[5]  sources cap
-- Reply: { count, alert (0|1), until (ms), at (ms), source, source, ... }
if redis.replicate_commands then pcall(redis.replicate_commands) end
local max = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[4])
-- Only the newest max failures matter: the limit is reached, and the oldest of them says when it clears.
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(max + 1))
redis.call('PEXPIRE', KEYS[1], window)
local count = redis.call('ZCARD', KEYS[1])
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local until_ms = tonumber(oldest[2] or now) + window
-- The sources: forget the ones older than the window, then keep at most the cap.
local seen = redis.call('HGETALL', KEYS[2])
local live = 0
for i = 1, #seen, 2 do
  if tonumber(seen[i + 1]) <= now - window then redis.call('HDEL', KEYS[2], seen[i]) else live = live + 1 end
end
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 or live < tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[2], ARGV[3], now)
end
redis.call('PEXPIRE', KEYS[2], window)
local alert = 0
if count >= max and redis.call('SET', KEYS[3], now, 'NX', 'PX', window) then alert = 1 end
local reply = { count, alert, until_ms, now }
for _, s in ipairs(redis.call('HKEYS', KEYS[2])) do reply[#reply + 1] = s end
return reply
`

/** authFailure: count one failed AUTH in the window, and say whether this one is to alert. */
export const AUTH_FAILURE = {
  ...script('auth-failure', SOURCE),

  /** KEYS and ARGV for one failed AUTH (a random nonce makes each failure its own member). */
  encode(input: AuthFailureInput): ScriptCall {
    const k = accountKeys(input.account)
    return {
      keys: [k.authFailures, k.authSources, k.authAlerted],
      args: [String(input.max), String(input.windowMs), input.source, randomId(), String(AUTH_SOURCES_CAP)],
    }
  },

  /** The AuthFailureResult; throws StoreError (failure 'reply') for any other reply. */
  decode(reply: unknown, input: AuthFailureInput): AuthFailureResult {
    if (!Array.isArray(reply) || reply.length < 4) throw unexpectedReply('auth-failure', reply)
    const [count, alert, until, at, ...sources] = reply as unknown[]
    if (
      typeof count !== 'number' ||
      (alert !== 0 && alert !== 1) ||
      typeof until !== 'number' ||
      typeof at !== 'number'
    )
      throw unexpectedReply('auth-failure', reply)
    return {
      count,
      reached: count >= input.max,
      alert: alert === 1,
      sources: sources.map(String).sort(),
      until,
      at,
    }
  },
}
