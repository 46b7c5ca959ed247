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

local function take(id, listed, free)
  local deadline = now + tonumber(ARGV[3])
  redis.call('HSET', P .. 'res:' .. id, job, deadline)
  redis.call('HSET', KEYS[1], job, id)
  redis.call('ZADD', P .. 'reach', deadline, job)
  redis.call('XADD', P .. 'inbox:' .. id, 'MAXLEN', '~', 1000, '*', 'm', ARGV[5])
  index_free(P, id, listed, free - 1)
  return id
end

-- Entries of servers that died, drained or filled since the index last saw them are
-- corrected on the way; overloaded servers are passed over. 8 bounds the walk (and the
-- call's time: each step is a handful of calls).
local fallback = nil
local listing = redis.call('ZREVRANGEBYSCORE', P .. 'free', '+inf', 1, 'WITHSCORES', 'LIMIT', 0, 8)
for i = 1, #listing, 2 do
  local id, listed = listing[i], tonumber(listing[i + 1])
  local f = redis.call('HMGET', P .. 'srv:' .. id, 'cap', 'status', 'load')
  local exp = tonumber(redis.call('ZSCORE', P .. 'exp', id) or '0')
  local free = nil  -- out of the index: dead, draining or gone
  if f[1] and f[2] ~= '2' and exp > now then
    free = math.max(0, tonumber(f[1]) - redis.call('HLEN', P .. 'res:' .. id))
  end
  if free and free > 0 and tonumber(f[3] or '1') < threshold then
    if not excluded[id] then return take(id, listed, free) end
    fallback = fallback or {id, listed, free}
  end
  index_free(P, id, listed, free)
  if fallback and fallback[1] == id then fallback[2] = free end
end
if fallback then return take(fallback[1], fallback[2], fallback[3]) end
return false
