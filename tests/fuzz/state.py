"""The dataset the node writes to: restored to the seeded snapshot before every example,
digested (``DEBUG DIGEST``) before and after, and described key by key when it changed.

Restoring a snapshot (``FLUSHALL`` + ``RESTORE`` of a few dozen keys, one round trip)
makes every example start from the same state, so a failure replays exactly and the
dataset never grows however many examples run."""

from __future__ import annotations

from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class Snapshot:
    keys: dict[bytes, tuple[int, bytes]]  # key -> (PTTL or 0, DUMP)
    digest: str  # DEBUG DIGEST of the whole dataset, as restored
    values: dict[bytes, bytes]  # key -> DEBUG DIGEST-VALUE, as restored


class Dataset:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=30.0)
        self._snapshot: Snapshot | None = None

    def close(self) -> None:
        self._redis.close()

    def digest(self) -> str:
        digest: bytes = self._redis.execute_command("DEBUG", "DIGEST")  # type: ignore[no-untyped-call]
        return digest.decode()

    def take_snapshot(self) -> None:
        keys: dict[bytes, tuple[int, bytes]] = {}
        for key in self._redis.scan_iter(count=1000):
            ttl, dumped = self._redis.pttl(key), self._redis.dump(key)
            assert isinstance(dumped, bytes)
            keys[key] = (max(int(ttl), 0), dumped)
        # Digests are taken as restored: a restored value may be encoded differently.
        self._snapshot = Snapshot(keys, "", {})
        self._restore()
        self._snapshot = Snapshot(keys, self.digest(), self._value_digests())

    def restore(self) -> None:
        """Back to the snapshot; checked by its digest."""
        assert self._snapshot is not None
        assert self._restore() == self._snapshot.digest, "the dataset could not be restored"

    def _restore(self) -> str:
        assert self._snapshot is not None
        pipe = self._redis.pipeline(transaction=False)
        pipe.flushall()
        for key, (ttl, dumped) in self._snapshot.keys.items():
            pipe.restore(key, ttl, dumped)
        pipe.execute_command("DEBUG", "DIGEST")  # type: ignore[no-untyped-call]
        digest: bytes = pipe.execute()[-1]
        return digest.decode()

    def _value_digests(self) -> dict[bytes, bytes]:
        keys = sorted(self._redis.scan_iter(count=1000))
        if not keys:
            return {}
        values = self._redis.execute_command("DEBUG", "DIGEST-VALUE", *keys)  # type: ignore[no-untyped-call]
        return dict(zip(keys, values, strict=True))

    def changes(self) -> list[str]:
        """The keys added, removed or changed since the snapshot (for failure messages)."""
        assert self._snapshot is not None
        before, now = self._snapshot.values, self._value_digests()
        lines = [f"added {key!r}" for key in sorted(now.keys() - before.keys())]
        lines += [f"removed {key!r}" for key in sorted(before.keys() - now.keys())]
        lines += [
            f"changed {k!r}" for k in sorted(now.keys() & before.keys()) if now[k] != before[k]
        ]
        return lines
