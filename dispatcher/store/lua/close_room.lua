-- The lease holder closes an empty room whose timeout passed. It acts only on a state it has
-- fully seen: an unread event of the partition (a join, a re-creation) defers the close.
-- Agents still listed as participants do not keep the room open; they go with it.
-- KEYS=[lease, events, rooms, room_dispatches, room_info, participants, room_jobs, life]
-- ARGV=[lease_value, group, room, retention_s]
-- Returns 1 when closed, 0 when deferred; an error "FENCED" without the lease.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED lease lost') end
local function field(flat, name)
  for i = 1, #flat, 2 do
    if flat[i] == name then return flat[i + 1] end
  end
end
local last = field(redis.call('XINFO', 'STREAM', KEYS[2]), 'last-generated-id')
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
  if field(group, 'name') == ARGV[2] and field(group, 'last-delivered-id') ~= last then
    return 0
  end
end
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('DEL', KEYS[5], KEYS[6])
redis.call('EXPIRE', KEYS[4], ARGV[4])
redis.call('EXPIRE', KEYS[7], ARGV[4])
redis.call('HDEL', KEYS[8], ARGV[3])
return 1
