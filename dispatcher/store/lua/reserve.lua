-- Reserve a slot for a job on the server of the shard with the most free slots, and deliver
-- the assignment to that server's inbox, atomically: concurrent placements always see each
-- other. O(log N): the candidates come from the free index, best first.
-- KEYS=[shard jobs]
-- ARGV=[shard prefix, job_id, reach_ms, load_threshold, payload, excluded server ids...]
-- Excluded servers (those that rejected the job) are taken only when no other can.
-- Returns the server id holding the reservation (an earlier one for the same job id when this
-- is a replay), or false when no server of the shard had room.
--@include pool_lib
local P, job = ARGV[1], ARGV[2]
local existing = redis.call('HGET', KEYS[1], job)
if existing then return existing end
local now = redis_now()
local threshold = tonumber(ARGV[4])
local excluded = {}
for i = 6, #ARGV do excluded[ARGV[i]] = true end

local function take(id)
  local deadline = now + tonumber(ARGV[3])
  redis.call('HSET', P .. 'res:' .. id, job, deadline)
  redis.call('HSET', KEYS[1], job, id)
  redis.call('ZADD', P .. 'reach', deadline, job)
  redis.call('XADD', P .. 'inbox:' .. id, 'MAXLEN', '~', 1000, '*', 'm', ARGV[5])
  refresh_free(P, id, now)
  return id
end

-- Entries of servers that died, drained or filled since the index last saw them are
-- corrected on the way; overloaded servers are passed over. 8 bounds the walk (and the
-- call's time: each step is a handful of calls).
local fallback = nil
for _, id in ipairs(redis.call('ZREVRANGEBYSCORE', P .. 'free', '+inf', 1, 'LIMIT', 0, 8)) do
  local free = free_slots(P, id, now)
  set_free(P, id, free)
  if free > 0 and tonumber(redis.call('HGET', P .. 'srv:' .. id, 'load') or '1') < threshold then
    if not excluded[id] then return take(id) end
    fallback = fallback or id
  end
end
if fallback then return take(fallback) end
return false
