-- The assignment timer fired: take the reservation back unless the server already confirmed
-- it (then the job is starting and its RUNNING report is on its way; re-placing it would
-- run it twice). A revoked reservation makes the server's later confirm fail, so it never
-- starts the job.
-- KEYS=[shard jobs]  ARGV=[shard prefix, job_id, server_id]
-- Returns 0 when the server confirmed (keep the job there), 1 when revoked.
--@include pool_lib
local P, job, id = ARGV[1], ARGV[2], ARGV[3]
local res = P .. 'res:' .. id
if redis.call('HGET', res, job) == '0' then return 0 end
if unreserve(P, job, id) == 1 then one_more_free(P, id) end
return 1
