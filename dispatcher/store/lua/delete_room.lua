-- Delete a room: mark its dispatches deleted (compare-and-set on every record), drop its
-- participants and index, keep the dispatch and job records for the retention window, append
-- the event.
-- KEYS=[rooms, room_dispatches, room_info, participants, room_jobs, events]
-- ARGV=[room, retention_s, event, n, (dispatch_id, expected_record, deleted_record) x n]
-- Returns 1 when deleted, 0 when the dispatches changed in between (the caller retries),
-- -1 when there is no such room.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
local n = tonumber(ARGV[4])
if redis.call('HLEN', KEYS[2]) ~= n then return 0 end
for i = 5, 4 + 3 * n, 3 do
  if redis.call('HGET', KEYS[2], ARGV[i]) ~= ARGV[i + 1] then return 0 end
end
for i = 5, 4 + 3 * n, 3 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[5], ARGV[2])
redis.call('XADD', KEYS[6], '*', 'e', ARGV[3])
return 1
