-- A scheduler's look at one pool shard, a few times a second: the shard's free slots and
-- size, the servers whose heartbeat expired since the caller's cursor (out of the free
-- index from now on), and upkeep in bounded amounts: reservations that never reached
-- their server by their deadline are reclaimed, servers dead for long are reaped.
-- O(log N + count + reclaim + reap), never a walk over the shard.
-- KEYS=[shard jobs]
-- ARGV=[shard prefix, cursor (Redis ms), skip (entries at the cursor already seen), count,
--       reap_after_ms, reap_count, reclaim_count] (counts of 0 skip that upkeep)
-- Returns {now, free total, servers, {id, expiry, ttl, ...}, reclaimed, tag epoch}: the
-- epoch moves whenever a server's tags (version, labels) come or go (pool_lib's retag).
--@include pool_lib
local P = ARGV[1]
local now = redis_now()
local reclaimed = 0
local due = {}
if tonumber(ARGV[7]) > 0 then
  due = redis.call('ZRANGEBYSCORE', P .. 'reach', '-inf', now - 1, 'LIMIT', 0, tonumber(ARGV[7]))
end
for _, job in ipairs(due) do
  redis.call('ZREM', P .. 'reach', job)
  local id = redis.call('HGET', KEYS[1], job)
  local deadline = id and tonumber(redis.call('HGET', P .. 'res:' .. id, job) or '0') or 0
  if deadline > 0 and deadline < now then  -- still unconfirmed: it never got there
    unreserve(P, job, id)
    one_more_free(P, id)
    reclaimed = reclaimed + 1
  end
end
if tonumber(ARGV[6]) > 0 then
  local dead = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', now - tonumber(ARGV[5]),
    'LIMIT', 0, tonumber(ARGV[6]))
  for _, id in ipairs(dead) do
    drop_server(P, id)
    redis.call('ZREM', P .. 'exp', id)
  end
end
local expired = {}
-- Up to the last whole millisecond: no later write can add an entry at or below it
-- (heartbeats set expiries ahead of now, a server that leaves gets now), so the cursor
-- and the count seen at it stay exact.
local rows = redis.call('ZRANGEBYSCORE', P .. 'exp', ARGV[2], now - 1, 'WITHSCORES',
  'LIMIT', tonumber(ARGV[3]), tonumber(ARGV[4]))
for i = 1, #rows, 2 do
  local id = rows[i]
  set_free(P, id, nil)
  local n = #expired
  expired[n + 1], expired[n + 2] = id, rows[i + 1]
  expired[n + 3] = redis.call('HGET', P .. 'srv:' .. id, 'ttl') or '0'
end
local total = tonumber(redis.call('GET', P .. 'total') or '0')
local epoch = tonumber(redis.call('GET', P .. 'tagv') or '0')
return {now, total, redis.call('ZCARD', P .. 'exp'), expired, reclaimed, epoch}
