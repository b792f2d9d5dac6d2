-- Read one account's events after a cursor, with the cursor rules, in one round trip.
--
-- KEYS[1] stream, KEYS[2] clock, KEYS[3] meta (see append.lua)
-- ARGV[1] since: a timestamp (us), or '' for "from now" (no events, just the clock)
-- ARGV[2] limit
--
-- Returns {clock, low watermark, member1, score1, member2, score2, ...}.
-- An account this store has never seen gets its origin now, so a cursor issued before a
-- data loss (FLUSHALL, a restart without persistence) is below the new origin and the
-- client is told to reset instead of silently missing what was lost.

local clock = tonumber(redis.call('GET', KEYS[2]) or '0')
local origin = redis.call('HGET', KEYS[3], 'origin')
if not origin then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  origin = now
  redis.call('HSET', KEYS[3], 'origin', string.format('%d', now))
  if clock < now then
    clock = now
    redis.call('SET', KEYS[2], string.format('%d', clock))
  end
else
  origin = tonumber(origin)
end
local low = origin
local trimmed = tonumber(redis.call('HGET', KEYS[3], 'trimmed') or '0')
if trimmed > low then low = trimmed end

local out = {string.format('%d', clock), string.format('%d', low)}
if ARGV[1] == '' then
  return out
end
local since = tonumber(ARGV[1])
if since > clock then since = clock end
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%d', since), '+inf',
  'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
for i = 1, #rows do
  out[#out + 1] = rows[i]
end
return out
