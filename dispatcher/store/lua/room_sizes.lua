-- How many rooms of one partition a ListRooms would return, and their records' bytes, so
-- that a listing over its limits is refused before anything is copied.
-- KEYS=[rooms]  ARGV=[max_count, room names...] (no names = every room)
-- Returns {count, bytes}; bytes is -1 when count alone passes max_count.
local count, size = 0, 0
if #ARGV == 1 then
  count = redis.call('HLEN', KEYS[1])
  if count > tonumber(ARGV[1]) then return {count, -1} end
  for _, room in ipairs(redis.call('HKEYS', KEYS[1])) do
    size = size + redis.call('HSTRLEN', KEYS[1], room)
  end
else
  for i = 2, #ARGV do
    local length = redis.call('HSTRLEN', KEYS[1], ARGV[i])
    if length > 0 then count, size = count + 1, size + length end
  end
end
return {count, size}
