-- An agent server confirms it is starting a reserved job, so the reservation is never reclaimed.
-- KEYS=[shard jobs]  ARGV=[shard prefix, job_id, server_id]
-- Returns 1, or 0 when the reservation is gone (reclaimed or cancelled): the server must not
-- run the job.
local P, job, id = ARGV[1], ARGV[2], ARGV[3]
local res = P .. 'res:' .. id
if redis.call('HEXISTS', res, job) == 0 then return 0 end
redis.call('HSET', res, job, 0)
redis.call('ZREM', P .. 'reach', job)
return 1
