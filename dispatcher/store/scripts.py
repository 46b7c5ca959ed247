"""The Lua scripts, loaded once per process and called by SHA over the fast lane.

A script is loaded on every primary at start. A node that does not know it (restarted, or a
replica just promoted by a failover: the script cache is per node and never replicated)
answers ``NOSCRIPT``; the call then loads the script on that very node, through the same
route, and retries once.

Failure policy: a failed call raises. ``Batch.run`` raises ``BatchFailed`` when any of its
calls failed; a caller that has a policy for single failures (retry it next turn, leave the
job where it is) says so by calling ``Batch.outcomes`` instead and handling each exception.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from dispatcher.errors import BatchFailed
from dispatcher.store.client import Client
from dispatcher.store.fastlane import FastLane, Redirect

ScriptArg = str | bytes | int | float


_INCLUDE = "--@include "
# Loads per NOSCRIPT call: right after a failover the first load may reach the old primary
# (the slot map is refreshed by the MOVED that follows), the next one the new primary.
_LOADS = 3


def _source(name: str) -> str:
    """A script's text with each ``--@include <name>`` line replaced by that file."""
    text = resources.files("dispatcher.store").joinpath(f"lua/{name}.lua").read_text()
    lines = [
        _source(line.removeprefix(_INCLUDE).strip()) if line.startswith(_INCLUDE) else line
        for line in text.splitlines()
    ]
    return "\n".join(lines) + "\n"


class Script:
    def __init__(self, name: str) -> None:
        self.name = name
        self.source = _source(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(
        self, client: Client, keys: Sequence[str], args: Sequence[ScriptArg] = ()
    ) -> Any:
        for _ in range(_LOADS):
            try:
                return await client.fast.evalsha(self.sha, keys, args)
            except NoScriptError:
                await self.load_on(client.fast, keys[0] if keys else "")
        return await client.fast.evalsha(self.sha, keys, args)

    async def load_on(self, fast: FastLane, key: str) -> None:
        """Load the script on the node that owns ``key``, the one that answered NOSCRIPT
        (redis-py's cluster client may still map the slot to a node that lost it)."""
        await fast.execute("SCRIPT", "LOAD", self.source, key=key)


create_dispatch = Script("create_dispatch")
delete_dispatch = Script("delete_dispatch")
list_dispatches = Script("list_dispatches")
lease = Script("lease")
release_lease = Script("release_lease")
commit = Script("commit")
membership = Script("membership")
reserve = Script("reserve")
confirm = Script("confirm")
release = Script("release")
revoke = Script("revoke")
heartbeat = Script("heartbeat")
deregister = Script("deregister")
release_lost = Script("release_lost")
shard_tick = Script("shard_tick")
open_room = Script("open_room")
leave_room = Script("leave_room")
publish = Script("publish")
delete_room = Script("delete_room")
close_room = Script("close_room")
update_room = Script("update_room")
list_rooms = Script("list_rooms")
room_sizes = Script("room_sizes")
drain_server = Script("drain_server")
list_servers = Script("list_servers")

ALL = (
    create_dispatch,
    delete_dispatch,
    list_dispatches,
    lease,
    release_lease,
    commit,
    membership,
    reserve,
    confirm,
    release,
    revoke,
    heartbeat,
    deregister,
    release_lost,
    shard_tick,
    open_room,
    leave_room,
    publish,
    delete_room,
    close_room,
    update_room,
    list_rooms,
    room_sizes,
    drain_server,
    list_servers,
)


async def load_all(client: Client) -> None:
    """SCRIPT LOAD every script (on every primary of a cluster)."""
    for script in ALL:
        await client.script_load(script.source)


# A batched call: the command, its routing key, and its script (None for a plain command).
_Call = tuple[tuple[ScriptArg, ...], str, Script | None]


class Batch:
    """Script calls and plain commands sent together (one write and round trip per node).

    A call that meets NOSCRIPT is sent again, alone, once its script is loaded on the node
    that answered; every other call runs exactly once.
    """

    def __init__(self) -> None:
        self._calls: list[_Call] = []

    def __len__(self) -> int:
        return len(self._calls)

    def script(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> None:
        call = ("EVALSHA", script.sha, len(keys), *keys, *args)
        self._calls.append((call, keys[0] if keys else "", script))

    def command(self, name: str, key: str, *args: ScriptArg) -> None:
        self._calls.append(((name, key, *args), key, None))

    async def run(self, client: Client) -> list[Any]:
        """Every call's reply in call order; raises ``BatchFailed`` if any call failed."""
        results = await self.outcomes(client)
        failures = [r for r in results if isinstance(r, Exception)]
        if failures:
            raise BatchFailed(failures, len(results)) from failures[0]
        return results

    async def outcomes(self, client: Client) -> list[Any]:
        """Results in call order, a failed call's as its exception: for callers that
        handle each failure themselves (and say how where they call this)."""
        if not self._calls:
            return []
        results = await self._send(client, self._calls)
        for _ in range(_LOADS):
            again = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if not again:
                break
            await _load_where_missing(client, [self._calls[i] for i in again])
            retried = await self._send(client, [self._calls[i] for i in again])
            for i, result in zip(again, retried, strict=True):
                results[i] = result
        return results

    @staticmethod
    async def _send(client: Client, calls: list[_Call]) -> list[Any]:
        fast = client.fast
        futures = [fast.send(call, key) for call, key, _ in calls]
        # Replies come back in order, so after the first wait the rest are usually done:
        # awaiting each costs less than gather's bookkeeping.
        results: list[Any] = []
        try:
            for future, (call, _key, _script) in zip(futures, calls, strict=True):
                results.append(await _outcome(fast, future, call))
        finally:
            for future in futures[len(results) :]:  # cancelled: nobody will read these
                future.cancel()
        return results


async def _load_where_missing(client: Client, calls: list[_Call]) -> None:
    """Load each script that met NOSCRIPT on the node of its call, once per script and
    routing key."""
    seen: set[tuple[str, str]] = set()
    for _call, key, script in calls:
        if script is None or (script.sha, key) in seen:
            continue
        seen.add((script.sha, key))
        await script.load_on(client.fast, key)


async def _outcome(fast: FastLane, future: asyncio.Future[Any], call: tuple[ScriptArg, ...]) -> Any:
    """A call's reply, or the exception it failed with; a moved slot is followed."""
    try:
        return await future
    except Redirect:
        try:
            return await fast.finish(future, call)
        except Exception as exc:
            return exc
    except Exception as exc:
        return exc
