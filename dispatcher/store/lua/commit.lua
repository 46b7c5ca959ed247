-- Persist a batch of job and room-life changes and ack the events they came from, fenced by
-- the lease.
-- KEYS=[lease, jobs, active, events, life]
-- ARGV=[lease_value, group, n_acks, ack_id..., n_jobs, (dispatch_id, record, active 0/1) x n_jobs,
--       then (room, life_record or "" to forget it) pairs to the end]
-- Returns 1, or an error "FENCED" when the caller no longer holds the lease.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED lease lost') end
local n_acks = tonumber(ARGV[3])
local i = 4
if n_acks > 0 then
  redis.call('XACK', KEYS[4], ARGV[2], unpack(ARGV, i, i + n_acks - 1))
end
i = i + n_acks
local jobs_end = i + 1 + 3 * tonumber(ARGV[i])
i = i + 1
while i < jobs_end do
  local id = ARGV[i]
  redis.call('HSET', KEYS[2], id, ARGV[i + 1])
  if ARGV[i + 2] == '1' then redis.call('SADD', KEYS[3], id) else redis.call('SREM', KEYS[3], id) end
  i = i + 3
end
while i <= #ARGV do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[5], ARGV[i])
  else
    redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
return 1
