-- An agent server confirms it is starting a reserved job, so the reservation is never reclaimed.
-- KEYS=[res]  ARGV=[job_id]
-- Returns 1, or 0 when the reservation is gone (reclaimed or cancelled): the server must not
-- run the job.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 0)
return 1
