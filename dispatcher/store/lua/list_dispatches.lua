-- A room's dispatches and its job records, in one round trip.
-- KEYS=[room_dispatches, room_jobs]  ARGV=[dispatch_id or "", max_bytes]
-- Returns {dispatch_records, job_records}: the job records are every job of the room (room,
-- participant and publisher jobs); the caller matches them to dispatches. A listing whose
-- records total more than max_bytes returns {-1, bytes} instead: nothing is copied.
local function total(key)
  local size = 0
  for _, field in ipairs(redis.call('HKEYS', key)) do size = size + redis.call('HSTRLEN', key, field) end
  return size
end
local dispatches, size
if ARGV[1] ~= '' then
  local record = redis.call('HGET', KEYS[1], ARGV[1])
  dispatches, size = record and {record} or {}, record and #record or 0
else
  dispatches, size = nil, total(KEYS[1])
end
if size == 0 then return {{}, {}} end
size = size + total(KEYS[2])
if size > tonumber(ARGV[2]) then return {-1, size} end
return {dispatches or redis.call('HVALS', KEYS[1]), redis.call('HVALS', KEYS[2])}
