-- Reserve a slot for a job on the first candidate server that can take it, and deliver the
-- assignment to that server's inbox, atomically: concurrent placements always see each other.
-- KEYS=[pool_jobs, then per candidate: srv, res, inbox]
-- ARGV=[job_id, reach_ms, load_threshold, payload, then per candidate: server_id]
-- Returns the server id holding the reservation (an earlier one for the same job id when this
-- is a replay), or false when no candidate had room.
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return existing end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local threshold = tonumber(ARGV[3])
for c = 1, (#KEYS - 1) / 3 do
  local srv, res, inbox = KEYS[3 * c - 1], KEYS[3 * c], KEYS[3 * c + 1]
  local f = redis.call('HMGET', srv, 'cap', 'load', 'status', 'exp')
  -- A FULL status is only the server's count as of its last heartbeat; the reservations
  -- are the count that matters, so only DRAINING ('2') refuses a server with a free slot.
  if f[1] and tonumber(f[4]) > now and f[3] ~= '2' and tonumber(f[2]) < threshold
      and redis.call('HLEN', res) < tonumber(f[1]) then
    local server_id = ARGV[4 + c]
    redis.call('HSET', res, ARGV[1], now + tonumber(ARGV[2]))
    redis.call('HSET', KEYS[1], ARGV[1], server_id)
    redis.call('XADD', inbox, 'MAXLEN', '~', 1000, '*', 'm', ARGV[4])
    return server_id
  end
end
return false
