"""An in-process API node and scheduler for short loadgen sessions in tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from dispatcher.api.app import ApiNode
from dispatcher.scheduler.node import SchedulerNode
from loadgen.options import DispatchOptions
from tests import stack

AGENT = "loadgen-agent"


@dataclass
class System:
    redis_url: str
    api: ApiNode
    scheduler: SchedulerNode

    def options(self, **overrides: Any) -> DispatchOptions:
        """A run's options against this system; ``overrides`` replace the defaults."""
        base = DispatchOptions(
            url=stack.api_url(self.api),
            api_key=stack.API_KEY,
            api_secret=stack.API_SECRET,
            redis_url=self.redis_url,
            rate=100,
            duration=1.0,
            agents=1,
            capacity=100,
            hold=0.0,
            agent_name=AGENT,
            seed=3,
        )
        return dataclasses.replace(base, **overrides)


@asynccontextmanager
async def running_system(url: str) -> AsyncIterator[System]:
    scheduler = await stack.start_scheduler(url, "s0")
    api = await stack.start_api(url)
    try:
        yield System(url, api, scheduler)
    finally:
        await api.aclose()
        await scheduler.aclose()
