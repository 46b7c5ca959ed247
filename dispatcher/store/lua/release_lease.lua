-- Give up a lease, only if the caller still holds it.
-- KEYS=[lease]  ARGV=[held_value]
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
