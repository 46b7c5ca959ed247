-- Record a new dispatch (creating its room if absent) and append its event, atomically.
-- KEYS=[rooms, room_dispatches, events, idempotency]
-- ARGV=[room, dispatch_id, dispatch_record, event, room_record, idempotency_ttl_s]
-- An idempotency ttl of 0 means the request carried no request id (KEYS[4] is then unused).
-- Returns {1, dispatch_record} when created, {0, existing_record} when the idempotency key
-- already named a dispatch of this room.
local idem = ARGV[6] ~= '0'
if idem then
  local existing_id = redis.call('GET', KEYS[4])
  if existing_id then
    local existing = redis.call('HGET', KEYS[2], existing_id)
    if existing then return {0, existing} end
  end
end
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[5])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('XADD', KEYS[3], '*', 'e', ARGV[4])
if idem then redis.call('SET', KEYS[4], ARGV[2], 'EX', ARGV[6]) end
return {1, ARGV[3]}
