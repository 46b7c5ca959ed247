"""Virtual agent servers (``loadgen dispatch --agent-procs``) against an in-process API node
and scheduler, on one node and on the 3-master cluster: every dispatch runs once, no server
above its capacity, including while 1,000 servers come and go."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from dispatcher.settings import AgentSettings
from dispatcher.store.client import connect
from loadgen.fleet import AgentConfig
from loadgen.options import DispatchOptions
from loadgen.report import build_report
from loadgen.run import DispatchSession
from loadgen.virtual_fleet import VirtualHost, serve_host
from tests.loadgen_system import AGENT, System, running_system
from tests.redis_servers import RedisTarget


@pytest.fixture
async def system(redis_target: RedisTarget) -> AsyncIterator[System]:
    async with running_system(redis_target.url) as running:
        yield running


def options(system: System, agents: int, procs: int) -> DispatchOptions:
    return system.options(
        duration=2.0, agents=agents, capacity=2, hold=0.2, seed=5, agent_procs=procs
    )


def clean(report: dict[str, object]) -> None:
    assert report["accepted"] == report["planned"] and report["error_total"] == 0
    assert (report["lost"], report["duplicates"], report["unmatched"]) == (0, 0, 0)
    assert report["over_capacity"] == 0


async def test_virtual_servers_run_every_dispatch_once(system: System) -> None:
    async with DispatchSession(options(system, agents=300, procs=2)) as session:
        step = await session.step(100, 2.0)
    report = build_report(step, session.run_id, session.agents)
    clean(report)
    assert len(session.agents) == 300
    warm_up = 300  # one dispatch per agent server before the step
    assert sum(a.jobs for a in session.agents) == report["results"] + warm_up


async def test_servers_coming_and_going_under_load_lose_no_dispatch(system: System) -> None:
    """A steady fleet takes the load while 1,000 more register in waves of 100, take what
    they are given, finish it and leave; their jobs are not lost, none runs twice."""
    client = await connect(system.redis_url)
    churned = churn_jobs = 0

    async def churn(run_id: str) -> None:
        nonlocal churned, churn_jobs
        config = AgentConfig(system.redis_url, AGENT, capacity=2, hold_s=0.2, run_id=run_id)
        for _ in range(10):
            host = VirtualHost(config, client, 100, AgentSettings().pool_shards)
            async with serve_host(host):
                await asyncio.sleep(0.3)
            churned += len(host.servers)
            churn_jobs += sum(server.jobs for server in host.servers)

    try:
        async with DispatchSession(options(system, agents=20, procs=1)) as session:
            churner = asyncio.create_task(churn(session.run_id))
            step = await session.step(100, 3.0)
            await churner
        report = build_report(step, session.run_id, session.agents)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
    assert churned == 1000
    assert churn_jobs > 0  # the servers that came and went took their share
    clean(report)
