#!lua
-- publish_many.lua: for each input entry of a group, in one atomic call:
-- XADD its output entries, optionally refresh one params-cache hash, and
-- XACK it.
--
-- KEYS[1]  input stream (XACK)
-- KEYS[2]  output stream (XADD)
-- KEYS[3]  attempts hash (attempts.lua): each acked entry's field is deleted
-- KEYS[4 ...] params cache hashes referenced by the entries
-- ARGV[1]  consumer group of the input stream
-- ARGV[2]  owner consumer: when not "", an entry not pending for this
--          consumer is skipped (someone claimed it): nothing written for it
-- ARGV[3]  output MAXLEN (approximate trimming; <= 0: no trimming)
-- ARGV[4]  E, the number of entries
-- ARGV[5]  "1": XACK each entry (and delete its attempts field); "0": only
--          publish (a chunk of a large entry's messages: the entry stays
--          pending until its last chunk, which acks it)
-- then, for each entry:
--   id, N (output entries), K (index into KEYS of its params hash, 0 =
--   none), params JSON, watermark, updated (ms), source (the input entry id
--   that moved the watermark: the metric's scored_source; readers trust the
--   hash only when both watermark and source match the database, so a
--   deleted and re-created model never gets the old params), then N x
--   (dataType, model, rows ("" = no rows field), encoding, body)
--
-- Returns one {status, acked, cache, {ids}} per entry: status 1 done, 0 not
-- the owner (nothing written); acked the XACK count; cache 1 written, 0 kept
-- (the hash had a higher watermark), -1 no hash; ids the output entry ids.
-- Every check that can fail runs before the first write (NOGROUP, wrong key
-- types, bad arguments), so an error reply means nothing was written.

local group, owner = ARGV[1], ARGV[2]
local maxlen = tonumber(ARGV[3])
local ne = tonumber(ARGV[4])
local ack = ARGV[5] ~= '0'
if maxlen == nil or ne == nil or ne < 0 then
  return redis.error_reply('ERR publish_many.lua: bad arguments')
end

local function check_type(key, expected)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= expected then
    return redis.error_reply('WRONGTYPE publish_many.lua: ' .. key .. ' is a ' ..
                             t .. ', expected a ' .. expected)
  end
  return nil
end
for k = 1, #KEYS do
  local e = check_type(KEYS[k], k <= 2 and 'stream' or 'hash')
  if e then return e end
end

-- Parse and check every entry first.
local entries = {}
local p = 6
for i = 1, ne do
  local n, k, wm = tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2]), tonumber(ARGV[p + 4])
  if n == nil or k == nil or wm == nil or n < 0 or k < 0 or k > #KEYS or
     (k > 0 and k < 4) or #ARGV < p + 6 + 5 * n then
    return redis.error_reply('ERR publish_many.lua: bad arguments for entry ' .. i)
  end
  entries[i] = {id = ARGV[p], n = n, k = k, params = ARGV[p + 3], wm = wm,
                updated = ARGV[p + 5], source = ARGV[p + 6], at = p + 7}
  p = p + 7 + 5 * n
end
if p - 1 ~= #ARGV then
  return redis.error_reply('ERR publish_many.lua: trailing arguments')
end
-- NOGROUP (missing stream or group) is raised here, before any write.
for i = 1, ne do
  local en = entries[i]
  local mine = redis.call('XPENDING', KEYS[1], group, en.id, en.id, 1)
  en.skip = owner ~= '' and (#mine == 0 or mine[1][2] ~= owner)
end

local out = {}
for i = 1, ne do
  local en = entries[i]
  if en.skip then
    out[i] = {0, 0, -1, {}}
  else
    local ids = {}
    for j = 0, en.n - 1 do
      local b = en.at + 5 * j
      local args = {'XADD', KEYS[2]}
      if maxlen > 0 then
        args[#args + 1] = 'MAXLEN'
        args[#args + 1] = '~'
        args[#args + 1] = ARGV[3]
      end
      args[#args + 1] = '*'
      args[#args + 1] = 'dataType'
      args[#args + 1] = ARGV[b]
      args[#args + 1] = 'model'
      args[#args + 1] = ARGV[b + 1]
      if ARGV[b + 2] ~= '' then
        args[#args + 1] = 'rows'
        args[#args + 1] = ARGV[b + 2]
      end
      args[#args + 1] = 'source'
      args[#args + 1] = en.id
      args[#args + 1] = 'encoding'
      args[#args + 1] = ARGV[b + 3]
      args[#args + 1] = 'body'
      args[#args + 1] = ARGV[b + 4]
      ids[#ids + 1] = redis.call(unpack(args))
    end
    local cache = -1
    if en.k > 0 then
      local key = KEYS[en.k]
      local cur = tonumber(redis.call('HGET', key, 'watermark'))
      if cur == nil or en.wm >= cur then
        redis.call('HSET', key, 'params', en.params, 'watermark', en.wm,
                   'updated', en.updated, 'source', en.source)
        cache = 1
      else
        cache = 0
      end
    end
    local acked = 0
    if ack then
      acked = redis.call('XACK', KEYS[1], group, en.id)
      redis.call('HDEL', KEYS[3], en.id)
    end
    out[i] = {1, acked, cache, ids}
  end
end
return out
