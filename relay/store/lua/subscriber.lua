-- The delivery cursor and the lease of one (subscriber, account), in the account's slot.
--
-- KEYS[1] hash relay:{<account>}:sub:<subscriber>:
--   cursor    the timestamp of the last event delivered with a 2xx (absent before any)
--   fence     the fencing token: +1 at every new lease and every rewind, never reused
--   holder    the replica holding the lease ('' for none), until `expires` (ms, Redis TIME)
--   attempts, error, next (us): the failed attempts at the head event, for the admin route
-- ARGV[1] op, ARGV[2] holder, ARGV[3] lease ms, ARGV[4] token, ARGV[5..7] op arguments:
--   acquire   a new lease (and a new token) if nobody else holds an unexpired one (a
--             holder id is unique to one process, which runs one worker per key)
--   renew     extend the lease, only under the current token
--   advance   ARGV[5] = the new cursor (clears the failure fields), only under the token
--   fail      ARGV[5] attempts, ARGV[6] error, ARGV[7] next attempt (us), only under the token
--   release   give the lease up, only under the token
--   rewind    ARGV[5] = the new cursor; bumps the fence, so the holder's token goes stale
--             and it re-reads from the new cursor; the admin route's "redeliver from here"
--   state     read only
-- Returns {token or 0 (refused), cursor, holder, lease ms left, attempts, error, next, fence}.
--
-- The fence is what makes a replica that stalled past its lease (a GC pause, SIGSTOP, a
-- partition) harmless: every write is checked against it here, in one atomic step, so a
-- stale holder can move the cursor neither back nor forward.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local h = redis.call('HMGET', KEYS[1], 'cursor', 'fence', 'holder', 'expires')
local cursor = h[1] or ''
local fence = tonumber(h[2] or '0')
local holder = h[3] or ''
local expires = tonumber(h[4] or '0')
local granted = 0

local function current()
  return holder ~= '' and holder == ARGV[2] and fence == tonumber(ARGV[4])
end

if op == 'acquire' then
  if holder == '' or expires <= now or holder == ARGV[2] then
    fence = fence + 1
    holder = ARGV[2]
    expires = now + tonumber(ARGV[3])
    redis.call('HSET', KEYS[1], 'fence', string.format('%d', fence), 'holder', holder,
      'expires', string.format('%d', expires))
    granted = fence
  end
elseif op == 'renew' then
  if current() then
    expires = now + tonumber(ARGV[3])
    redis.call('HSET', KEYS[1], 'expires', string.format('%d', expires))
    granted = fence
  end
elseif op == 'advance' then
  if current() then
    cursor = ARGV[5]
    redis.call('HSET', KEYS[1], 'cursor', cursor, 'attempts', '0', 'error', '', 'next', '')
    granted = fence
  end
elseif op == 'fail' then
  if current() then
    redis.call('HSET', KEYS[1], 'attempts', ARGV[5], 'error', ARGV[6], 'next', ARGV[7])
    granted = fence
  end
elseif op == 'release' then
  if current() then
    holder = ''
    expires = 0
    redis.call('HSET', KEYS[1], 'holder', '', 'expires', '0')
    granted = fence
  end
elseif op == 'rewind' then
  fence = fence + 1
  cursor = ARGV[5]
  holder = ''
  expires = 0
  redis.call('HSET', KEYS[1], 'cursor', cursor, 'fence', string.format('%d', fence),
    'holder', '', 'expires', '0', 'attempts', '0', 'error', '', 'next', '')
  granted = fence
end

local left = expires - now
if holder == '' or left < 0 then left = 0 end
local f = redis.call('HMGET', KEYS[1], 'attempts', 'error', 'next')
return {granted, cursor, holder, left, tonumber(f[1] or '0'), f[2] or '', f[3] or '', fence}
