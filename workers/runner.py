"""Running an agent server as a process: the ``start`` command, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import functools
import sys
from typing import Protocol

from dispatcher import process
from dispatcher.metrics.counts import MeasuredServer
from dispatcher.metrics.serve import serving
from dispatcher.startup import serve_role


class Servable(MeasuredServer, Protocol):
    """What ``serve`` needs of an agent server (``workers.server.AgentServer``)."""

    health_host: str
    health_port: int
    metrics_host: str
    metrics_port: int

    async def start(self) -> None: ...
    def not_ready(self) -> str | None: ...
    async def drain(self) -> None: ...
    async def aclose(self) -> None: ...


async def serve(server: Servable, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set, then drain and leave; health probes on the server's
    ``health_port`` and metrics on its ``metrics_port`` meanwhile."""

    async def started() -> Servable:
        await server.start()
        return server

    async with serving(server.metrics_host, server.metrics_port) as metrics:
        if metrics is not None:
            from workers.metrics import AgentServerCollector

            metrics.add(AgentServerCollector(server))
        await serve_role(started, stop, "agent server", server.health_host, server.health_port)


def run_server(server: Servable, argv: list[str] | None = None) -> None:
    """``python my_agent.py start``: the process entry for an agent server."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "start":
        sys.exit("usage: python <agent file> start")
    process.configure_logging()
    process.run_role(functools.partial(serve, server))
