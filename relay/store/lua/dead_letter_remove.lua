-- Forget one dead letter (it was replayed). KEYS as in dead_letter_add.lua; ARGV: id.
-- Returns 1 if it was there, 0 if it was already gone.
local index, items, bodies, bytes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[1]
if redis.call('ZREM', index, id) == 0 then
  return 0
end
local size = redis.call('HSTRLEN', items, id) + redis.call('HSTRLEN', bodies, id)
redis.call('HDEL', items, id)
redis.call('HDEL', bodies, id)
redis.call('DECRBY', bytes, size)
return 1
