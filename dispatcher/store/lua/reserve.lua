-- Reserve a slot for a job on the server of the shard with the most free slots, and deliver
-- the assignment to that server's inbox, atomically: concurrent placements always see each
-- other. O(log N): the candidates come from the free index, best first.
-- KEYS=[shard jobs]
-- ARGV=[shard prefix, job_id, reach_ms, load_threshold, payload, target, excluded server ids...]
-- Excluded servers (those that rejected the job) are taken only when no other can.
-- target is "" for any server, else the parts a server must match, joined by US:
-- 's=<server id>' and tags (see pool_lib's tags); candidates then come from that server or
-- the smallest of the tags' server sets (at most 64 of them, at random past that).
-- Returns the server id holding the reservation (an earlier one for the same job id when this
-- is a replay), false when no server of the shard had room, 0 when no live server of the
-- shard matches the target.
--@include pool_lib
local P, job = ARGV[1], ARGV[2]
local existing = redis.call('HGET', KEYS[1], job)
if existing then return existing end
local now = redis_now()
local threshold = tonumber(ARGV[4])
local excluded = {}
for i = 7, #ARGV do excluded[ARGV[i]] = true end

local function take(id, listed, free)
  local deadline = now + tonumber(ARGV[3])
  redis.call('HSET', P .. 'res:' .. id, job, deadline)
  redis.call('HSET', KEYS[1], job, id)
  redis.call('ZADD', P .. 'reach', deadline, job)
  redis.call('XADD', P .. 'inbox:' .. id, 'MAXLEN', '~', 1000, '*', 'm', ARGV[5])
  index_free(P, id, listed, free - 1)
  return id
end

local function listed_free(id)
  local listed = redis.call('ZSCORE', P .. 'free', id)
  return listed and tonumber(listed) or nil
end

-- A targeted job: only the servers matching its target are looked at.
local function reserve_targeted(target)
  local server, wanted = nil, {}
  for _, part in ipairs(split(target)) do
    if string.sub(part, 1, 2) == 's=' then server = string.sub(part, 3)
    else wanted[#wanted + 1] = part end
  end
  local candidates = {server}
  if not server then
    local smallest, size = nil, nil
    for _, tag in ipairs(wanted) do
      local n = redis.call('SCARD', P .. 'tag:' .. tag)
      if not size or n < size then smallest, size = tag, n end
    end
    if size == 0 then return 0 end
    candidates = redis.call('SRANDMEMBER', P .. 'tag:' .. smallest, 64)
  end
  local matched, best, fallback = false, nil, nil
  for _, id in ipairs(candidates) do
    local free, load, tags = usable(P, id, now)
    if free and has_tags(tags, wanted) then
      matched = true
      if free > 0 and load < threshold then
        if excluded[id] then
          if not fallback or free > fallback[2] then fallback = {id, free} end
        elseif not best or free > best[2] then
          best = {id, free}
        end
      end
    end
  end
  best = best or fallback
  if best then return take(best[1], listed_free(best[1]), best[2]) end
  if matched then return false end
  return 0
end

local target = ARGV[6] or ''
if target ~= '' then return reserve_targeted(target) end

-- Entries of servers that died, drained or filled since the index last saw them are
-- corrected on the way; overloaded servers are passed over. 8 bounds the walk (and the
-- call's time: each step is a handful of calls).
local fallback = nil
local listing = redis.call('ZREVRANGEBYSCORE', P .. 'free', '+inf', 1, 'WITHSCORES', 'LIMIT', 0, 8)
for i = 1, #listing, 2 do
  local id, listed = listing[i], tonumber(listing[i + 1])
  local free, load = usable(P, id, now)  -- nil: out of the index (dead, draining or gone)
  if free and free > 0 and load < threshold then
    if not excluded[id] then return take(id, listed, free) end
    fallback = fallback or {id, listed, free}
  end
  index_free(P, id, listed, free)
  if fallback and fallback[1] == id then fallback[2] = free end
end
if fallback then return take(fallback[1], fallback[2], fallback[3]) end
return false
