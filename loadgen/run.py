"""One ``loadgen dispatch`` run: fleet up, warm-up, open-loop send, stragglers, fleet down.

Registration alone does not make the fleet placeable: schedulers see new agent servers at
their next registry snapshot. A short warm-up (a few dispatches that must reach an
entrypoint, results discarded) keeps that start-up lag out of the measured figures.
Every accepted dispatch must reach an entrypoint; after sending, the run polls the results
for up to ``result_wait_s`` and then counts whatever is still missing as lost.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable
from typing import Any

from dispatcher.store.client import connect
from loadgen.fleet import AgentConfig, Fleet
from loadgen.options import DispatchOptions
from loadgen.payload import room_prefix
from loadgen.report import build_report
from loadgen.results import ResultReader
from loadgen.sender import OK, create_url, post_dispatch, send_all, session

POLL_INTERVAL_S = 0.05


class RunError(RuntimeError):
    """The run could not be carried out (fleet did not start, warm-up failed)."""


async def run_dispatch(options: DispatchOptions) -> dict[str, Any]:
    """Run the whole benchmark and return the report dict."""
    run_id = secrets.token_hex(4)
    config = AgentConfig(
        redis_url=options.redis_url,
        agent_name=options.agent_name,
        capacity=options.capacity,
        hold_s=options.hold,
        run_id=run_id,
    )
    fleet = Fleet(config, options.agents)
    client = await connect(options.redis_url)
    reader = ResultReader(client, run_id)
    prefix = room_prefix(options.seed)
    try:
        fleet.start()
        try:
            await asyncio.to_thread(fleet.wait_ready, options.ready_timeout_s)
            await warm_up(options, reader, f"{prefix}-warmup", options.agents)
            stats = await send_all(options, prefix)
            await wait_for_results(reader, stats.accepted_ids, options.result_wait_s)
        finally:
            agents = await asyncio.to_thread(fleet.stop)
        await reader.poll()  # the agents' last flush happens after their drain
    finally:
        await reader.delete()
        await client.aclose()
    return build_report(options, run_id, stats, reader.results, agents)


async def warm_up(options: DispatchOptions, reader: ResultReader, prefix: str, count: int) -> None:
    """Dispatch ``count`` jobs one by one and wait until each reached an entrypoint."""
    accepted: list[str] = []
    async with session(limit=1) as client_session:
        for index in range(count):
            reply = await post_dispatch(
                client_session, create_url(options), options, f"{prefix}-{index}"
            )
            if reply.code != OK or reply.dispatch_id is None:
                raise RunError(f"warm-up dispatch failed: {reply.code}")
            accepted.append(reply.dispatch_id)
    if not await wait_for_results(reader, accepted, options.ready_timeout_s):
        raise RunError(f"warm-up jobs did not start within {options.ready_timeout_s:.0f} s")
    reader.discard()


async def wait_for_results(
    reader: ResultReader, accepted_ids: Iterable[str], timeout_s: float
) -> bool:
    """Poll until every accepted dispatch has a result (True), or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    accepted = set(accepted_ids)
    while True:
        await reader.poll()
        if accepted <= reader.dispatch_ids:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL_S)
