-- Free a job's slot on a server: the job ended, was rejected, or its assignment timed out.
-- KEYS=[shard jobs]  ARGV=[shard prefix, job_id, server_id]
-- Returns 1 when a reservation was freed.
--@include pool_lib
local P, job, id = ARGV[1], ARGV[2], ARGV[3]
local freed = unreserve(P, job, id)
if freed == 1 then one_more_free(P, id) end
return freed
