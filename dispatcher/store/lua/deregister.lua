-- Remove a server from its pool with its reservations and inbox (clean shutdown or reaping).
-- KEYS=[servers, srv, res, inbox, pool_jobs]  ARGV=[server_id]
local jobs = redis.call('HKEYS', KEYS[3])
for _, job in ipairs(jobs) do
  if redis.call('HGET', KEYS[5], job) == ARGV[1] then redis.call('HDEL', KEYS[5], job) end
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return #jobs
