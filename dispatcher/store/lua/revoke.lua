-- The assignment timer fired: take the reservation back unless the server already confirmed
-- it (then the job is starting and its RUNNING report is on its way; re-placing it would
-- run it twice). A revoked reservation makes the server's later confirm fail, so it never
-- starts the job.
-- KEYS=[res, pool_jobs]  ARGV=[job_id, server_id]
-- Returns 0 when the server confirmed (keep the job there), 1 when revoked.
if redis.call('HGET', KEYS[1], ARGV[1]) == '0' then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
return 1
