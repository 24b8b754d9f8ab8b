import { createHash } from 'node:crypto'

/** A Lua script and its SHA1, as EVALSHA needs it. */
export interface Script {
  readonly name: string
  readonly source: string
  readonly sha: string
}

function script(name: string, source: string): Script {
  return { name, source, sha: createHash('sha1').update(source).digest('hex') }
}

/**
 * record: count one message for an account and check every limit, in one atomic step.
 * The clock is Redis TIME, so every server that shares the store agrees on the windows.
 */
export const RECORD = script(
  'record',
  `
-- KEYS[1]  counts     hash: field "<bucketMs>.<index>.<m|r>" -> count
-- KEYS[2]  evidence   list of JSON message summaries, newest first
-- KEYS[3]  disabled   hash: the disable record (exists = disabled)
-- KEYS[4]  monitored  string with TTL: monitor mode already reported this window
-- ARGV[1]  mode       enforce | monitor
-- ARGV[2]  rcpts      recipients of this message
-- ARGV[3]  summary    JSON summary of this message (evidence)
-- ARGV[4]  cap        how many summaries to keep
-- ARGV[5]  incident   id stored in the disable record if this call disables
-- ARGV[6]  account    account name stored in the disable record
-- ARGV[7]  rules      JSON description of the rules, stored in the disable record
-- ARGV[8]  tokenHash  SHA-256 (hex) of the reactivation token, stored in the disable record
--                     if this call disables (the token itself is never stored)
-- ARGV[9]  tokenTtl   ms the token stays valid from now
-- ARGV[10] n          number of rules; then 4 values per rule:
--                     kind (m|r), max, bucketMs, buckets
-- Reply: { status, flipped, over, nowMs, total_1, ..., total_n }, and for "refused" also
--        the evidence (JSON array) and the incident id; "disabled" is
--        { "disabled", 0, 0, 0, by } (who disabled the account); an "ok" that flipped the
--        monitored marker ends with the evidence (JSON array) for the monitor report
--   status   "ok" counted (totals include it) | "refused" over a limit in enforce mode, not
--            counted (totals exclude it) | "disabled" already disabled in enforce mode
--   flipped  1 when this call set the disabled flag (enforce) or the monitored marker (monitor)
--   over     1-based index of the first rule the message would exceed, 0 when none
if redis.replicate_commands then pcall(redis.replicate_commands) end
local mode = ARGV[1]
if mode == 'enforce' and redis.call('EXISTS', KEYS[3]) == 1 then
  return { 'disabled', 0, 0, 0, redis.call('HGET', KEYS[3], 'by') or '' }
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rcpts = tonumber(ARGV[2])
local n = tonumber(ARGV[10])
local rules, current, ttl = {}, {}, 0
for i = 1, n do
  local b = 10 + (i - 1) * 4
  local r = { kind = ARGV[b + 1], max = tonumber(ARGV[b + 2]), bucket = tonumber(ARGV[b + 3]),
              buckets = tonumber(ARGV[b + 4]), total = 0 }
  r.cur = math.floor(now / r.bucket)
  r.first = r.cur - r.buckets + 1
  r.start = r.first * r.bucket
  r.add = (r.kind == 'm') and 1 or rcpts
  current[r.bucket .. '.' .. r.kind] = true
  if r.bucket * (r.buckets + 1) > ttl then ttl = r.bucket * (r.buckets + 1) end
  rules[i] = r
end
-- A field "<b>.<i>.<k>" holds what was counted in [i*b, (i+1)*b). A rule sums its own bucket
-- size's fields from its first bucket on; a field of a size no current rule of its kind writes
-- (left over from an earlier configuration) counts toward each rule of its kind whose window it
-- overlaps at all. A field that counts toward no rule is deleted.
local stale = {}
local all = redis.call('HGETALL', KEYS[1])
for j = 1, #all, 2 do
  local f = all[j]
  local bucket, idx, kind = string.match(f, '^(%d+)%.(%d+)%.(%a)$')
  bucket, idx = tonumber(bucket), tonumber(idx)
  local live = false
  if bucket ~= nil then
    local v = tonumber(all[j + 1]) or 0
    local leftover = not current[bucket .. '.' .. kind]
    for i = 1, n do
      local r = rules[i]
      -- Buckets ahead of now (after a clock step back) still count: an attacker gains nothing.
      if r.kind == kind and ((r.bucket == bucket and idx >= r.first)
          or (leftover and (idx + 1) * bucket > r.start)) then
        r.total = r.total + v
        live = true
      end
    end
  end
  if not live then stale[#stale + 1] = f end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
local over = 0
for i = 1, n do
  if rules[i].total + rules[i].add > rules[i].max then over = i break end
end
local function totals(reply)
  for i = 1, n do reply[#reply + 1] = rules[i].total end
  return reply
end
if ttl == 0 then ttl = 60000 end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('PEXPIRE', KEYS[2], ttl)
if over > 0 and mode == 'enforce' then
  local csv = {}
  for i = 1, n do csv[i] = tostring(rules[i].total) end
  redis.call('HSET', KEYS[3], 'account', ARGV[6], 'by', 'limit', 'reason', 'limit', 'at', now,
    'incident', ARGV[5], 'rules', ARGV[7], 'over', over, 'totals', table.concat(csv, ','),
    'token_sha256', ARGV[8], 'token_expires', now + tonumber(ARGV[9]),
    'evidence', '[' .. table.concat(redis.call('LRANGE', KEYS[2], 0, -1), ',') .. ']')
  local reply = totals({ 'refused', 1, over, now })
  reply[#reply + 1] = redis.call('HGET', KEYS[3], 'evidence')
  reply[#reply + 1] = ARGV[5]
  return reply
end
local seen = {}
for i = 1, n do
  local r = rules[i]
  local f = r.bucket .. '.' .. r.cur .. '.' .. r.kind
  if not seen[f] and r.add > 0 then
    redis.call('HINCRBY', KEYS[1], f, r.add)
    seen[f] = true
  end
  r.total = r.total + r.add
end
redis.call('PEXPIRE', KEYS[1], ttl)
local flipped = 0
if over > 0 then
  local window = rules[over].bucket * rules[over].buckets
  if redis.call('SET', KEYS[4], now, 'PX', window, 'NX') then flipped = 1 end
end
local reply = totals({ 'ok', flipped, over, now })
if flipped == 1 then
  reply[#reply + 1] = '[' .. table.concat(redis.call('LRANGE', KEYS[2], 0, -1), ',') .. ']'
end
return reply
`,
)

/** disable: set the disable record unless the account is disabled already. */
export const DISABLE = script(
  'disable',
  `
-- KEYS[1]  disabled   hash: the disable record
-- ARGV     field, value pairs of the record; "at" is filled in from Redis TIME
-- Reply: 1 when this call disabled the account, 0 when it was disabled already
if redis.replicate_commands then pcall(redis.replicate_commands) end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'at', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), unpack(ARGV))
return 1
`,
)

/** enable: clear the disable record and every counter of the account; leave a tombstone. */
export const ENABLE = script(
  'enable',
  `
-- KEYS[1]  disabled   KEYS[2] counts   KEYS[3] evidence   KEYS[4] monitored
-- KEYS[5]  enabled    hash, the tombstone: incident cleared ('' when none), at (store-clock ms)
-- Reply: 1 when the account was disabled, 0 when it was not
if redis.replicate_commands then pcall(redis.replicate_commands) end
local was = redis.call('EXISTS', KEYS[1])
local incident = redis.call('HGET', KEYS[1], 'incident') or ''
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local t = redis.call('TIME')
redis.call('HSET', KEYS[5], 'incident', incident, 'at', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
return was
`,
)

/** redeem: re-enable an account with the token of its current incident, once. */
export const REDEEM = script(
  'redeem',
  `
-- KEYS[1]  disabled   KEYS[2] counts   KEYS[3] evidence   KEYS[4] monitored
-- KEYS[5]  enabled    hash, the tombstone written on success (see enable)
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
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[5], 'incident', rec[3] or '', 'at', now)
return 'ok'
`,
)

/** drop-held: mark the account's queued mail, counted until now, for dropping. */
export const DROP_HELD = script(
  'drop-held',
  `
-- KEYS[1]  drop-before  string: store-clock ms   KEYS[2] held   set of held message ids
-- ARGV[1]  ttl          ms the mark is kept (the longest time mail is held)
-- Reply: the number of messages held at this moment
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
redis.call('SET', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 'PX', ARGV[1])
return redis.call('SCARD', KEYS[2])
`,
)

/**
 * reassert: put back a disable record that Redis lost, unless an enable removed it.
 * A journal (lib/store/journal/) calls it for a record it holds and Redis no longer has.
 */
export const REASSERT = script(
  'reassert',
  `
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
`,
)

/** Every script, for loading and for the SHA test. */
export const SCRIPTS: readonly Script[] = [RECORD, DISABLE, ENABLE, REDEEM, DROP_HELD, REASSERT]
