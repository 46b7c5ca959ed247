-- A scheduler's look at one pool shard, a few times a second: the shard's free slots and
-- size, the servers whose heartbeat expired since the caller's cursor (out of the free
-- index from now on), and the reaping of a bounded number dead for long. Bounded work:
-- O(log N + count + reap), never a walk over the shard.
-- KEYS=[shard jobs]
-- ARGV=[shard prefix, cursor (Redis ms), skip (entries at the cursor already seen), count,
--       reap_after_ms, reap_count]
-- Returns {now, free total, servers, {id, expiry, ttl, ...}}.
--@include pool_lib
local P = ARGV[1]
local now = redis_now()
local dead = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', now - tonumber(ARGV[5]),
  'LIMIT', 0, tonumber(ARGV[6]))
for _, id in ipairs(dead) do
  drop_server(P, id)
  redis.call('ZREM', P .. 'exp', id)
end
local expired = {}
-- Up to the last whole millisecond: no later write can add an entry at or below it
-- (heartbeats set expiries ahead of now, a server that leaves gets now), so the cursor
-- and the count seen at it stay exact.
local rows = redis.call('ZRANGEBYSCORE', P .. 'exp', ARGV[2], now - 1, 'WITHSCORES',
  'LIMIT', tonumber(ARGV[3]), tonumber(ARGV[4]))
for i = 1, #rows, 2 do
  local id = rows[i]
  set_free(P, id, 0)
  local n = #expired
  expired[n + 1], expired[n + 2] = id, rows[i + 1]
  expired[n + 3] = redis.call('HGET', P .. 'srv:' .. id, 'ttl') or '0'
end
local total = tonumber(redis.call('GET', P .. 'total') or '0')
return {now, total, redis.call('ZCARD', P .. 'exp'), expired}
