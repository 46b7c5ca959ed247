-- Remove a server from its shard with its reservations and inbox (a clean shutdown). It
-- stays in the expiry index with the time it left, so schedulers see it go; the reaper
-- removes it later.
-- KEYS=[shard jobs]  ARGV=[shard prefix, server_id]
-- Returns how many reservations it held.
--@include pool_lib
local P, id = ARGV[1], ARGV[2]
local held = drop_server(P, id)
redis.call('ZADD', P .. 'exp', redis_now(), id)
return held
