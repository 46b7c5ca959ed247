"""Running an agent server as a process: signals, drain on SIGTERM, the ``start`` command."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from dispatcher.metrics.serve import serving
from dispatcher.startup import serve_role

if TYPE_CHECKING:
    from workers.server import AgentServer

log = logging.getLogger(__name__)


async def serve(server: AgentServer, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set, then drain and leave; health probes on the server's
    ``health_port`` and metrics on its ``metrics_port`` meanwhile."""

    async def started() -> AgentServer:
        await server.start()
        return server

    async with serving(server.metrics_host, server.metrics_port) as metrics:
        if metrics is not None:
            from workers.metrics import AgentServerCollector

            metrics.add(AgentServerCollector(server))
        await serve_role(started, stop, "agent server", server.health_host, server.health_port)


def install_stop_signals(stop: asyncio.Event) -> None:
    """First SIGTERM/SIGINT drains; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            raise SystemExit(1)
        log.info("signal received: draining")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)


def run_server(server: AgentServer, argv: list[str] | None = None) -> None:
    """``python my_agent.py start``: the process entry for an agent server."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "start":
        sys.exit("usage: python <agent file> start")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    import uvloop

    from dispatcher.heap import freeze_startup_heap

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await serve(server, stop)

    freeze_startup_heap()
    uvloop.run(main())
