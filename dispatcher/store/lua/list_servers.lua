-- The live servers of one pool shard, for an operator's listing (ListServers): not a
-- control-plane call, so it walks the shard (O(its servers)).
-- KEYS=[shard jobs]  ARGV=[shard prefix]
-- Returns {now, {id, expiry, cap, load, status, drain, ttl, info, reserved, running}...}
-- flattened; running counts the confirmed reservations, reserved all of them.
--@include pool_lib
local P = ARGV[1]
local now = redis_now()
local rows = {}
local live = redis.call('ZRANGEBYSCORE', P .. 'exp', now + 1, '+inf', 'WITHSCORES')
for i = 1, #live, 2 do
  local id = live[i]
  local f = redis.call('HMGET', P .. 'srv:' .. id, 'cap', 'load', 'status', 'drain', 'ttl', 'info')
  if f[1] then
    local held = redis.call('HVALS', P .. 'res:' .. id)
    local running = 0
    for _, deadline in ipairs(held) do
      if deadline == '0' then running = running + 1 end
    end
    local n = #rows
    rows[n + 1], rows[n + 2] = id, live[i + 1]
    for k = 1, 6 do rows[n + 2 + k] = f[k] or '' end
    rows[n + 9], rows[n + 10] = #held, running
  end
end
return {now, rows}
