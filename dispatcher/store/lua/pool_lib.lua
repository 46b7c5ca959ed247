-- Shared by the pool-shard scripts. P is the shard's key prefix ("dsp:{a:<pool>/<k>}:");
-- every key derived from it shares the shard's hash tag, so all live in the caller's slot.
-- The free index (P..'free': server -> free slots, for servers placement may use) and its
-- total (P..'total') are kept in step by every script that changes what they count. The
-- deadline index (P..'reach': job -> Redis ms) holds reservations not yet confirmed, for
-- the shard tick to reclaim those that never reached their server.

local function redis_now()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- Set a server's entry in the free index (0 takes it out), and the total with it.
local function set_free(P, id, free)
  local old = tonumber(redis.call('ZSCORE', P .. 'free', id) or '0')
  if free == old then return end
  if free > 0 then
    redis.call('ZADD', P .. 'free', free, id)
  else
    redis.call('ZREM', P .. 'free', id)
  end
  redis.call('INCRBY', P .. 'total', free - old)
end

-- A server's free slots as placement may use them: none unless its heartbeat has not
-- expired and it is not draining (a FULL status is only its count as of that heartbeat).
local function free_slots(P, id, now)
  local f = redis.call('HMGET', P .. 'srv:' .. id, 'cap', 'status')
  local exp = tonumber(redis.call('ZSCORE', P .. 'exp', id) or '0')
  if not f[1] or f[2] == '2' or exp <= now then return 0 end
  return math.max(0, tonumber(f[1]) - redis.call('HLEN', P .. 'res:' .. id))
end

local function refresh_free(P, id, now)
  set_free(P, id, free_slots(P, id, now))
end

-- Take a job's reservation off a server (and out of the indexes); 1 if it held one.
local function unreserve(P, job, id)
  if redis.call('HGET', P .. 'jobs', job) == id then
    redis.call('HDEL', P .. 'jobs', job)
    redis.call('ZREM', P .. 'reach', job)
  end
  return redis.call('HDEL', P .. 'res:' .. id, job)
end

-- Take a server's reservations out of the shard's job index and delete its keys (it left,
-- or is reaped). Returns how many reservations it held.
local function drop_server(P, id)
  local jobs = redis.call('HKEYS', P .. 'res:' .. id)
  for _, job in ipairs(jobs) do
    if redis.call('HGET', P .. 'jobs', job) == id then
      redis.call('HDEL', P .. 'jobs', job)
      redis.call('ZREM', P .. 'reach', job)
    end
  end
  set_free(P, id, 0)
  redis.call('DEL', P .. 'srv:' .. id, P .. 'res:' .. id, P .. 'inbox:' .. id)
  return #jobs
end
