-- Take back a job's reservation from a server judged lost, only if it is lost by Redis's
-- clock now: its expiry (the time it left, 0 once reaped) and the caller's evidence bound
-- (when Redis came back plus the server's TTL) both passed by the margin. A server that
-- heartbeat again since the caller looked keeps its job.
-- KEYS=[shard jobs]  ARGV=[shard prefix, job_id, server_id, not_before_ms, margin_ms]
-- Returns 1 when taken back (re-place the job), 0 when the server heartbeat again (its
-- expiry is ahead), -1 when it has expired but is not lost yet (ask again later).
--@include pool_lib
local P, job, id = ARGV[1], ARGV[2], ARGV[3]
local now = redis_now()
local exp = tonumber(redis.call('ZSCORE', P .. 'exp', id) or '0')
if exp > now then return 0 end
if now <= math.max(exp, tonumber(ARGV[4])) + tonumber(ARGV[5]) then return -1 end
unreserve(P, job, id)
set_free(P, id, nil)
return 1
