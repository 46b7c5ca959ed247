-- Mark a dispatch deleted (compare-and-set on its record) and append the event, atomically.
-- KEYS=[room_dispatches, events]
-- ARGV=[dispatch_id, expected_record, deleted_record, event]
-- Returns {1, deleted_record} on success, {0, current_record} when the record changed in
-- between (the caller retries), {-1} when the dispatch does not exist.
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return {-1} end
if current ~= ARGV[2] then return {0, current} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[2], '*', 'e', ARGV[4])
return {1, ARGV[3]}
