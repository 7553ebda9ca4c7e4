#!lua
-- attempts_release.lua: give back the attempts that attempts.lua counted
-- for entries whose processing then failed for a reason that was not
-- theirs (a transient or environment fault of a server): good data must
-- never reach max_deliveries because a server is sick. A count that drops
-- to 0 deletes the field (no "unfinished attempt" left behind).
--
-- KEYS[1]  the attempts hash (see attempts.lua)
-- ARGV     entry ids
--
-- Returns the number of fields changed.

local n = 0
for i = 1, #ARGV do
  local v = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if v > 1 then
    redis.call('HSET', KEYS[1], ARGV[i], v - 1)
    n = n + 1
  elseif v == 1 then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
