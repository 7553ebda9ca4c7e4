#!lua
-- trim_input.lua: trim the input stream up to the lowest entry that some
-- consumer group still needs, optionally keeping a retention window of
-- processed entries. Everything is read and trimmed in this one atomic call,
-- so a group created, or an entry delivered, between a separate read and the
-- trim cannot be missed: any race only makes a later call trim less.
--
-- KEYS[1]  the input stream
-- ARGV[1]  retention in ms: entries younger than this (by their id's time
--          against the server's clock) are kept even when processed; 0: none
-- ARGV[2]  "1": trim; "0": only report what would be done
-- ARGV[3]  most entries one call removes (XTRIM ... LIMIT; Redis removes
--          whole nodes only, so up to one node less): bounds the time this
--          call blocks Redis; the caller calls again while it removed some
--
-- What a group needs: its oldest pending entry (delivered, not acked yet),
-- or, when nothing is pending, the entry after its last-delivered id. The
-- cutoff is the minimum over ALL groups of the stream, anyone's, and the
-- retention floor. A stream without groups is never trimmed (whoever
-- creates the first group from "0" would expect its entries).
--
-- Returns {trimmed, cutoff, now_ms, {name1, needed1, held1, name2, ...}}:
-- trimmed is the XTRIM count (0 in report mode, and 0 when the key is not a
-- stream or has no groups: then cutoff is ""); needed ids are per group;
-- held is the oldest entry of the stream at or after needed (the oldest one
-- the group keeps from being trimmed), "" when there is none.

local retention = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
if retention == nil or retention < 0 or (ARGV[2] ~= '0' and ARGV[2] ~= '1') or
   limit == nil or limit < 1 then
  return redis.error_reply('ERR trim_input.lua: bad arguments')
end

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if redis.call('TYPE', KEYS[1])['ok'] ~= 'stream' then
  return {0, '', now_ms, {}}
end

-- Ids are "ms-seq" with decimal parts of up to 20 digits: compare them as
-- strings of digits (no leading zeros), never as Lua numbers (doubles).
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms, seq
end
local function numcmp(a, b)
  if #a ~= #b then
    return #a < #b and -1 or 1
  end
  if a == b then return 0 end
  return a < b and -1 or 1
end
local function idcmp(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  local c = numcmp(am, bm)
  if c ~= 0 then return c end
  return numcmp(as, bs)
end
-- The id right after id: seq + 1 in decimal, carried by hand.
local function next_id(id)
  local ms, seq = split(id)
  local digits = {}
  for i = 1, #seq do digits[i] = string.byte(seq, i) - 48 end
  local i = #digits
  while i >= 1 do
    if digits[i] < 9 then
      digits[i] = digits[i] + 1
      break
    end
    digits[i] = 0
    i = i - 1
  end
  local s = ''
  if i == 0 then s = '1' end
  for k = 1, #digits do s = s .. string.char(digits[k] + 48) end
  -- seq past 2^64-1 cannot be: keep id itself (trims one entry less)
  if numcmp(s, '18446744073709551615') > 0 then return id end
  return ms .. '-' .. s
end

local info = redis.call('XINFO', 'GROUPS', KEYS[1])
local groups = {}
local cutoff = nil
for _, g in ipairs(info) do
  local name, pending, last
  for k = 1, #g, 2 do
    if g[k] == 'name' then name = g[k + 1]
    elseif g[k] == 'pending' then pending = tonumber(g[k + 1])
    elseif g[k] == 'last-delivered-id' then last = g[k + 1] end
  end
  local needed
  if pending and pending > 0 then
    needed = redis.call('XPENDING', KEYS[1], name)[2]
  else
    needed = next_id(last)
  end
  groups[#groups + 1] = name
  groups[#groups + 1] = needed
  local held = redis.call('XRANGE', KEYS[1], needed, '+', 'COUNT', 1)
  groups[#groups + 1] = held[1] and held[1][1] or ''
  if cutoff == nil or idcmp(needed, cutoff) < 0 then
    cutoff = needed
  end
end
if cutoff == nil then
  return {0, '', now_ms, {}}
end
if retention > 0 then
  local floor = string.format('%.0f', math.max(now_ms - retention, 0)) .. '-0'
  if idcmp(floor, cutoff) < 0 then
    cutoff = floor
  end
end

local trimmed = 0
if ARGV[2] == '1' then
  trimmed = redis.call('XTRIM', KEYS[1], 'MINID', '~', cutoff, 'LIMIT', ARGV[3])
end
return {trimmed, cutoff, now_ms, groups}
