#!lua
-- dead_letter.lua: move a poison input entry to the dead-letter stream and
-- XACK it, in one atomic call.
--
-- KEYS[1]  input stream (XACK)
-- KEYS[2]  dead-letter stream (XADD)
-- KEYS[3]  attempts hash (attempts.lua): the entry's field is deleted
-- ARGV[1]  consumer group of the input stream
-- ARGV[2]  input entry id (XACKed; the `source` field)
-- ARGV[3]  owner consumer: when not "", nothing is done unless the input
--          entry is pending for this consumer
-- ARGV[4]  dead-letter MAXLEN (approximate trimming; <= 0: no trimming)
-- ARGV[5]  reason
-- ARGV[6]  deliveries
-- ARGV[7]  consumer (the one giving up on the entry)
-- ARGV[8 ...] the original entry's fields as name, value pairs (none for an
--          entry whose payload is gone)
--
-- The dead-letter entry has the original fields first, in order, then
-- reason, source, deliveries, consumer. An entry of more than INLINE_FIELDS
-- fields cannot be copied field by field: redis.call takes its arguments on
-- Lua's C stack (LUAI_MAXCSTACK, 8000 values), so an unpack of ~4,000
-- fields fails. Such an entry is kept whole but packed: the fields
-- fields_msgpack (a MessagePack array name1, value1, name2, ... of every
-- original field, binary exact) and field_count, then the same four.
-- Returns {status, id, acked}: status 1 done (id = the dead-letter entry id),
-- 0 not the owner (nothing written, id = ""); acked = XACK count.

local group, id, owner = ARGV[1], ARGV[2], ARGV[3]
local maxlen = tonumber(ARGV[4])

local INLINE_FIELDS = 1000

if maxlen == nil or #ARGV < 7 or (#ARGV - 7) % 2 ~= 0 then
  return redis.error_reply('ERR dead_letter.lua: bad arguments')
end

-- Every key's type before the first write: an error after the XADD would
-- leave a dead letter whose entry is still pending (scripts are not undone).
local want = {'stream', 'stream', 'hash'}
for k = 1, 3 do
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'none' and t ~= want[k] then
    return redis.error_reply('WRONGTYPE dead_letter.lua: ' .. KEYS[k] ..
                             ' is a ' .. t .. ', expected a ' .. want[k])
  end
end
-- NOGROUP (missing stream or group) is raised here, before any write.
local mine = redis.call('XPENDING', KEYS[1], group, id, id, 1)
if owner ~= '' then
  if #mine == 0 or mine[1][2] ~= owner then
    return {0, '', 0}
  end
end

local args = {'XADD', KEYS[2]}
if maxlen > 0 then
  args[#args + 1] = 'MAXLEN'
  args[#args + 1] = '~'
  args[#args + 1] = ARGV[4]
end
args[#args + 1] = '*'
local nfields = (#ARGV - 7) / 2
if nfields <= INLINE_FIELDS then
  for i = 8, #ARGV do
    args[#args + 1] = ARGV[i]
  end
else
  local packed = {}
  for i = 8, #ARGV do
    packed[#packed + 1] = ARGV[i]
  end
  args[#args + 1] = 'fields_msgpack'
  args[#args + 1] = cmsgpack.pack(packed)
  args[#args + 1] = 'field_count'
  args[#args + 1] = tostring(nfields)
end
args[#args + 1] = 'reason'
args[#args + 1] = ARGV[5]
args[#args + 1] = 'source'
args[#args + 1] = id
args[#args + 1] = 'deliveries'
args[#args + 1] = ARGV[6]
args[#args + 1] = 'consumer'
args[#args + 1] = ARGV[7]
local dl = redis.call(unpack(args))
local acked = redis.call('XACK', KEYS[1], group, id)
redis.call('HDEL', KEYS[3], id)
return {1, dl, acked}
