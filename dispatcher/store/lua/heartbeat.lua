-- An agent server's capacity heartbeat; also reclaims its reservations that never reached it,
-- and tells it which of its running jobs no longer hold a reservation (re-placed elsewhere
-- while it was cut off: it must stop them).
-- KEYS=[servers, srv, res, pool_jobs]
-- ARGV=[server_id, capacity, load, status, ttl_ms, info, running job ids...]
-- Returns {slots in use, {reclaimed job ids...}, {running job ids without a reservation...}}.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'cap', ARGV[2], 'load', ARGV[3], 'status', ARGV[4],
  'exp', now + tonumber(ARGV[5]), 'ttl', ARGV[5], 'info', ARGV[6])
local reclaimed = {}
local entries = redis.call('HGETALL', KEYS[3])
for i = 1, #entries, 2 do
  local deadline = tonumber(entries[i + 1])
  if deadline > 0 and deadline < now then
    redis.call('HDEL', KEYS[3], entries[i])
    if redis.call('HGET', KEYS[4], entries[i]) == ARGV[1] then
      redis.call('HDEL', KEYS[4], entries[i])
    end
    reclaimed[#reclaimed + 1] = entries[i]
  end
end
local gone = {}
for i = 7, #ARGV do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then gone[#gone + 1] = ARGV[i] end
end
return {redis.call('HLEN', KEYS[3]), reclaimed, gone}
