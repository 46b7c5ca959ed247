-- A room's record changes (its metadata), if it is still the record the caller read.
-- KEYS=[rooms, events]  ARGV=[room, record read, new record, event]
-- Returns 1 (changed, event appended), 0 (no such room) or -1 (changed meanwhile: read again).
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
if current ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[2], '*', 'e', ARGV[4])
return 1
