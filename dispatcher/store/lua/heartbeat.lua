-- An agent server's capacity heartbeat; also reclaims its reservations that never reached it.
-- KEYS=[servers, srv, res, pool_jobs]
-- ARGV=[server_id, capacity, load, status, ttl_ms, info]
-- Returns {slots in use, reclaimed job ids...}.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'cap', ARGV[2], 'load', ARGV[3], 'status', ARGV[4],
  'exp', now + tonumber(ARGV[5]), 'info', ARGV[6])
local out = {0}
local entries = redis.call('HGETALL', KEYS[3])
for i = 1, #entries, 2 do
  local deadline = tonumber(entries[i + 1])
  if deadline > 0 and deadline < now then
    redis.call('HDEL', KEYS[3], entries[i])
    if redis.call('HGET', KEYS[4], entries[i]) == ARGV[1] then
      redis.call('HDEL', KEYS[4], entries[i])
    end
    out[#out + 1] = entries[i]
  end
end
out[1] = redis.call('HLEN', KEYS[3])
return out
