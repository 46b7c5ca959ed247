-- Mark a dispatch deleted (compare-and-set on its record) and append the event, atomically.
-- KEYS=[room_dispatches, events, room_info]
-- ARGV=[dispatch_id, expected_record, deleted_record, event, agent_name]
-- The room's index forgets the dispatch, so a token in "ensure" mode may create it anew.
-- Returns {1, deleted_record} on success, {0, current_record} when the record changed in
-- between (the caller retries), {-1} when the dispatch does not exist.
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return {-1} end
if current ~= ARGV[2] then return {0, current} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[2], '*', 'e', ARGV[4])
local name_field = 'a:' .. ARGV[5]
if redis.call('HGET', KEYS[3], name_field) == ARGV[1] then redis.call('HDEL', KEYS[3], name_field) end
return {1, ARGV[3]}
