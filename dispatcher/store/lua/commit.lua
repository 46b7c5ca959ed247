-- Persist a batch of job and room-life changes and ack the events they came from, fenced by
-- the lease; queue the webhook events those changes produced in the same step.
-- KEYS=[lease, active, events, life, hooks, then the job hashes of the rooms touched]
-- ARGV=[lease_value, group, n_acks, ack_id..., n_jobs,
--       (KEYS index of the room's job hash, room, job_key, record, active 0/1) x n_jobs,
--       n_lives, (room, life_record or "" to forget it) x n_lives,
--       then one webhook event per argument to the end]
-- Returns 1, or an error "FENCED" when the caller no longer holds the lease.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED lease lost') end
local n_acks = tonumber(ARGV[3])
local i = 4
if n_acks > 0 then
  redis.call('XACK', KEYS[3], ARGV[2], unpack(ARGV, i, i + n_acks - 1))
end
i = i + n_acks
local jobs_end = i + 1 + 5 * tonumber(ARGV[i])
i = i + 1
while i < jobs_end do
  local key = ARGV[i + 2]
  redis.call('HSET', KEYS[tonumber(ARGV[i])], key, ARGV[i + 3])
  if ARGV[i + 4] == '1' then
    redis.call('HSET', KEYS[2], key, ARGV[i + 1])
  else
    redis.call('HDEL', KEYS[2], key)
  end
  i = i + 5
end
local lives_end = i + 1 + 2 * tonumber(ARGV[i])
i = i + 1
while i < lives_end do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[4], ARGV[i])
  else
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
while i <= #ARGV do
  redis.call('XADD', KEYS[5], '*', 'h', ARGV[i])
  i = i + 1
end
return 1
