-- A room's dispatches with their room jobs' records, in one round trip.
-- KEYS=[room_dispatches, room_jobs]  ARGV=[dispatch_id or ""]
-- Returns a flat list: dispatch_record, job_record_or_empty, ...
local ids
if ARGV[1] ~= '' then ids = {ARGV[1]} else ids = redis.call('HKEYS', KEYS[1]) end
local out = {}
for _, id in ipairs(ids) do
  local record = redis.call('HGET', KEYS[1], id)
  if record then
    out[#out + 1] = record
    out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
  end
end
return out
