"""The shards a targeted job found no room in since the registry's last refresh. Pure.

The registry's free counts are per shard, not per target: a shard with free slots may
have none on the servers a target admits, and two random choices by free slots would ask
it again and again. So a targeted job that finds no room in a shard asks the pool's other
shards that carry its tags, one per turn, and starts over after the next refresh (which
forgets every miss, so this holds at most one refresh's worth).
"""

from __future__ import annotations


class Misses:
    def __init__(self) -> None:
        self._version = -1  # the registry version the misses were seen at
        self._by_job: dict[str, dict[int, bool]] = {}  # job id -> shard -> a server matched

    def of(self, job_id: str, version: int) -> dict[int, bool]:
        """The shards that had no room for the job at this registry version, each with
        whether a live server there matched its target at all."""
        if version != self._version:
            self._version, self._by_job = version, {}
        return self._by_job.get(job_id, {})

    def note(self, job_id: str, version: int, shard: int, matched: bool) -> None:
        self.of(job_id, version)
        self._by_job.setdefault(job_id, {})[shard] = matched

    def forget(self, job_id: str) -> None:
        self._by_job.pop(job_id, None)
