/** The RECORD script: count one message and check every limit in one atomic step, with its encoder and decoder. */
import { accountKeys } from '../../keys'
import {
  describeRules,
  EVIDENCE_CAP,
  parseEvidence,
  windowCount,
  type DisabledRecord,
  type RecordInput,
  type RecordResult,
} from '../..'
import { randomId, tokenDigest } from '../../../ids'
import { script, unexpectedReply, type ScriptCall } from './script'

/** A string or integer reply item as text, `fallback` when it is missing; throws unexpectedReply otherwise. */
function text(item: unknown, fallback: string, reply: unknown): string {
  if (item === undefined || item === null) return fallback
  if (typeof item === 'string' || typeof item === 'number') return String(item)
  throw unexpectedReply('record', reply)
}

const SOURCE = `
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
`

/**
 * record: count one message for an account and check every limit, in one atomic step.
 * The clock is Redis TIME, so every server that shares the store agrees on the windows.
 */
export const RECORD = {
  ...script('record', SOURCE),

  /** KEYS and ARGV for `input` (a fresh incident id; the token's digest, never the token). */
  encode(input: RecordInput): ScriptCall {
    const k = accountKeys(input.account)
    const args = [
      input.mode,
      String(input.recipients),
      JSON.stringify(input.summary),
      String(EVIDENCE_CAP),
      randomId(),
      input.account,
      describeRules(input.rules),
      tokenDigest(input.token),
      String(input.tokenTtlMs),
      String(input.rules.length),
    ]
    for (const r of input.rules)
      args.push(r.kind === 'messages' ? 'm' : 'r', String(r.max), String(r.bucketMs), String(r.buckets))
    return { keys: [k.counts, k.evidence, k.disabled, k.monitored], args }
  },

  /** The RecordResult for `reply` to `input`; throws StoreError (failure 'reply') when it is not an array of 4 or more. */
  decode(reply: unknown, input: RecordInput): RecordResult {
    if (!Array.isArray(reply) || reply.length < 4) throw unexpectedReply('record', reply)
    const items = reply as unknown[]
    const [status, flipped, overIndex] = items
    const counts = input.rules.map((r, i) => windowCount(r, Number(items[4 + i] ?? 0)))
    const over = counts[Number(overIndex) - 1]
    if (status === 'disabled') return { status, counts: [], flipped: false, by: text(items[4], '', reply) }
    if (status === 'refused' && over) {
      const at = Number(items[3])
      const record: DisabledRecord = {
        account: input.account,
        reason: 'limit',
        by: 'limit',
        at,
        incident: text(items[4 + input.rules.length + 1], '', reply),
        over,
        counts,
        evidence: parseEvidence(text(items[4 + input.rules.length], '[]', reply)),
        tokenExpiresAt: at + input.tokenTtlMs,
      }
      return { status, counts, over, flipped: Number(flipped) === 1, record }
    }
    const evidence =
      Number(flipped) === 1 ? { evidence: parseEvidence(text(items[4 + input.rules.length], '[]', reply)) } : {}
    return {
      status: 'ok',
      counts,
      ...(over ? { over } : {}),
      flipped: Number(flipped) === 1,
      at: Number(items[3]),
      ...evidence,
    }
  },
}
