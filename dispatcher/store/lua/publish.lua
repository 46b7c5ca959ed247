-- A participant publishes; only the first publish of its session is an event (publisher jobs).
-- KEYS=[participants, room_info, events]  ARGV=[identity, published_event]
-- Returns 1 for the first publish, 0 for a later one, -1 when the participant is not in the room.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[2], 'p:' .. ARGV[1], 1) == 0 then return 0 end
redis.call('XADD', KEYS[3], '*', 'e', ARGV[2])
return 1
