-- An agent server's heartbeat: its expiry, and what it says of itself when that changed.
-- Also tells it which of its running jobs no longer hold a reservation (re-placed elsewhere
-- while it was cut off: it must stop them). The SDK sends it when it has something to say
-- or jobs to check; otherwise it only extends its expiry with a plain ZADD (see
-- workers/server.py).
-- KEYS=[shard jobs]
-- ARGV=[shard prefix, server_id, ttl_ms, capacity, load, status, info, running job ids...]
-- capacity, load, status and info are "" when unchanged since the server's last
-- acknowledged heartbeat (it sends them all now and then, and after any failure).
-- Returns {now (Redis ms), {running job ids without a reservation...}}. An operator's drain
-- ('drain' in the server's hash) is left as it is: the server learns it from its inbox.
--@include pool_lib
local P, id = ARGV[1], ARGV[2]
local now = redis_now()
local before = tonumber(redis.call('ZSCORE', P .. 'exp', id) or '0')
redis.call('ZADD', P .. 'exp', now + tonumber(ARGV[3]), id)
local srv = P .. 'srv:' .. id
if ARGV[4] ~= '' then
  local info = redis.call('HGET', srv, 'info')
  redis.call('HSET', srv, 'cap', ARGV[4], 'load', ARGV[5], 'status', ARGV[6], 'ttl', ARGV[3],
    'info', ARGV[7])
  if info ~= ARGV[7] then retag(P, id, tags_of(ARGV[7])) end  -- its version and labels
end
-- New, back from expiry (out of the free index since), or changed: placement's view of it.
if before <= now or ARGV[4] ~= '' then refresh_free(P, id, now) end
local gone = {}
if #ARGV > 7 then
  local held = redis.call('HMGET', P .. 'res:' .. id, unpack(ARGV, 8))
  for i = 1, #ARGV - 7 do
    if not held[i] then gone[#gone + 1] = ARGV[i + 7] end
  end
end
return {now, gone}
