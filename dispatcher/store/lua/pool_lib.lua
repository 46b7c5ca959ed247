-- Shared by the pool-shard scripts. P is the shard's key prefix ("dsp:{a:<pool>/<k>}:");
-- every key derived from it shares the shard's hash tag, so all live in the caller's slot.
-- The free index (P..'free': server -> free slots) holds the servers placement may use
-- (alive when last looked at, not draining), full ones with 0; its total (P..'total') is
-- the sum, kept in step by every script that changes what they count. The deadline index
-- (P..'reach': job -> Redis ms) holds reservations not yet confirmed, for the shard tick
-- to reclaim those that never reached their server.

local function redis_now()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- Move a server's entry in the free index from ``old`` to ``free`` slots; nil for either
-- means out of the index. The total moves with it.
local function index_free(P, id, old, free)
  if free == old then return end
  if free then
    redis.call('ZADD', P .. 'free', free, id)
  else
    redis.call('ZREM', P .. 'free', id)
  end
  redis.call('INCRBY', P .. 'total', (free or 0) - (old or 0))
end

local function set_free(P, id, free)
  local listed = redis.call('ZSCORE', P .. 'free', id)
  index_free(P, id, listed and tonumber(listed) or nil, free)
end

-- A server's free slots as placement may use them; nil when it may not be used at all
-- (its heartbeat expired, it is draining, or it is gone). A FULL status is only its count
-- as of that heartbeat: the reservations are the count that matters.
local function free_slots(P, id, now)
  local f = redis.call('HMGET', P .. 'srv:' .. id, 'cap', 'status')
  local exp = tonumber(redis.call('ZSCORE', P .. 'exp', id) or '0')
  if not f[1] or f[2] == '2' or exp <= now then return nil end
  return math.max(0, tonumber(f[1]) - redis.call('HLEN', P .. 'res:' .. id))
end

local function refresh_free(P, id, now)
  set_free(P, id, free_slots(P, id, now))
end

-- A slot freed: one more in the index, for a server that is in it (one out of it stays
-- out until a heartbeat puts it back).
local function one_more_free(P, id)
  if redis.call('ZADD', P .. 'free', 'XX', 'INCR', 1, id) then
    redis.call('INCRBY', P .. 'total', 1)
  end
end

-- Take a job out of the shard's job and deadline indexes, if they hold it for this server.
local function unindex(P, job, id)
  if redis.call('HGET', P .. 'jobs', job) == id then
    redis.call('HDEL', P .. 'jobs', job)
    redis.call('ZREM', P .. 'reach', job)
  end
end

-- Take a job's reservation off a server (and out of the indexes); 1 if it held one.
local function unreserve(P, job, id)
  unindex(P, job, id)
  return redis.call('HDEL', P .. 'res:' .. id, job)
end

-- Take a server's reservations out of the shard's job index and delete its keys (it left,
-- or is reaped). Returns how many reservations it held.
local function drop_server(P, id)
  local jobs = redis.call('HKEYS', P .. 'res:' .. id)
  for _, job in ipairs(jobs) do unindex(P, job, id) end
  set_free(P, id, nil)
  redis.call('DEL', P .. 'srv:' .. id, P .. 'res:' .. id, P .. 'inbox:' .. id)
  return #jobs
end
