-- A room's dispatches and its job records, in one round trip.
-- KEYS=[room_dispatches, room_jobs]  ARGV=[dispatch_id or ""]
-- Returns {dispatch_records, job_records}: the job records are every job of the room (room,
-- participant and publisher jobs); the caller matches them to dispatches.
local dispatches
if ARGV[1] ~= '' then
  local record = redis.call('HGET', KEYS[1], ARGV[1])
  dispatches = record and {record} or {}
else
  dispatches = redis.call('HVALS', KEYS[1])
end
if #dispatches == 0 then return {{}, {}} end
return {dispatches, redis.call('HVALS', KEYS[2])}
