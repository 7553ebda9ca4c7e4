#!lua
-- publish.lua: publish a batch's output entries, refresh the metric's
-- likelihood-params cache and XACK the input entry, in one atomic call.
--
-- KEYS[1]  input stream (XACK)
-- KEYS[2]  output stream (XADD; unused when N = 0)
-- KEYS[3]  params cache hash (only when ARGV[6] == "1")
-- ARGV[1]  consumer group of the input stream
-- ARGV[2]  input entry id (XACKed; the `source` field of every output entry)
-- ARGV[3]  owner consumer: when not "", nothing is done unless the input
--          entry is pending for this consumer
-- ARGV[4]  output MAXLEN (approximate trimming; <= 0: no trimming)
-- ARGV[5]  N, the number of output entries
-- ARGV[6]  "1": update the params cache, "0": do not
-- ARGV[7]  params JSON text
-- ARGV[8]  watermark (last scored rowid): the hash is written only if this
--          is >= its current watermark (the cache never moves backwards)
-- ARGV[9]  updated (ms since the epoch)
-- ARGV[10 + 5*(i-1) ...] entry i: dataType, model, rows ("" = no rows
--          field), encoding, body
--
-- Returns {status, acked, cache, {ids}}: status 1 done, 0 not the owner
-- (nothing written); acked 1/0 (XACK count); cache 1 written, 0 skipped
-- (lower watermark), -1 not requested; ids of the new output entries.
-- Every check that can fail runs before the first write, so an error reply
-- means nothing was written.

local group, id, owner = ARGV[1], ARGV[2], ARGV[3]
local maxlen = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local want_cache = ARGV[6] == '1'

if maxlen == nil or n == nil or n < 0 or #ARGV ~= 9 + 5 * n then
  return redis.error_reply('ERR publish.lua: bad arguments')
end

local function check_type(key, expected)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= expected then
    return redis.error_reply('WRONGTYPE publish.lua: ' .. key .. ' is a ' ..
                             t .. ', expected a ' .. expected)
  end
  return nil
end

local e = check_type(KEYS[1], 'stream')
if e then return e end
-- NOGROUP (missing stream or group) is raised here, before any write.
local mine = redis.call('XPENDING', KEYS[1], group, id, id, 1)
if owner ~= '' then
  if #mine == 0 or mine[1][2] ~= owner then
    return {0, 0, -1, {}}
  end
end
if n > 0 then
  e = check_type(KEYS[2], 'stream')
  if e then return e end
end
local wm
if want_cache then
  e = check_type(KEYS[3], 'hash')
  if e then return e end
  wm = tonumber(ARGV[8])
  if wm == nil then
    return redis.error_reply('ERR publish.lua: watermark is not a number')
  end
end

local ids = {}
for i = 0, n - 1 do
  local b = 10 + 5 * i
  local args = {'XADD', KEYS[2]}
  if maxlen > 0 then
    args[#args + 1] = 'MAXLEN'
    args[#args + 1] = '~'
    args[#args + 1] = ARGV[4]
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
  args[#args + 1] = id
  args[#args + 1] = 'encoding'
  args[#args + 1] = ARGV[b + 3]
  args[#args + 1] = 'body'
  args[#args + 1] = ARGV[b + 4]
  ids[#ids + 1] = redis.call(unpack(args))
end

local cache = -1
if want_cache then
  local cur = tonumber(redis.call('HGET', KEYS[3], 'watermark'))
  if cur == nil or wm >= cur then
    redis.call('HSET', KEYS[3], 'params', ARGV[7], 'watermark', ARGV[8],
               'updated', ARGV[9])
    cache = 1
  else
    cache = 0
  end
end

local acked = redis.call('XACK', KEYS[1], group, id)
return {1, acked, cache, ids}
