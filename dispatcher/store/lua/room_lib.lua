-- Included (not called) by the scripts that may create a room.
-- Creates the room when absent; returns 1 if this call created it. A name reused after its
-- room closed starts clean: the earlier room's dispatches, index, participants and job
-- records go.
local function create_room(k_rooms, k_dispatches, k_info, k_participants, k_jobs, room, record, max)
  if redis.call('HSETNX', k_rooms, room, record) == 0 then return 0 end
  redis.call('DEL', k_dispatches, k_info, k_participants, k_jobs)
  redis.call('HSET', k_info, 'max', max)
  return 1
end
