#!lua
-- attempts_gc.lua: delete the fields of the attempts hash (attempts.lua)
-- whose entries are no longer pending in the group. The publish and
-- dead-letter scripts delete an entry's field with its XACK; a field is left
-- behind when the entry leaves the group another way (a consumer counting an
-- attempt after someone else completed the entry, an XACK of a trimmed entry,
-- XGROUP DELCONSUMER, a recreated group, an operator's XACK). One call looks
-- at one HSCAN page, so a large hash is cleaned over several calls.
--
-- KEYS[1]  the input stream
-- KEYS[2]  the attempts hash
-- ARGV[1]  consumer group of the input stream
-- ARGV[2]  HSCAN cursor ("0" to start)
-- ARGV[3]  HSCAN COUNT
--
-- Returns {next_cursor, removed}; next_cursor "0" once the scan is complete.
-- A missing stream or group (NOGROUP) is an error reply: nothing removed.

local count = tonumber(ARGV[3])
if count == nil or count < 1 then
  return redis.error_reply('ERR attempts_gc.lua: bad arguments')
end
-- NOGROUP is raised here, before any write.
redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1)
local page = redis.call('HSCAN', KEYS[2], ARGV[2], 'COUNT', count)
local fields = page[2]
local removed = 0
for i = 1, #fields, 2 do
  local id = fields[i]
  local ok = string.match(id, '^%d+%-%d+$')
  if not ok or #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) == 0 then
    removed = removed + redis.call('HDEL', KEYS[2], id)
  end
end
return {page[1], removed}
