"""One injected fault per scenario against a whole deployment of real processes under load.

Each scenario starts Redis (AOF), an API node, three schedulers and three recording agent
servers, sends dispatches at a fixed rate, injects one fault three seconds in, waits for
every job to end and reconciles: no accepted dispatch lost, none run twice at once, none run
again after it finished, none stuck, no reservation leaked. Run with
``.venv/bin/pytest -m faults -s`` to see every report.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dispatcher.store import keys
from tests.faults.harness import Fault, FaultStack, Load
from tests.faults.reconcile import Report


async def _scenario(
    tmp_path: Path, name: str, fault: Fault, *, proxied: bool = False, cluster: bool = False
) -> Report:
    async with FaultStack(tmp_path, proxied_agent=proxied, cluster=cluster) as stack:
        report = await stack.run(fault)
        print(f"\n=== {name}\n{report.summary()}\nlogs: {stack.logs}\n{stack.log_digest()}")
    return report


def _assert_clean(report: Report) -> None:
    counts = report.counts()
    assert counts == dict.fromkeys(counts, 0), report.summary()


async def test_scheduler_killed_and_restarted(tmp_path: Path) -> None:
    async def fault(stack: FaultStack) -> None:
        stack.kill("scheduler-1")
        await asyncio.sleep(3)
        stack.restart("scheduler-1")

    _assert_clean(await _scenario(tmp_path, "kill -9 a scheduler, restart after 3 s", fault))


async def test_agent_server_killed(tmp_path: Path) -> None:
    async def fault(stack: FaultStack) -> None:
        stack.kill("agent-1")

    _assert_clean(await _scenario(tmp_path, "kill -9 an agent server", fault))


async def test_api_node_killed_and_restarted(tmp_path: Path) -> None:
    async def fault(stack: FaultStack) -> None:
        stack.kill("api")
        await asyncio.sleep(1)
        stack.restart("api")

    _assert_clean(await _scenario(tmp_path, "kill -9 the API node, restart after 1 s", fault))


async def test_scheduler_stopped_past_its_lease(tmp_path: Path) -> None:
    async def fault(stack: FaultStack) -> None:
        stack.stop("scheduler-1")
        await asyncio.sleep(4)  # lease and membership TTLs are 2 s
        stack.cont("scheduler-1")

    _assert_clean(await _scenario(tmp_path, "SIGSTOP a scheduler for 4 s", fault))


async def test_redis_killed_back_after_half_a_second(tmp_path: Path) -> None:
    async def fault(stack: FaultStack) -> None:
        stack.kill_redis()
        await asyncio.sleep(0.5)
        stack.start_redis()

    _assert_clean(await _scenario(tmp_path, "kill -9 Redis, restart after 0.5 s", fault))


async def test_redis_killed_back_after_five_seconds(tmp_path: Path) -> None:
    async def fault(stack: FaultStack) -> None:
        stack.kill_redis()
        await asyncio.sleep(5)
        stack.start_redis()

    _assert_clean(await _scenario(tmp_path, "kill -9 Redis, restart after 5 s", fault))


async def test_agent_server_cut_off_from_redis(tmp_path: Path) -> None:
    async def fault(stack: FaultStack) -> None:
        stack.cut()
        await asyncio.sleep(5)  # the agents' heartbeat TTL is 2 s
        stack.uncut()

    report = await _scenario(tmp_path, "agent-0 cut off from Redis for 5 s", fault, proxied=True)
    _assert_clean(report)


# --- Redis Cluster: three primaries with a replica each ----------------------------------

PARTITION_SLOT = keys.partition_keys(0).events  # partition 0's slot: it holds dispatches too
POOL_SLOT = "pool"  # agent-0's pool shard: its reservations, inbox and heartbeats


CLUSTER_FAULTS = [
    pytest.param("failover", PARTITION_SLOT, id="failover-partition-slot"),
    pytest.param("failover", POOL_SLOT, id="failover-pool-slot"),
    pytest.param("kill", PARTITION_SLOT, id="kill-partition-primary"),
    pytest.param("kill", POOL_SLOT, id="kill-pool-primary"),
]


@pytest.mark.parametrize(("how", "slot"), CLUSTER_FAULTS)
async def test_cluster_primary_replaced(tmp_path: Path, how: str, slot: str) -> None:
    """A coordinated failover, or a primary killed so that its replica takes over."""

    async def fault(stack: FaultStack) -> None:
        key = stack.agent_shard("agent-0").jobs if slot == POOL_SLOT else slot
        if how == "failover":
            stack.failover(key)
        else:
            stack.kill_primary(key)

    name = f"{'CLUSTER FAILOVER' if how == 'failover' else 'kill -9'} of the primary of {slot}"
    _assert_clean(await _scenario(tmp_path, name, fault, cluster=True))


async def test_cluster_resharded_under_load(tmp_path: Path) -> None:
    """Every slot of the primary holding partition 0 moved to another primary with
    ``redis-cli --cluster reshard`` while dispatches flow: the fast lane follows ASK and
    MOVED, a script meeting a half-moved slot (TRYAGAIN) is retried, nothing is lost."""
    moved: list[int] = []

    async def fault(stack: FaultStack) -> None:
        moved.append(await asyncio.to_thread(stack.reshard, PARTITION_SLOT))

    async with FaultStack(tmp_path, cluster=True) as stack:
        report = await stack.run(fault, Load(duration_s=12.0))
        print(
            f"\n=== reshard of {moved} slots under load\n{report.summary()}\n{stack.log_digest()}"
        )
    assert moved and moved[0] > 5000
    _assert_clean(report)
