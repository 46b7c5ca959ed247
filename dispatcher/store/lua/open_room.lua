-- Create a room with its dispatches, and/or let a participant join it, atomically: of many
-- concurrent first joins exactly one creates the room and its dispatches.
-- KEYS=[rooms, room_dispatches, room_info, participants, room_jobs, events]
-- ARGV=[room, room_record, ensure 0/1, n, (agent_name, dispatch_id, record, event) x n,
--       identity or "", participant_record, joined_event, max_participants, max_dispatches]
-- The dispatches are created when this call creates the room; with ensure=1 also on an
-- existing room, for each agent name the room has no live dispatch of, while the room has
-- fewer than max_dispatches dispatch records.
-- Returns {created 0/1, room_record, {created dispatch ids}, joined, participant_record}
-- where joined is 1 (new), 2 (already present: a reconnect), 0 (no participant), -1 (full).
--@include room_lib
local room, n = ARGV[1], tonumber(ARGV[4])
local p = 5 + 4 * n
local identity = ARGV[p]
local new_participant = identity ~= '' and redis.call('HEXISTS', KEYS[4], identity) == 0
if new_participant and redis.call('HEXISTS', KEYS[1], room) == 1 then
  local max = tonumber(redis.call('HGET', KEYS[3], 'max') or '0')
  if max > 0 and redis.call('HLEN', KEYS[4]) >= max then
    return {0, redis.call('HGET', KEYS[1], room), {}, -1, ''}
  end
end
local created = create_room(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], room, ARGV[2], ARGV[p + 3])
if created == 1 and n == 0 then return redis.error_reply('a new room needs a dispatch') end
local carry_room = created == 1 -- the first event of the call carries the new room
local function append(event)
  if carry_room then
    redis.call('XADD', KEYS[6], '*', 'e', event, 'r', ARGV[2])
    carry_room = false
  else
    redis.call('XADD', KEYS[6], '*', 'e', event)
  end
end
local made = {}
if created == 1 or ARGV[3] == '1' then
  for i = 5, 4 + 4 * n, 4 do
    local name_field = 'a:' .. ARGV[i]
    local room_for_more = redis.call('HLEN', KEYS[2]) < tonumber(ARGV[p + 4])
    if created == 1 or (room_for_more and redis.call('HEXISTS', KEYS[3], name_field) == 0) then
      redis.call('HSET', KEYS[3], name_field, ARGV[i + 1])
      redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
      append(ARGV[i + 3])
      made[#made + 1] = ARGV[i + 1]
    end
  end
end
local joined, participant = 0, ''
if identity ~= '' then
  if new_participant then
    redis.call('HSET', KEYS[4], identity, ARGV[p + 1])
    append(ARGV[p + 2])
    joined, participant = 1, ARGV[p + 1]
  else
    joined, participant = 2, redis.call('HGET', KEYS[4], identity)
  end
end
return {created, redis.call('HGET', KEYS[1], room), made, joined, participant}
