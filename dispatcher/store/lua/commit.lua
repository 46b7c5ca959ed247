-- Persist a batch of job-state changes and ack the events they came from, fenced by the lease.
-- KEYS=[lease, jobs, active, events]
-- ARGV=[lease_value, group, n_acks, ack_id..., then per job: dispatch_id, record, active 0/1]
-- Returns 1, or an error "FENCED" when the caller no longer holds the lease.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED lease lost') end
local n_acks = tonumber(ARGV[3])
local i = 4
if n_acks > 0 then
  redis.call('XACK', KEYS[4], ARGV[2], unpack(ARGV, i, i + n_acks - 1))
end
i = i + n_acks
while i <= #ARGV do
  local id = ARGV[i]
  redis.call('HSET', KEYS[2], id, ARGV[i + 1])
  if ARGV[i + 2] == '1' then redis.call('SADD', KEYS[3], id) else redis.call('SREM', KEYS[3], id) end
  i = i + 3
end
return 1
