"""The open-loop sender against a real HTTP server that stalls: the schedule must not wait."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from livekit.protocol.agent_dispatch import AgentDispatch

from dispatcher.localredis import free_port
from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from loadgen.options import DispatchOptions
from loadgen.sender import OK, DispatchSender, http_client, prepare_dispatches, send_all


@dataclass
class StallingServer:
    """Answers nothing until ``release`` is set, counting the requests it holds."""

    url: str
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0
    all_held: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0


@pytest.fixture
async def stalling_server() -> AsyncIterator[StallingServer]:
    port = free_port()
    server = StallingServer(url=f"http://127.0.0.1:{port}")

    async def create(request: web.Request) -> web.Response:
        await request.read()
        server.held += 1
        if server.held >= server.expected:
            server.all_held.set()
        await server.release.wait()
        body = AgentDispatch(id=f"AD_{server.held}").SerializeToString()
        return web.Response(body=body, content_type="application/protobuf")

    app = web.Application()
    app.router.add_post("/twirp/livekit.AgentDispatchService/CreateDispatch", create)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


def options(url: str, rate: float, duration: float) -> DispatchOptions:
    return DispatchOptions(
        url=url,
        api_key=DEV_API_KEY,
        api_secret=DEV_API_SECRET,
        redis_url="redis://unused",
        rate=rate,
        duration=duration,
        agents=1,
        capacity=1,
        hold=0.0,
        agent_name="a",
    )


async def test_a_stalled_server_does_not_slow_the_schedule(
    stalling_server: StallingServer,
) -> None:
    run = options(stalling_server.url, rate=200, duration=0.5)
    stalling_server.expected = 100
    client = http_client(run)
    try:
        requests = prepare_dispatches(client, run, "stall")
        sending = asyncio.create_task(send_all(client, run, requests))
        # Every request of the schedule reaches the server while none has been answered:
        # a closed loop would have sent one (or one per connection) and waited.
        await asyncio.wait_for(stalling_server.all_held.wait(), timeout=30)
        assert not sending.done()
        stalling_server.release.set()
        stats = await asyncio.wait_for(sending, timeout=30)
    finally:
        await client.aclose()
    assert stats.planned == stats.attempted == 100
    assert stats.codes == {OK: 100}
    assert len(stats.accepted_ids) == 100
    assert len(stats.lag_ns) == 100


async def test_sends_beyond_the_in_flight_cap_are_counted_not_delayed(
    stalling_server: StallingServer,
) -> None:
    run = dataclasses.replace(
        options(stalling_server.url, rate=200, duration=0.25), max_in_flight=10
    )
    stalling_server.expected = 10
    client = http_client(run)
    sender = DispatchSender(client, run, prepare_dispatches(client, run, "cap"))
    try:
        sending = asyncio.create_task(sender.run())
        # The whole schedule goes out while the first ten requests are still held: the
        # sends over the cap are refused at once, not queued behind them.
        while sender.stats.attempted < sender.stats.planned:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(stalling_server.all_held.wait(), timeout=30)
        assert stalling_server.held == 10
        stalling_server.release.set()
        stats = await asyncio.wait_for(sending, timeout=30)
    finally:
        await client.aclose()
    assert stats.attempted == stats.planned == 50
    assert stats.codes == {OK: 10, "client_overload": 40}


async def test_a_cancelled_run_sends_no_more(stalling_server: StallingServer) -> None:
    run = options(stalling_server.url, rate=200, duration=1.0)
    client = http_client(run)
    sender = DispatchSender(client, run, prepare_dispatches(client, run, "cancel"))
    try:
        sending = asyncio.create_task(sender.run())
        while sender.stats.attempted < 10:
            await asyncio.sleep(0.01)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        attempted = sender.stats.attempted
        await asyncio.sleep(0.1)  # twenty more sends were due by now
        assert sender.stats.attempted == attempted
    finally:
        await client.aclose()
