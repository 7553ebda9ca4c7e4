#!lua
-- alerts_commit.lua: record the alerts `anomalyctl alerts` decided for one
-- output entry and append them to the alerts stream, atomically, if the
-- state it decided on is still the state in Redis (another consumer of the
-- group may have changed it meanwhile: then nothing is written and the
-- caller decides again). docs/alerts.md describes the keys.
--
-- KEYS[1]  <alerts stream>:last         zset: uid -> row time (ms) of its last alert
-- KEYS[2]  <alerts stream>:fired        hash: "uid rowid" -> output entry id
-- KEYS[3]  <alerts stream>:fired:order  zset: "uid rowid" -> row time (ms), for trimming
-- KEYS[4]  <alerts stream>              the alerts stream (XADD MAXLEN, exact)
-- ARGV[1]  metric uid
-- ARGV[2]  the last alert time the decision read ("" = none)
-- ARGV[3]  the new last alert time ("" = unchanged)
-- ARGV[4]  alerts stream MAXLEN (exact; <= 0: no trimming)
-- ARGV[5]  most fired records kept (<= 0: no trimming)
-- ARGV[6]  most metrics whose last alert time is kept (<= 0: no trimming)
-- ARGV[7]  output entry id (the fired records' value)
-- ARGV[8 ...] per alert: rowid, row time (ms), alert JSON
--
-- Returns {1, alerts stream id...} or {0, why} (state changed: retry).

local uid, expected, new_last = ARGV[1], ARGV[2], ARGV[3]
local maxlen, fired_max, last_max = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local entry = ARGV[7]
if maxlen == nil or fired_max == nil or last_max == nil or (#ARGV - 7) % 3 ~= 0 then
  return redis.error_reply('ERR alerts_commit.lua: bad arguments')
end

local cur = redis.call('ZSCORE', KEYS[1], uid)
if (cur and expected == '') or (not cur and expected ~= '') or
   (cur and tonumber(cur) ~= tonumber(expected)) then
  return {0, 'last alert time changed'}
end
for i = 8, #ARGV, 3 do
  if redis.call('HEXISTS', KEYS[2], uid .. ' ' .. ARGV[i]) == 1 then
    return {0, 'row ' .. ARGV[i] .. ' fired meanwhile'}
  end
end

local out = {1}
for i = 8, #ARGV, 3 do
  local field = uid .. ' ' .. ARGV[i]
  local args = {'XADD', KEYS[4]}
  if maxlen > 0 then -- exact: alerts are few, and the bound is then exact
    args[#args + 1] = 'MAXLEN'
    args[#args + 1] = ARGV[4]
  end
  args[#args + 1] = '*'
  args[#args + 1] = 'uid'
  args[#args + 1] = uid
  args[#args + 1] = 'rowid'
  args[#args + 1] = ARGV[i]
  args[#args + 1] = 'alert'
  args[#args + 1] = ARGV[i + 2]
  out[#out + 1] = redis.call(unpack(args))
  redis.call('HSET', KEYS[2], field, entry)
  redis.call('ZADD', KEYS[3], ARGV[i + 1], field)
end
if new_last ~= '' then
  redis.call('ZADD', KEYS[1], new_last, uid)
end

-- Bounds: the oldest records (by row time) go first.
local excess = redis.call('ZCARD', KEYS[3]) - fired_max
if fired_max > 0 and excess > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[3], excess)
  for i = 1, #popped, 2 do
    redis.call('HDEL', KEYS[2], popped[i])
  end
end
excess = redis.call('ZCARD', KEYS[1]) - last_max
if last_max > 0 and excess > 0 then
  redis.call('ZPOPMIN', KEYS[1], excess)
end
return out
