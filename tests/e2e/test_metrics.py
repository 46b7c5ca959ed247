"""``/metrics`` of each role as real processes, scraped during a run: the figures match
what the run did, and a role without a metrics port opens none."""

from __future__ import annotations

import asyncio
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from livekit import api
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.procs import DISPATCHER, processes, wait_http
from tests.k8s.test_parity import free_port, role
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, eventually

DISPATCHES = 5
CREATE = "livekit.AgentDispatchService/CreateDispatch"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "DISPATCHER_REDIS_URL": redis_url,
        "DISPATCHER_PARTITIONS": "8",
        "DISPATCHER_API_KEYS": f"{API_KEY}:{API_SECRET}",
        "DISPATCHER_METRICS_HOST": "127.0.0.1",
        **extra,
    }


@pytest.fixture
def stack(redis_single_target: RedisTarget, tmp_path: Path) -> Iterator[dict[str, int]]:
    """An API node, a scheduler and the demo agent server (agent "test-agent"), each its
    own process with its own metrics port."""
    ports = {name: free_port() for name in ("api", "api_metrics", "scheduler", "agent")}
    url = redis_single_target.url
    roles = {
        "api": (["api", "--host", "127.0.0.1", "--port", str(ports["api"])], ports["api_metrics"]),
        "scheduler": (["scheduler"], ports["scheduler"]),
        "agent": (["agent", "dispatcher.demo_agent:server"], ports["agent"]),
    }
    with ExitStack() as stack:
        for name, (argv, metrics) in roles.items():
            env = _env(url, DISPATCHER_METRICS_PORT=str(metrics))
            stack.enter_context(role([DISPATCHER, *argv], env, tmp_path / f"{name}.log"))
        wait_http(f"http://127.0.0.1:{ports['api']}/readyz")
        yield ports


async def test_each_role_shows_what_a_run_did(stack: dict[str, int]) -> None:
    base = f"http://127.0.0.1:{stack['api']}"
    lk = api.LiveKitAPI(base, API_KEY, API_SECRET)
    try:
        for i in range(DISPATCHES):
            request = api.CreateAgentDispatchRequest(agent_name="test-agent", room=f"m-{i}")
            await lk.agent_dispatch.create_dispatch(request)
    finally:
        await lk.aclose()
    intruder = api.LiveKitAPI(base, API_KEY, "not-the-secret-not-the-secret-32")
    with pytest.raises(api.TwirpError):
        await intruder.agent_dispatch.list_dispatch(room_name="m-0")
    await intruder.aclose()

    async def all_running() -> bool:
        samples = await asyncio.to_thread(scrape, stack["scheduler"])
        return value(samples, "dispatcher_dispatch_duration_seconds_count") == DISPATCHES

    await eventually(all_running, timeout_s=30, what="every job to report RUNNING")
    scheduler = scrape(stack["scheduler"])
    assert value(scheduler, "dispatcher_placements_total") >= DISPATCHES
    assert value(scheduler, "dispatcher_jobs", state="running") == DISPATCHES
    assert value(scheduler, "dispatcher_partitions_owned") == 8
    assert value(scheduler, "dispatcher_stream_entries_applied_total") >= 2 * DISPATCHES
    lags = [k for k in scheduler if k[0] == "dispatcher_partition_stream_lag_entries"]
    assert len(lags) == 8
    assert value(scheduler, "dispatcher_pool_servers", pool="test-agent") == 1
    assert value(scheduler, "dispatcher_pool_used_slots", pool="test-agent") == DISPATCHES
    assert value(scheduler, "dispatcher_pool_capacity_slots", pool="test-agent") == 100

    api_node = scrape(stack["api_metrics"])
    assert value(api_node, "dispatcher_api_requests_total", route=CREATE, code="200") == DISPATCHES
    listed = "livekit.AgentDispatchService/ListDispatch"
    assert value(api_node, "dispatcher_api_requests_total", route=listed, code="401") == 1
    assert value(api_node, "dispatcher_api_request_duration_seconds_count", route=CREATE) == (
        DISPATCHES
    )

    agent = scrape(stack["agent"])
    assert value(agent, "dispatcher_agent_jobs_started_total", agent="test-agent") == DISPATCHES
    assert value(agent, "dispatcher_agent_jobs_running") == DISPATCHES
    assert value(agent, "dispatcher_agent_capacity_slots") == 100
    for samples in (scheduler, api_node, agent):
        assert value(samples, "dispatcher_redis_connects_total") >= 1
        assert value(samples, "process_cpu_seconds_total") > 0


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (its sockets among the LISTEN rows)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed since the listing: not a listener
            continue
        if (match := re.fullmatch(r"socket:\[(\d+)\]", target)) is not None:
            inodes.add(match.group(1))
    ports = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.parametrize("metrics", [False, True], ids=["metrics-off", "metrics-on"])
def test_a_scheduler_opens_a_metrics_port_only_when_given_one(
    metrics: bool, redis_single_target: RedisTarget, tmp_path: Path
) -> None:
    health, metrics_port = free_port(), free_port()
    while metrics_port == health:
        metrics_port = free_port()
    extra = {"DISPATCHER_HEALTH_HOST": "127.0.0.1", "DISPATCHER_HEALTH_PORT": str(health)}
    if metrics:
        extra["DISPATCHER_METRICS_PORT"] = str(metrics_port)
    env = _env(redis_single_target.url, **extra)
    with role([DISPATCHER, "scheduler"], env, tmp_path / "scheduler.log") as proc:
        wait_http(f"http://127.0.0.1:{health}/readyz")
        expected = {health, metrics_port} if metrics else {health}
        assert listening_ports(proc.pid) == expected


def test_dev_mode_serves_every_roles_metrics_and_names_the_url(tmp_path: Path) -> None:
    port = free_port()
    with processes([["dev", "--port", str(port)]], tmp_path) as logs:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        deadline = time.monotonic() + 20
        while (shown := re.search(r"Metrics +(http://\S+)\n", logs[0].read_text())) is None:
            assert time.monotonic() < deadline, "no metrics URL in the banner"
            time.sleep(0.1)
        url = shown.group(1)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url), url
        samples = scrape(int(url.rsplit(":", 1)[1].split("/")[0]))
    for name in ("dispatcher_partitions_owned", "dispatcher_agent_capacity_slots"):
        assert any(n == name for n, _ in samples), name
    assert any(n == "dispatcher_api_requests_total" for n, _ in samples)  # /readyz above
