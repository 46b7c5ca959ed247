"""Running an agent server as a process: the ``start`` command, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import functools
import sys
from typing import Protocol

from dispatcher import process
from dispatcher.startup import serve_role


class Servable(Protocol):
    """What ``serve`` needs of an agent server (``workers.server.AgentServer``)."""

    health_host: str
    health_port: int

    async def start(self) -> None: ...
    def not_ready(self) -> str | None: ...
    async def drain(self) -> None: ...
    async def aclose(self) -> None: ...


async def serve(server: Servable, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set, then drain and leave; health probes on the server's
    ``health_port`` meanwhile."""

    async def started() -> Servable:
        await server.start()
        return server

    await serve_role(started, stop, "agent server", server.health_host, server.health_port)


def run_server(server: Servable, argv: list[str] | None = None) -> None:
    """``python my_agent.py start``: the process entry for an agent server."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "start":
        sys.exit("usage: python <agent file> start")
    process.configure_logging()
    process.run_role(functools.partial(serve, server))
