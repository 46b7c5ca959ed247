"""Shared fixtures: real redis-server processes (see tests/redis_servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_servers import RedisCluster, RedisServer, RedisTarget

_TESTS_DIR = Path(__file__).parent
_DIR_MARKS = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests under tests/integration and tests/e2e by directory."""
    for item in items:
        if item.path.is_relative_to(_TESTS_DIR):
            mark = _DIR_MARKS.get(item.path.relative_to(_TESTS_DIR).parts[0])
            if mark is not None:
                item.add_marker(mark)


@pytest.fixture(scope="session")
def redis_single() -> Iterator[RedisServer]:
    """One redis-server for the whole session (started on first use)."""
    with RedisServer(name="redis-single") as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster for the whole session (started on first use)."""
    with RedisCluster() as cluster:
        yield cluster


def _single_target(request: pytest.FixtureRequest) -> RedisTarget:
    server: RedisServer = request.getfixturevalue("redis_single")
    if not server.running:  # a previous test killed it
        server.start()
    server.flushall()
    return RedisTarget(url=server.url, cluster=False)


@pytest.fixture(params=["single", "cluster"])
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """Flushed Redis to test against; every test using it runs for both variants."""
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        return RedisTarget(url=cluster.url, cluster=True)
    return _single_target(request)


@pytest.fixture
def redis_single_target(request: pytest.FixtureRequest) -> RedisTarget:
    """Flushed single redis-server, for tests that need no cluster variant."""
    return _single_target(request)
