-- Rooms of one partition with their participant counts.
-- KEYS=[rooms]  ARGV=[participants_key_prefix, room names...] (no names = every room)
-- A room's participants key is the prefix plus its name: same hash tag, same slot.
-- Returns a flat list: room_record, participant_count, ...
local out = {}
local function add(room, record)
  out[#out + 1] = record
  out[#out + 1] = redis.call('HLEN', ARGV[1] .. room)
end
if #ARGV == 1 then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do add(all[i], all[i + 1]) end
else
  for i = 2, #ARGV do
    local record = redis.call('HGET', KEYS[1], ARGV[i])
    if record then add(ARGV[i], record) end
  end
end
return out
