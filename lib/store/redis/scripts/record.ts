/** The RECORD script: count one message and check every limit in one atomic step, with its encoder and decoder. */
import { accountKeys } from '../../keys'
import {
  describeRules,
  encodeSummary,
  EVIDENCE_CAP,
  NETWORKS_CAP,
  NETWORKS_SHOWN,
  parseEvidence,
  parseNetworks,
  windowCount,
  type DisabledRecord,
  type RecordInput,
  type RecordResult,
} from '../..'
import { randomId, tokenDigest } from '../../../ids'
import { addOf, MAX_SIGS, ruleWindowMs, seriesId, seriesOf, summaryDigest, warnTotal } from '../../series'
import { script, unexpectedReply, type ScriptCall } from './script'

/** A string or integer reply item as text, `fallback` when it is missing; throws unexpectedReply otherwise. */
function text(item: unknown, fallback: string, reply: unknown): string {
  if (item === undefined || item === null) return fallback
  if (typeof item === 'string' || typeof item === 'number') return String(item)
  throw unexpectedReply('record', reply)
}

const SOURCE = `
-- KEYS[1]  counts     hash: an account's counters (lib/store/series.ts, docs/store.md) and "ed",
--                     the digest of the newest evidence summary
-- KEYS[2]  evidence   list: the last distinct message summaries, newest first, capped
-- KEYS[3]  disabled   hash: the disable record (exists = disabled)
-- KEYS[4]  monitored  string with TTL: monitor mode already reported this window
-- KEYS[5]  networks   sorted set: client network -> last message from it (ms)
-- KEYS[6]  warned     string with TTL: the [warn] warning went out this window
-- ARGV[1]  mode       enforce | monitor
-- ARGV[2]  summary    summary of this message (evidence; JSON, encodeSummary)
-- ARGV[3]  digest     the summary's digest: the list takes it only when it differs from the newest's
-- ARGV[4]  cap        how many summaries the evidence list keeps
-- ARGV[5]  incident   id stored in the disable record if this call disables
-- ARGV[6]  account    account name stored in the disable record
-- ARGV[7]  rules      JSON description of the rules, stored in the disable record
-- ARGV[8]  tokenHash  SHA-256 (hex) of the reactivation token, stored in the disable record
--                     if this call disables (the token itself is never stored)
-- ARGV[9]  tokenTtl   ms the token stays valid from now
-- ARGV[10] list       the rules' series ids, space-separated (seriesList)
-- ARGV[11] sig        the rule set's signature (seriesSig)
-- ARGV[12] maxSigs    signatures a series keeps
-- ARGV[13] ttl        ms the counters live (countersTtlMs)
-- ARGV[14] m          number of series; then 4 values per series: id, bucketMs, buckets, and
--                     what this message adds to it (1 or the recipients)
-- ARGV[15 + 4m] n     number of rules; then 4 values per rule: its series (1-based; 0 for a
--                     networks rule), max, window (ms), and the total that warns (0 = none)
-- ARGV[16 + 4m + 4n]  network: the message's client network ('' = not counted)
-- ARGV[17 + 4m + 4n]  networksCap: how many networks the set keeps
-- ARGV[18 + 4m + 4n]  shown: how many networks a disable record or a warning names
-- Reply: { status, flipped, over, nowMs, warn, networks, total_1, ..., total_n }, and for
--        "refused" also the evidence (JSON array) and the incident id; "disabled" is
--        { "disabled", 0, 0, 0, by } (who disabled the account); an "ok" that flipped the
--        monitored marker or warns ends with the evidence (JSON array)
--   warn     1-based index of the rule this message brought to its warning total, the first
--            time in a window for the account (KEYS[6]); 0 when none
--   networks JSON array of the networks seen in the window of the over (or warn) rule when it
--            is a networks rule, newest first; '' otherwise
--   status   "ok" counted (totals include it) | "refused" over a limit in enforce mode, not
--            counted (totals exclude it) | "disabled" already disabled in enforce mode
--   flipped  1 when this call set the disabled flag (enforce) or the monitored marker (monitor)
--   over     1-based index of the first rule the message would exceed, 0 when none
-- Networks cost one ZSCORE and a ZCOUNT per networks rule, and a counted message a ZADD and a
-- PEXPIRE; a network new to the set also two trims.
-- Cost: a hash that holds just the current rules' series (field "s" equals ARGV[10]) is read with
-- one HMGET and written with one HSET, whatever the number of buckets; a new bucket costs one
-- HMGET, one HDEL (the bucket that left the window) and one PEXPIRE when the next message comes. Otherwise (rules changed, a
-- layout before 0.2) the whole hash is read once per message until the old series are gone.
if redis.replicate_commands then pcall(redis.replicate_commands) end
local C = KEYS[1]
local mode = ARGV[1]
if mode == 'enforce' and redis.call('EXISTS', KEYS[3]) == 1 then
  return { 'disabled', 0, 0, 0, redis.call('HGET', KEYS[3], 'by') or '' }
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = tonumber(ARGV[14])
local order, want = {}, { 's', 'ed' }
for j = 1, m do
  local b = 14 + (j - 1) * 4
  local s = { id = ARGV[b + 1], bucket = tonumber(ARGV[b + 2]), buckets = tonumber(ARGV[b + 3]),
              add = tonumber(ARGV[b + 4]) }
  s.cur = math.floor(now / s.bucket)
  order[j] = s
  want[#want + 1] = s.id
  want[#want + 1] = s.id .. '@'
  want[#want + 1] = s.id .. '.' .. (s.cur % s.buckets)
end
local n = tonumber(ARGV[15 + 4 * m])
local head = redis.call('HMGET', C, unpack(want))
local out = {}
-- The key's TTL is renewed when a series moves to a new bucket (or on the general path): the key
-- then outlives every message by at least the longest window.
local renew = false
-- Moves a series to the current bucket (never back), subtracting and deleting the buckets that left it.
local function advance(s)
  if s.cur <= s.last then return end
  local f = {}
  if s.cur - s.last >= s.buckets then
    for k = 0, s.buckets - 1 do f[k + 1] = s.id .. '.' .. k end
    s.total = 0
  else
    for idx = s.last + 1, s.cur do f[#f + 1] = s.id .. '.' .. (idx % s.buckets) end
    local v = redis.call('HMGET', C, unpack(f))
    for k = 1, #f do s.total = s.total - (tonumber(v[k]) or 0) end
  end
  redis.call('HDEL', C, unpack(f))
  s.last = s.cur
  s.slot = 0
  renew = true
  out[#out + 1] = s.id .. '@'
  out[#out + 1] = s.last
end
local fast = head[1] == ARGV[10]
for j = 1, m do
  local s = order[j]
  s.total, s.last = tonumber(head[3 * j]), tonumber(head[1 + 3 * j])
  if not s.total or not s.last then fast = false end
end
if fast then
  for j = 1, m do
    local s = order[j]
    if s.cur == s.last then s.slot = tonumber(head[2 + 3 * j]) or 0 end
    advance(s)
  end
end
local rules = {}
for i = 1, n do
  local b = 15 + 4 * m + (i - 1) * 4
  rules[i] = { s = order[tonumber(ARGV[b + 1])], max = tonumber(ARGV[b + 2]), window = tonumber(ARGV[b + 3]),
               warn = tonumber(ARGV[b + 4]), extra = 0 }
end
local nb = 16 + 4 * m + 4 * n
if not fast then
  -- The general path (lib/store/series.ts settle): signatures, retired series, 0.1 buckets.
  renew = true
  local all = redis.call('HGETALL', C)
  local h = {}
  for j = 1, #all, 2 do h[all[j]] = all[j + 1] end
  local function has(sigs, x) return string.find(',' .. sigs .. ',', ',' .. x .. ',', 1, true) ~= nil end
  local function series(q)
    q.total, q.last, q.sigs = tonumber(h[q.id]), tonumber(h[q.id .. '@']), h[q.id .. '!'] or ''
    if not string.match(h[q.id] or '', '^%-?%d+$') or not string.match(h[q.id .. '@'] or '', '^%-?%d+$') then
      return false
    end
    return true
  end
  local sig, maxSigs = ARGV[11], tonumber(ARGV[12])
  for j = 1, m do
    local s = order[j]
    if not series(s) then s.last, s.total, s.sigs = s.cur, 0, '' end
    s.slot = nil
    advance(s)
    if not has(s.sigs, sig) then
      local kept = {}
      for x in string.gmatch(s.sigs, '[^,]+') do kept[#kept + 1] = x end
      kept[#kept + 1] = sig
      while #kept > maxSigs do table.remove(kept, 1) end
      s.sigs = table.concat(kept, ',')
    end
    out[#out + 1] = s.id .. '@'
    out[#out + 1] = s.last
    out[#out + 1] = s.id .. '!'
    out[#out + 1] = s.sigs
  end
  for i = 1, n do
    local r = rules[i]
    if r.s then
      r.kind = string.sub(r.s.id, 1, 1)
      r.start = (math.floor(now / r.s.bucket) - r.s.buckets + 1) * r.s.bucket
    end
  end
  local current = {}
  for j = 1, m do current[order[j].id] = true end
  local del, keep, retired = {}, { ARGV[10] }, {}
  for id in string.gmatch(h['s'] or '', '%S+') do
    local kind, bucket, buckets = string.match(id, '^([mri])(%d+)x(%d+)$')
    local q = { id = id, kind = kind, bucket = tonumber(bucket), buckets = tonumber(buckets) }
    if kind and not current[id] and series(q) then
      local gone = math.floor(now / q.bucket) - q.last >= q.buckets
      for i = 1, n do
        if rules[i].kind == kind and (q.last + 1) * q.bucket > rules[i].start then gone = false end
      end
      if gone then
        del[#del + 1] = id
        del[#del + 1] = id .. '@'
        del[#del + 1] = id .. '!'
        for k = 0, q.buckets - 1 do del[#del + 1] = id .. '.' .. k end
      else
        keep[#keep + 1] = id
        retired[#retired + 1] = q
      end
    end
  end
  -- A retired series counts toward a rule of its kind unless it shares a rule set (signature)
  -- with the rule's own series. Retired series that share one with each other count once: the
  -- smallest count of those that reach back to the window's start, or else the largest.
  for i = 1, n do
    local r = rules[i]
    local groups = {}
    -- A networks rule (no series) takes nothing from retired series.
    for _, q in ipairs(r.s and retired or {}) do
      local shared = false
      for x in string.gmatch(q.sigs, '[^,]+') do if has(r.s.sigs, x) then shared = true end end
      if q.kind == r.kind and not shared then
        local v = 0
        for k = 0, q.buckets - 1 do
          local c = tonumber(h[q.id .. '.' .. k])
          local idx = q.last - (((q.last % q.buckets) - k) % q.buckets)
          if c and (idx + 1) * q.bucket > r.start then v = v + c end
        end
        local into = nil
        for _, g in ipairs(groups) do
          for x in string.gmatch(q.sigs, '[^,]+') do if has(g.sigs, x) then into = g end end
        end
        if not into then
          into = { sigs = '', any = 0 }
          groups[#groups + 1] = into
        end
        into.sigs = into.sigs .. ',' .. q.sigs
        if v > into.any then into.any = v end
        if (q.last - q.buckets + 1) * q.bucket <= r.start and (into.covering == nil or v < into.covering) then
          into.covering = v
        end
      end
    end
    for _, g in ipairs(groups) do r.extra = r.extra + (g.covering or g.any) end
  end
  local legacy = false
  for f, v in pairs(h) do
    local bucket, idx, kind = string.match(f, '^(%d+)%.(%d+)%.([mr])$')
    if bucket then
      local live = false
      for i = 1, n do
        local r = rules[i]
        if r.kind == kind and (tonumber(idx) + 1) * tonumber(bucket) > r.start then
          r.extra = r.extra + (tonumber(v) or 0)
          live = true
        end
      end
      if live then legacy = true else del[#del + 1] = f end
    end
  end
  if legacy then keep[#keep + 1] = '0' end
  if #del > 0 then redis.call('HDEL', C, unpack(del)) end
  out[#out + 1] = 's'
  out[#out + 1] = table.concat(keep, ' ')
end
-- The networks: a network counts toward a networks rule when it was seen inside the rule's
-- window; the message's network adds one where it was not.
local net, seen = ARGV[nb], nil
for i = 1, n do
  local r = rules[i]
  if not r.s then
    if seen == nil and net ~= '' then seen = tonumber(redis.call('ZSCORE', KEYS[5], net)) or false end
    r.extra = redis.call('ZCOUNT', KEYS[5], '(' .. (now - r.window), '+inf')
    r.add = (net ~= '' and (not seen or seen <= now - r.window)) and 1 or 0
  else
    r.add = r.s.add
  end
end
-- The evidence: a summary like the newest (same digest) is not written again.
if head[2] ~= ARGV[3] then
  -- A new list gets its TTL now; an existing one has the counters' (renewed together below). It
  -- is trimmed back to cap once it holds twice as many: one call in cap pushes, not one in each.
  local len = redis.call('LPUSH', KEYS[2], ARGV[2])
  if len == 1 then redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[13])) end
  if len >= 2 * tonumber(ARGV[4]) then redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1) end
  out[#out + 1] = 'ed'
  out[#out + 1] = ARGV[3]
end
local over = 0
for i = 1, n do
  local r = rules[i]
  r.total = (r.s and r.s.total or 0) + r.extra
  if over == 0 and r.total + r.add > r.max then over = i end
end
local counted = over == 0 or mode ~= 'enforce'
if counted then
  for j = 1, m do
    local s = order[j]
    if s.add > 0 then
      local slot = s.id .. '.' .. (s.last % s.buckets)
      if s.slot == nil then s.slot = tonumber(redis.call('HGET', C, slot)) or 0 end
      out[#out + 1] = slot
      out[#out + 1] = s.slot + s.add
      s.total = s.total + s.add
    end
  end
end
for j = 1, m do
  out[#out + 1] = order[j].id
  out[#out + 1] = order[j].total
end
redis.call('HSET', C, unpack(out))
if renew then
  redis.call('PEXPIRE', C, tonumber(ARGV[13]))
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[13]))
end
-- The networks of a counted message: its network's last-seen time, the set trimmed of networks
-- no window holds any more (when a new one joins) and to its cap, living as long as the longest window.
if seen ~= nil and counted and net ~= '' then
  local longest = 0
  for i = 1, n do if not rules[i].s and rules[i].window > longest then longest = rules[i].window end end
  redis.call('ZADD', KEYS[5], now, net)
  if not seen then
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - longest)
    redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -tonumber(ARGV[nb + 1]) - 1)
  end
  redis.call('PEXPIRE', KEYS[5], longest)
end
local warn = 0
if counted then
  for i = 1, n do
    local r = rules[i]
    if warn == 0 and r.warn > 0 and r.total < r.warn and r.total + r.add >= r.warn and r.total + r.add <= r.max then
      warn = redis.call('SET', KEYS[6], now, 'PX', r.window, 'NX') and i or -1
    end
  end
  if warn < 0 then warn = 0 end
end
-- The networks seen in a networks rule's window, newest first (this message's first).
local function networks(i)
  local r = rules[i]
  if not r or r.s then return '' end
  local list = redis.call('ZREVRANGEBYSCORE', KEYS[5], '+inf', '(' .. (now - r.window), 'LIMIT', 0, tonumber(ARGV[nb + 2]))
  if not counted and net ~= '' then table.insert(list, 1, net) end
  return cjson.encode(list)
end
local reply = { counted and 'ok' or 'refused', 0, over, now, warn, '' }
for i = 1, n do reply[6 + i] = rules[i].total + (counted and rules[i].add or 0) end
local function evidence()
  return '[' .. table.concat(redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[4]) - 1), ',') .. ']'
end
if not counted then
  local csv = {}
  for i = 1, n do csv[i] = tostring(rules[i].total) end
  local ev = evidence()
  reply[6] = networks(over)
  redis.call('HSET', KEYS[3], 'account', ARGV[6], 'by', 'limit', 'reason', 'limit', 'at', now,
    'incident', ARGV[5], 'rules', ARGV[7], 'over', over, 'totals', table.concat(csv, ','),
    'token_sha256', ARGV[8], 'token_expires', now + tonumber(ARGV[9]), 'evidence', ev, 'networks', reply[6])
  reply[2] = 1
  reply[#reply + 1] = ev
  reply[#reply + 1] = ARGV[5]
  return reply
end
if over > 0 and redis.call('SET', KEYS[4], now, 'PX', rules[over].window, 'NX') then
  reply[2] = 1
  reply[6] = networks(over)
elseif warn > 0 then
  reply[6] = networks(warn)
end
if reply[2] == 1 or warn > 0 then reply[#reply + 1] = evidence() end
return reply
`

/**
 * record: count one message for an account and check every limit, in one atomic step.
 * The clock is Redis TIME, so every server that shares the store agrees on the windows.
 */
export const RECORD = {
  ...script('record', SOURCE),

  /**
   * KEYS and ARGV for `input` (a fresh incident id; the token's digest, never the token). `counter`
   * picks the account's counters: its messages and recipients, or its invalid recipients (their
   * own hash, evidence and monitor marker; `input.recipients` is then the refused recipients).
   */
  encode(input: RecordInput, counter: 'messages' | 'invalid' = 'messages'): ScriptCall {
    const k = accountKeys(input.account)
    const summary = encodeSummary(input.summary)
    const named = seriesOf(input.rules)
    const args = [
      input.mode,
      summary,
      summaryDigest(summary),
      String(EVIDENCE_CAP),
      randomId(),
      input.account,
      describeRules(input.rules),
      tokenDigest(input.token),
      String(input.tokenTtlMs),
      named.list,
      named.sig,
      String(MAX_SIGS),
      String(named.ttlMs),
      String(named.series.length),
    ]
    for (const r of named.series)
      args.push(seriesId(r), String(r.bucketMs), String(r.buckets), String(addOf(r, input.recipients)))
    args.push(String(input.rules.length))
    input.rules.forEach((r, i) =>
      args.push(
        String((named.seriesOfRule[i] ?? -1) + 1),
        String(r.max),
        String(ruleWindowMs(r)),
        String(warnTotal(r, input.warnAt)),
      ),
    )
    args.push(input.network ?? '', String(NETWORKS_CAP), String(NETWORKS_SHOWN))
    const keys =
      counter === 'invalid'
        ? [k.invalid, k.invalidEvidence, k.disabled, k.invalidMonitored, k.networks, k.warned]
        : [k.counts, k.evidence, k.disabled, k.monitored, k.networks, k.warned]
    return { keys, args }
  },

  /** The RecordResult for `reply` to `input`; throws StoreError (failure 'reply') when it is not an array of 4 or more. */
  decode(reply: unknown, input: RecordInput): RecordResult {
    if (!Array.isArray(reply) || reply.length < 4) throw unexpectedReply('record', reply)
    const items = reply as unknown[]
    const [status, flipped, overIndex, , warnIndex, networksJson] = items
    if (status === 'disabled') return { status, counts: [], flipped: false, by: text(items[4], '', reply) }
    if (items.length < 6 + input.rules.length) throw unexpectedReply('record', reply)
    const n = input.rules.length
    const counts = input.rules.map((r, i) => windowCount(r, Number(items[6 + i] ?? 0)))
    const over = counts[Number(overIndex) - 1]
    const networks = text(networksJson, '', reply) ? { networks: parseNetworks(text(networksJson, '', reply)) } : {}
    if (status === 'refused' && over) {
      const at = Number(items[3])
      const record: DisabledRecord = {
        account: input.account,
        reason: 'limit',
        by: 'limit',
        at,
        incident: text(items[6 + n + 1], '', reply),
        over,
        counts,
        evidence: parseEvidence(text(items[6 + n], '[]', reply)),
        tokenExpiresAt: at + input.tokenTtlMs,
        ...networks,
      }
      return { status, counts, over, flipped: Number(flipped) === 1, record }
    }
    const warn = counts[Number(warnIndex) - 1]
    const evidence = Number(flipped) === 1 || warn ? { evidence: parseEvidence(text(items[6 + n], '[]', reply)) } : {}
    return {
      status: 'ok',
      counts,
      ...(over ? { over } : {}),
      flipped: Number(flipped) === 1,
      at: Number(items[3]),
      ...(warn ? { warn } : {}),
      ...evidence,
      ...networks,
    }
  },
}
