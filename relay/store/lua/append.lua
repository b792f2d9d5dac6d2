-- Append events to one account's stream, atomically, in one round trip.
--
-- KEYS[1] stream   sorted set: member = encoded event, score = timestamp (us)
-- KEYS[2] clock    string: the last timestamp assigned (the account's cursor)
-- KEYS[3] meta     hash: origin (first time this store knew the account), trimmed
-- KEYS[4] ids      sorted set: event id -> its timestamp (idempotency window)
-- ARGV[1] max_events, ARGV[2] max_age_us, ARGV[3] dedupe_window_us, ARGV[4] dedupe_max
-- ARGV[5] account, ARGV[6] wake-up command ('PUBLISH', 'SPUBLISH' or '' for none),
-- ARGV[7] wake-up channel (for SPUBLISH: a shard channel in this account's slot)
-- ARGV[8] hint max bytes: a larger event's hint travels without its body
-- ARGV[9..] pairs of (event id, encoded event)
--
-- Guarantees: timestamps come from this server's clock (TIME), strictly increase per
-- account (ts = max(now, last + 1)) and are never reused; an id already in the window is
-- answered with its first timestamp and not stored again, so a client library that
-- re-runs this script after a dropped connection cannot duplicate anything.
-- For every event stored, in commit order, a hint "<account> <prev> <ts> <low>\n<event>"
-- is published on the wake-up channel from inside the script, once everything is written:
-- a hint leaves only if the append committed, at no extra round trip. `prev` is the
-- account's clock before this event (a reader that holds everything up to `prev` may add
-- this event and hold everything up to `ts`), `low` the stream's low watermark after this
-- append's trim; an event above ARGV[8] bytes travels without "\n<event>".
-- On a cluster SPUBLISH reaches the subscribers of this shard only, where PUBLISH would be
-- broadcast to every node over the cluster bus.
-- Returns a flat list of (timestamp, duplicate flag) per event, as decimal strings.
-- Scores stay integers: tostring() would print 1.7529e+15, so format with %d.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')

local origin = tonumber(redis.call('HGET', KEYS[3], 'origin') or '0')
if origin == 0 then
  origin = now
  redis.call('HSET', KEYS[3], 'origin', string.format('%d', now))
  if last < now then last = now end
end

local out = {}
local stored = {}  -- per stored event: {ARGV index of its member, prev, ts}
for i = 9, #ARGV, 2 do
  local id, member = ARGV[i], ARGV[i + 1]
  local seen = redis.call('ZSCORE', KEYS[4], id)
  if seen then
    out[#out + 1] = string.format('%d', tonumber(seen))
    out[#out + 1] = '1'
  else
    local ts = now
    if ts <= last then ts = last + 1 end
    local score = string.format('%d', ts)
    stored[#stored + 1] = {i + 1, string.format('%d', last), score}
    last = ts
    redis.call('ZADD', KEYS[1], score, member)
    redis.call('ZADD', KEYS[4], score, id)
    out[#out + 1] = score
    out[#out + 1] = '0'
  end
end
redis.call('SET', KEYS[2], string.format('%d', last))

if #stored > 0 then
  local trimmed = nil
  local max_events = tonumber(ARGV[1])
  local max_age = tonumber(ARGV[2])
  if max_age > 0 then
    local cutoff = string.format('(%d', now - max_age)
    local old = redis.call('ZREVRANGEBYSCORE', KEYS[1], cutoff, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #old > 0 then
      trimmed = tonumber(old[2])
      redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
    end
  end
  if max_events > 0 then
    local excess = redis.call('ZCARD', KEYS[1]) - max_events
    if excess > 0 then
      local edge = redis.call('ZRANGE', KEYS[1], excess - 1, excess - 1, 'WITHSCORES')
      local edge_ts = tonumber(edge[2])
      if not trimmed or edge_ts > trimmed then trimmed = edge_ts end
      redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
    end
  end
  local low = tonumber(redis.call('HGET', KEYS[3], 'trimmed') or '0')
  if trimmed and trimmed > low then
    low = trimmed
    redis.call('HSET', KEYS[3], 'trimmed', string.format('%d', trimmed))
  end
  if origin > low then low = origin end

  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', string.format('(%d', now - tonumber(ARGV[3])))
  local extra_ids = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[4])
  if extra_ids > 0 then
    redis.call('ZREMRANGEBYRANK', KEYS[4], 0, extra_ids - 1)
  end
  if ARGV[6] ~= '' then
    local tail = ' ' .. string.format('%d', low)
    local max_body = tonumber(ARGV[8])
    for _, s in ipairs(stored) do
      local hint = ARGV[5] .. ' ' .. s[2] .. ' ' .. s[3] .. tail
      local member = ARGV[s[1]]
      if #member <= max_body then hint = hint .. '\n' .. member end
      redis.call(ARGV[6], ARGV[7], hint)
    end
  end
end

return out
