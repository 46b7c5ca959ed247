"""Fuzzing the API node over real HTTP (``test_api_fuzz.py``) and the stream and inbox
decoders in-process (``test_wire_fuzz.py``). Everything here is marked ``fuzz`` and runs in
the default suite with a bounded budget; ``FUZZ_EXAMPLES=10000`` runs the long version
(``budget.py``)."""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.fuzz.harness import Harness
from tests.fuzz.node import LogCapture
from tests.redis_servers import RedisServer

_HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fuzz: property-based fuzzing of the API and decoders (tests/fuzz)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.fuzz)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Leave out the captured log of a failed fuzz test: it holds every record the node
    logged while Hypothesis shrank, and the failure message already has the example's."""
    report = yield
    if item.path.is_relative_to(_HERE):
        report.sections = [s for s in report.sections if not s[0].startswith("Captured log")]
    return report


@pytest.fixture(scope="session")
def fuzz_redis() -> Iterator[RedisServer]:
    """A redis-server of its own, with DEBUG allowed (``DEBUG DIGEST``) from loopback."""
    with RedisServer(name="redis-fuzz", extra_args=["--enable-debug-command", "local"]) as server:
        yield server


@pytest.fixture(scope="session")
def node_logs() -> Iterator[LogCapture]:
    """Every record at WARNING or above, from the node's loggers and any other (asyncio's)."""
    capture = LogCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    yield capture
    root.removeHandler(capture)


@pytest.fixture(scope="session")
def harness(fuzz_redis: RedisServer, node_logs: LogCapture) -> Iterator[Harness]:
    """The API node on the fuzz Redis, seeded; every example restores the seeded state."""
    harness = Harness(fuzz_redis.url, node_logs)
    harness.start()
    yield harness
    harness.close()
