"""An agent server's heartbeat: a plain ZADD while it has nothing to say, the script when it
has (a change, running jobs, now and then, after a drop), and its expiry never earlier on
Redis's clock than the send time plus the TTL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dispatcher.store import scripts
from tests.redis_servers import RedisTarget
from tests.stack import eventually, start_agent
from workers import AgentServer, JobContext

AGENT = "beats"


async def _idle(ctx: JobContext) -> None:
    await asyncio.Event().wait()


def watch(server: AgentServer) -> list[tuple[Any, ...]]:
    """Every call the server sends from now on."""
    lane, sent = server.client.fast, []
    send = lane.send

    def watched(args: tuple[Any, ...], key: Any = None) -> Any:
        sent.append(args)
        return send(args, key)

    lane.send = watched  # type: ignore[method-assign]
    return sent


def kinds(sent: list[tuple[Any, ...]]) -> list[str]:
    heartbeat = ("EVALSHA", scripts.heartbeat.sha)
    return [
        "script" if a[:2] == heartbeat else "zadd"
        for a in sent
        if a[:2] == heartbeat or a[0] == "ZADD"
    ]


async def test_a_quiet_server_extends_its_lease_with_a_plain_zadd(
    redis_target: RedisTarget,
) -> None:
    server = await start_agent(redis_target.url, AGENT, _idle)
    try:
        sent = watch(server)
        await eventually(lambda: len(kinds(sent)) >= 4, what="four heartbeats")
        assert set(kinds(sent)[:4]) == {"zadd"}
        shard = server.shard
        sent_at = time.monotonic()
        await server.heartbeat()
        seconds, micros = await server.client.fast.execute("TIME")
        redis_ms = int(seconds) * 1000 + int(micros) // 1000
        expiry = float(await server.client.fast.execute("ZSCORE", shard.exp, server.id))
        # at least the TTL ahead of Redis's clock at the send, less what passed since
        elapsed_ms = (time.monotonic() - sent_at) * 1000
        assert expiry >= redis_ms - elapsed_ms + server.heartbeat_ttl_ms - 1
    finally:
        await server.aclose()


async def test_a_change_or_a_running_job_sends_the_script(redis_target: RedisTarget) -> None:
    server = await start_agent(redis_target.url, AGENT, _idle)
    try:
        sent = watch(server)
        server.capacity += 1  # something new to say
        await eventually(lambda: "script" in kinds(sent), what="the script")
        sent.clear()
        server._entered.add("AJ_running")  # a job to check
        await eventually(lambda: len(kinds(sent)) >= 2, what="two heartbeats")
        assert set(kinds(sent)) == {"script"}
    finally:
        server._entered.discard("AJ_running")
        await server.aclose()


async def test_a_server_reaped_while_quiet_registers_again_at_once(
    redis_target: RedisTarget,
) -> None:
    server = await start_agent(redis_target.url, AGENT, _idle)
    try:
        shard = server.shard
        await server.client.fast.execute("ZREM", shard.exp, server.id)  # as the reaper would
        await server.client.fast.execute("DEL", shard.server(server.id))
        sent = watch(server)
        await server.heartbeat()
        assert kinds(sent) == ["zadd", "script"]  # the ZADD found nothing, the script did
        assert await server.client.fast.execute("ZSCORE", shard.exp, server.id) is not None
        assert await server.client.hget(shard.server(server.id), "cap") is not None
    finally:
        await server.aclose()
