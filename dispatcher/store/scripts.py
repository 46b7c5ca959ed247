"""The Lua scripts, loaded once per process and called by SHA over the fast lane.

A script is loaded on every primary at start. If Redis forgets it (a restart), the call that
meets ``NOSCRIPT`` reloads all scripts and retries once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from dispatcher.store.client import Client
from dispatcher.store.fastlane import FastLane, Redirect

ScriptArg = str | bytes | int | float


_INCLUDE = "--@include "


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
        try:
            return await client.fast.evalsha(self.sha, keys, args)
        except NoScriptError:
            await load_all(client)
            return await client.fast.evalsha(self.sha, keys, args)


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
pool_scan = Script("pool_scan")
open_room = Script("open_room")
leave_room = Script("leave_room")
publish = Script("publish")
delete_room = Script("delete_room")
close_room = Script("close_room")
list_rooms = Script("list_rooms")

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
    pool_scan,
    open_room,
    leave_room,
    publish,
    delete_room,
    close_room,
    list_rooms,
)


async def load_all(client: Client) -> None:
    """SCRIPT LOAD every script (on every primary of a cluster)."""
    for script in ALL:
        await client.script_load(script.source)


class Batch:
    """Script calls and plain commands sent together (one write and round trip per node).

    On NOSCRIPT the scripts are reloaded and the whole batch is sent again, so every call in a
    batch must be idempotent (all of ours are).
    """

    def __init__(self) -> None:
        self._calls: list[tuple[tuple[ScriptArg, ...], str]] = []  # (command, routing key)

    def __len__(self) -> int:
        return len(self._calls)

    def script(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> None:
        call = ("EVALSHA", script.sha, len(keys), *keys, *args)
        self._calls.append((call, keys[0] if keys else ""))

    def command(self, name: str, key: str, *args: ScriptArg) -> None:
        self._calls.append(((name, key, *args), key))

    async def run(self, client: Client) -> list[Any]:
        """Results in call order; failed calls come back as exception objects."""
        if not self._calls:
            return []
        results = await self._send(client)
        if any(isinstance(r, NoScriptError) for r in results):
            await load_all(client)
            results = await self._send(client)
        return results

    async def _send(self, client: Client) -> list[Any]:
        fast = client.fast
        calls = self._calls
        futures = [fast.send(call, key) for call, key in calls]
        # Replies come back in order, so after the first wait the rest are usually done:
        # awaiting each costs less than gather's bookkeeping.
        results: list[Any] = []
        try:
            for future, (call, _key) in zip(futures, calls, strict=True):
                results.append(await _outcome(fast, future, call))
        finally:
            for future in futures[len(results) :]:  # cancelled: nobody will read these
                future.cancel()
        return results


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
