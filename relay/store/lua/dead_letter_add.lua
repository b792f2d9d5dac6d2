-- Keep one dead letter, then drop the oldest until the store is within its bounds.
-- KEYS: index (zset id -> received µs), items (hash id -> JSON record), bodies (hash
-- id -> raw body), bytes (integer: record + body bytes held); all one hash tag.
-- ARGV: id, score, record, body, max_letters, max_bytes.
-- Returns how many older letters were dropped. The newest letter always stays.
local index, items, bodies, bytes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id = ARGV[1]
local max_letters, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])

local function forget(victim)
  local size = redis.call('HSTRLEN', items, victim) + redis.call('HSTRLEN', bodies, victim)
  redis.call('ZREM', index, victim)
  redis.call('HDEL', items, victim)
  redis.call('HDEL', bodies, victim)
  return redis.call('DECRBY', bytes, size)
end

if redis.call('HEXISTS', items, id) == 1 then
  forget(id)
end
redis.call('HSET', items, id, ARGV[3])
redis.call('HSET', bodies, id, ARGV[4])
redis.call('ZADD', index, ARGV[2], id)
local total = redis.call('INCRBY', bytes, #ARGV[3] + #ARGV[4])
local count = redis.call('ZCARD', index)
local dropped = 0
while count > 1 and (count > max_letters or total > max_bytes) do
  local oldest = redis.call('ZRANGE', index, 0, 0)[1]
  if oldest == id then
    break
  end
  total = forget(oldest)
  count = count - 1
  dropped = dropped + 1
end
return dropped
