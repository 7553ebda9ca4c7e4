#!lua
-- attempts.lua: count a processing attempt of input entries, so that an
-- entry that keeps failing (a crash while it is processed, again and again)
-- can be dead-lettered after max_deliveries attempts. Redis's own delivery
-- counter cannot serve: it also counts re-reads after restarts, takeovers
-- and time spent waiting for a predecessor, none of which is a failure.
--
-- KEYS[1]  the attempts hash (field = entry id, value = attempts begun and
--          not completed; publish_many.lua and dead_letter.lua delete the
--          field when the entry is acked)
-- ARGV[1]  "1": for several ids, do not count but answer "split" when any of
--          them has an unfinished earlier attempt (its group failed: try the
--          entries one by one so that one bad entry does not take the others
--          with it); "2": count the ids without an unfinished earlier
--          attempt, and answer 0 for the others, uncounted (the caller
--          counts and processes them one at a time); "0": always count;
--          "-1": end attempts without
--          completing them (the entry is left pending on purpose: deferred,
--          or a stop): take one back, deleting the field at 0
-- ARGV[2 ...] entry ids
--
-- Returns {0, n1, n2, ...} with the new counts (0: not counted, mode "2";
-- what is left, mode "-1"), or {1} for "split".

local ids = {}
for i = 2, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
if #ids == 0 then
  return {0}
end
if ARGV[1] == '1' and #ids > 1 then
  local cur = redis.call('HMGET', KEYS[1], unpack(ids))
  for i = 1, #cur do
    if cur[i] then
      return {1}
    end
  end
end
local out = {0}
if ARGV[1] == '2' then
  local cur = redis.call('HMGET', KEYS[1], unpack(ids))
  for i = 1, #ids do
    if cur[i] then
      out[#out + 1] = 0
    else
      out[#out + 1] = redis.call('HINCRBY', KEYS[1], ids[i], 1)
    end
  end
  return out
end
if ARGV[1] == '-1' then
  for i = 1, #ids do
    local n = 0
    if redis.call('HEXISTS', KEYS[1], ids[i]) == 1 then
      n = redis.call('HINCRBY', KEYS[1], ids[i], -1)
      if n <= 0 then
        redis.call('HDEL', KEYS[1], ids[i])
        n = 0
      end
    end
    out[#out + 1] = n
  end
  return out
end
for i = 1, #ids do
  out[#out + 1] = redis.call('HINCRBY', KEYS[1], ids[i], 1)
end
return out
