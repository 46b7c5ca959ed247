-- An agent server's capacity heartbeat; also reclaims its reservations that never reached it,
-- and tells it which of its running jobs no longer hold a reservation (re-placed elsewhere
-- while it was cut off: it must stop them).
-- KEYS=[shard jobs]
-- ARGV=[shard prefix, server_id, capacity, load, status, ttl_ms, info, running job ids...]
-- Returns {slots in use, {reclaimed job ids...}, {running job ids without a reservation...}}.
--@include pool_lib
local P, id = ARGV[1], ARGV[2]
local res = P .. 'res:' .. id
local now = redis_now()
redis.call('ZADD', P .. 'exp', now + tonumber(ARGV[6]), id)
redis.call('HSET', P .. 'srv:' .. id, 'cap', ARGV[3], 'load', ARGV[4], 'status', ARGV[5],
  'ttl', ARGV[6], 'info', ARGV[7])
local reclaimed = {}
local entries = redis.call('HGETALL', res)
for i = 1, #entries, 2 do
  local deadline = tonumber(entries[i + 1])
  if deadline > 0 and deadline < now then
    redis.call('HDEL', res, entries[i])
    if redis.call('HGET', KEYS[1], entries[i]) == id then redis.call('HDEL', KEYS[1], entries[i]) end
    reclaimed[#reclaimed + 1] = entries[i]
  end
end
local gone = {}
for i = 8, #ARGV do
  if redis.call('HEXISTS', res, ARGV[i]) == 0 then gone[#gone + 1] = ARGV[i] end
end
refresh_free(P, id, now)
return {redis.call('HLEN', res), reclaimed, gone}
