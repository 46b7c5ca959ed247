-- An operator drains a server (dispatcher.AgentServers/DrainServer): from this call on
-- placement skips it (reserve.lua and every free-index update check 'drain'), and the
-- server is told through its inbox, so it takes no new job and lets its running ones end.
-- KEYS=[shard jobs]  ARGV=[shard prefix, server_id, inbox message]
-- Returns 1 when drained (again, for a server already drained), 0 for a server the shard
-- does not know or that has left.
--@include pool_lib
local P, id = ARGV[1], ARGV[2]
local srv = P .. 'srv:' .. id
if redis.call('EXISTS', srv) == 0 then return 0 end
if redis.call('HSETNX', srv, 'drain', 1) == 1 then
  set_free(P, id, nil)
  redis.call('XADD', P .. 'inbox:' .. id, 'MAXLEN', '~', 1000, '*', 'm', ARGV[3])
end
return 1
