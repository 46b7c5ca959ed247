-- A pool's servers for the scheduler's placement snapshot; reaps servers dead for long.
-- KEYS=[servers, pool_jobs]  ARGV=[key_prefix "dsp:{a:<name>}:", reap_after_ms]
-- Returns {now_ms, then per server: id, cap, load, status, exp, used, ttl}.
-- Server keys are derived here rather than declared: they share the pool's hash tag, so
-- they live in the same cluster slot as KEYS[1].
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {now}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local srv, res = ARGV[1] .. 'srv:' .. id, ARGV[1] .. 'res:' .. id
  local f = redis.call('HMGET', srv, 'cap', 'load', 'status', 'exp', 'ttl')
  local exp = tonumber(f[4] or '0')
  if exp + tonumber(ARGV[2]) < now then
    redis.call('SREM', KEYS[1], id)
    for _, job in ipairs(redis.call('HKEYS', res)) do
      if redis.call('HGET', KEYS[2], job) == id then redis.call('HDEL', KEYS[2], job) end
    end
    redis.call('DEL', srv, res, ARGV[1] .. 'inbox:' .. id)
  else
    local n = #out
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, f[1] or '0', f[2] or '1', f[3] or '1'
    out[n + 5], out[n + 6], out[n + 7] = tostring(exp), redis.call('HLEN', res), f[5] or '0' 
  end
end
return out
