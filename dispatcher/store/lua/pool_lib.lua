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

-- A server's free slots as placement may use them, its load and its tags; nil when it
-- may not be used at all (its heartbeat expired, it is draining, or it is gone). A FULL
-- status is only its count as of that heartbeat: the reservations are the count that
-- matters. ``drain`` is an operator's drain (DrainServer), which its heartbeats leave alone.
local function usable(P, id, now)
  local f = redis.call('HMGET', P .. 'srv:' .. id, 'cap', 'status', 'drain', 'load', 'tags')
  local exp = tonumber(redis.call('ZSCORE', P .. 'exp', id) or '0')
  if not f[1] or f[2] == '2' or f[3] or exp <= now then return nil end
  local free = math.max(0, tonumber(f[1]) - redis.call('HLEN', P .. 'res:' .. id))
  return free, tonumber(f[4] or '1'), f[5] or ''
end

local function free_slots(P, id, now)
  return (usable(P, id, now))
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

-- Tags (targeted placement, dispatcher/targets.py): 'v=<version>' and 'l:<key>=<value>'
-- per label, from a server's ServerInfo, stored joined by US in its hash ('tags'). The
-- shard keeps a set of servers per tag (P..'tag:'..tag), the count of servers per tag
-- (P..'tags') and a counter bumped at every change (P..'tagv'), which tells a scheduler's
-- view to read the counts again.
local SEP = '\31'

local function tags_of(info)
  local ok, t = pcall(cmsgpack.unpack, info)
  if not ok or type(t) ~= 'table' then return '' end
  local tags = {}
  if type(t.version) == 'string' and t.version ~= '' then tags[1] = 'v=' .. t.version end
  if type(t.labels) == 'table' then
    for k, v in pairs(t.labels) do tags[#tags + 1] = 'l:' .. tostring(k) .. '=' .. tostring(v) end
  end
  table.sort(tags)
  return table.concat(tags, SEP)
end

local function split(text)
  local parts = {}
  for part in string.gmatch(text, '[^' .. SEP .. ']+') do parts[#parts + 1] = part end
  return parts
end

local function has_tags(tags, wanted)
  local all = SEP .. tags .. SEP
  for _, tag in ipairs(wanted) do
    if not string.find(all, SEP .. tag .. SEP, 1, true) then return false end
  end
  return true
end

local function count_tags(P, id, tags, step)
  for _, tag in ipairs(split(tags)) do
    redis.call(step > 0 and 'SADD' or 'SREM', P .. 'tag:' .. tag, id)
    if redis.call('HINCRBY', P .. 'tags', tag, step) <= 0 then
      redis.call('HDEL', P .. 'tags', tag)
    end
  end
end

-- A server's tags are now ``tags``; the shard's tag indexes follow when they changed.
local function retag(P, id, tags)
  local old = redis.call('HGET', P .. 'srv:' .. id, 'tags') or ''
  if old == tags then return end
  count_tags(P, id, old, -1)
  count_tags(P, id, tags, 1)
  redis.call('HSET', P .. 'srv:' .. id, 'tags', tags)
  redis.call('INCR', P .. 'tagv')
end

-- Take a server's reservations out of the shard's job index and delete its keys (it left,
-- or is reaped). Returns how many reservations it held.
local function drop_server(P, id)
  local jobs = redis.call('HKEYS', P .. 'res:' .. id)
  for _, job in ipairs(jobs) do unindex(P, job, id) end
  retag(P, id, '')
  set_free(P, id, nil)
  redis.call('DEL', P .. 'srv:' .. id, P .. 'res:' .. id, P .. 'inbox:' .. id)
  return #jobs
end
