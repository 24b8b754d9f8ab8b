/** The DROP_HELD script: mark an account's queued mail for dropping, with its encoder and decoder. */
import { accountKeys } from '../../keys'
import { script, unexpectedReply, type ScriptCall } from './script'

const SOURCE = `
-- KEYS[1]  drop-before  string: store-clock ms   KEYS[2] held   set of held message ids
-- ARGV[1]  ttl          ms the mark is kept (the longest time mail is held)
-- Reply: the number of messages held at this moment
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
redis.call('SET', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 'PX', ARGV[1])
return redis.call('SCARD', KEYS[2])
`

/** drop-held: mark the account's queued mail, counted until now, for dropping. */
export const DROP_HELD = {
  ...script('drop-held', SOURCE),

  /** KEYS and ARGV for marking `account`'s held mail, the mark kept `ttlMs`. */
  encode(account: string, ttlMs: number): ScriptCall {
    const k = accountKeys(account)
    return { keys: [k.dropBefore, k.held], args: [String(ttlMs)] }
  },

  /** How many messages were held; throws StoreError (failure 'reply') unless the reply is a count. */
  decode(reply: unknown): number {
    if (typeof reply !== 'number' || !Number.isInteger(reply) || reply < 0) throw unexpectedReply('drop-held', reply)
    return reply
  },
}
