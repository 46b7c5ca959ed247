-- Free a job's slot on a server: the job ended, was rejected, or its assignment timed out.
-- KEYS=[res, pool_jobs]  ARGV=[job_id, server_id]
-- Returns 1 when a reservation was freed.
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
return redis.call('HDEL', KEYS[1], ARGV[1])
