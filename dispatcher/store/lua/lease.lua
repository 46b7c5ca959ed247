-- Acquire or renew a partition lease; every acquisition takes a new fencing token.
-- KEYS=[lease, fence]  ARGV=[node_id, ttl_ms, held_value_or_empty]
-- Returns the lease value "<node>/<token>" now held by the caller, or false when another
-- node holds it. A node that restarted under the same stable name takes its lease back at
-- once with a new token, which fences off anything the old process might still write.
local holder = redis.call('GET', KEYS[1])
if holder and holder == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return holder
end
if holder and string.sub(holder, 1, #ARGV[1] + 1) ~= ARGV[1] .. '/' then return false end
local value = ARGV[1] .. '/' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
