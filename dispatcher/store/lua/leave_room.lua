-- A participant leaves its room. KEYS=[participants, room_info, events]
-- ARGV=[identity, left_event]
-- Returns 1 when the participant was present (and the event is appended), else 0.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], 'p:' .. ARGV[1]) -- a later session publishes anew
redis.call('XADD', KEYS[3], '*', 'e', ARGV[2])
return 1
