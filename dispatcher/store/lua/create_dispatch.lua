-- Record a new dispatch (creating its room if absent) and append its event, atomically.
-- KEYS=[rooms, room_dispatches, room_info, participants, room_jobs, events, idempotency]
-- ARGV=[room, dispatch_id, dispatch_record, event, room_record, idempotency_ttl_s, agent_name,
--       max_dispatches, max_bytes]
-- An idempotency ttl of 0 means the request carried no request id (KEYS[7] is then unused).
-- The event of a call that created the room carries the room record in field "r".
-- Returns {1, dispatch_record} when created, {0, existing_record} when the idempotency key
-- already named a dispatch of this room, {-1, count} when the room already has
-- max_dispatches records and {-2, bytes} when its records would pass max_bytes.
--@include room_lib
local idem = ARGV[6] ~= '0'
if idem then
  local existing_id = redis.call('GET', KEYS[7])
  if existing_id then
    local existing = redis.call('HGET', KEYS[2], existing_id)
    if existing then return {0, existing} end
  end
end
local count = redis.call('HLEN', KEYS[2])
if count >= tonumber(ARGV[8]) then return {-1, count} end
local size = #ARGV[3]
if count > 0 then -- a new room (the usual call) has no records to add up
  for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
    size = size + redis.call('HSTRLEN', KEYS[2], id)
  end
end
if size > tonumber(ARGV[9]) then return {-2, size} end
local created = create_room(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[5], 0)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], 'a:' .. ARGV[7], ARGV[2])
if created == 1 then
  redis.call('XADD', KEYS[6], '*', 'e', ARGV[4], 'r', ARGV[5])
else
  redis.call('XADD', KEYS[6], '*', 'e', ARGV[4])
end
if idem then redis.call('SET', KEYS[7], ARGV[2], 'EX', ARGV[6]) end
return {1, ARGV[3]}
