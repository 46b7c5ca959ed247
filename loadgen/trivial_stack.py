"""The API node's HTTP stack with a Join that does nothing: the ceiling of that stack.

The same application shape as ``dispatcher.api.app`` (the API node's HTTP server and Twirp
router, a raw ``dispatcher.Participant/Join`` method, backlog 1024, on uvloop), whose Join
answers a constant JSON reply shaped like the real one: no token check,
no Redis. ``loadgen connect --trivial-stack`` measures it exactly as it measures the real
API node, so the ratio of the two knees is what the join path costs on top of the stack.

    python -m loadgen.trivial_stack --port 7991
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Final

import click
import uvloop

from dispatcher.api.http import HttpApp, Request, Response
from dispatcher.api.httpserver import HttpServer
from dispatcher.api.twirp import TwirpService
from dispatcher.process import install_stop_signals

REPLY: Final = (
    b'{"room":{"sid":"RM_trivial","name":"trivial","created":false},'
    b'"participant":{"sid":"PA_trivial","identity":"trivial","reconnected":false},'
    b'"token_agents":"none","dispatches":[],"message":"trivial"}'
)


async def join(_: None, request: Request) -> Response:
    return Response(200, REPLY, "application/json")


async def ready(_: Request) -> Response:
    return Response.text("ready")


def create_app() -> HttpApp:
    app = HttpApp()
    service = TwirpService("dispatcher.Participant")
    service.add_raw("Join", join)
    service.install(app)
    app.route("/readyz", ready)
    return app


async def serve(host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, as the API node does."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    server = HttpServer(create_app())
    await server.start(host, port)
    try:
        await stop.wait()
    finally:
        await server.aclose()


def command(port: int, _redis_url: str) -> list[str]:
    """How ``loadgen.devstack.DevStack`` runs this server in place of ``dispatcher dev``."""
    return [sys.executable, "-m", "loadgen.trivial_stack", "--port", str(port)]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=7991, show_default=True)
def main(host: str, port: int) -> None:
    """The API node's HTTP stack with a Join that does nothing, until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.WARNING)
    uvloop.run(serve(host, port))


if __name__ == "__main__":
    main()
