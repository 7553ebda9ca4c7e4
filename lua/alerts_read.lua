#!lua
-- alerts_read.lua: the state `anomalyctl alerts` needs to decide one output
-- entry (one metric), in one round trip (docs/alerts.md).
--
-- KEYS[1]  <alerts stream>:last        zset: uid -> row time (ms) of its last alert
-- KEYS[2]  <alerts stream>:fired       hash: "uid rowid" -> output entry id that fired it
-- KEYS[3]  <alerts stream>:thresholds  hash: uid or metric name -> threshold override
-- ARGV[1]  metric uid
-- ARGV[2]  metric name ("" when the message has none)
-- ARGV[3 ...] rowids of the rows that passed the static gates
--
-- Returns {last | nil, threshold by uid | nil, threshold by name | nil,
--          {entry id | nil per rowid}}.

local uid, name = ARGV[1], ARGV[2]
local last = redis.call('ZSCORE', KEYS[1], uid)
local by_uid = redis.call('HGET', KEYS[3], uid)
local by_name = false
if name ~= '' then
  by_name = redis.call('HGET', KEYS[3], name)
end
local fired = {}
if #ARGV > 2 then
  local fields = {}
  for i = 3, #ARGV do
    fields[#fields + 1] = uid .. ' ' .. ARGV[i]
  end
  fired = redis.call('HMGET', KEYS[2], unpack(fields))
end
return {last, by_uid, by_name, fired}
