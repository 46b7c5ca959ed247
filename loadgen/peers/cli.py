"""Process entry of a peer's worker and enqueuer (the step starts both as subprocesses).

    python -m loadgen.peers.cli <peer> worker  --redis-url U --variant V --run-id R --capacity N
    python -m loadgen.peers.cli <peer> enqueue --redis-url U --variant V --run-id R
                                               --rate X --duration S [--warmup N]

``worker`` runs until SIGTERM. ``enqueue`` sends its warm-up jobs, prints ``ready``, waits
for ``go`` on stdin, runs the schedule and prints its ``EnqueueStats`` as one JSON line.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import click
import msgspec

from loadgen.peers.config import (
    PEERS,
    VARIANTS,
    WARMUP_JOBS,
    EnqueueConfig,
    WorkerConfig,
    peer_module,
)
from loadgen.peers.schedule import EnqueueStats

# Every peer logs each job at INFO by default; that would be measured as dispatch cost,
# and our own agent processes log at WARNING too.
LOG_LEVEL = logging.WARNING


@dataclass(frozen=True, slots=True)
class PeerRunner:
    """What each peer module exports as ``RUNNER``."""

    serve: Callable[[WorkerConfig], None]
    enqueue: Callable[[EnqueueConfig], EnqueueStats]


def _run_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options every peer command takes."""
    command = click.option("--run-id", required=True)(command)
    command = click.option("--variant", type=click.Choice(VARIANTS), required=True)(command)
    return click.option("--redis-url", required=True)(command)


@click.group()
@click.argument("peer", type=click.Choice(PEERS), metavar="PEER")
@click.pass_context
def main(ctx: click.Context, peer: str) -> None:
    """PEER (taskiq, celery or arq): its worker or enqueuer, as a benchmark step runs them."""
    logging.basicConfig(level=LOG_LEVEL, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ctx.obj = importlib.import_module(peer_module(peer)).RUNNER


@main.command()
@_run_options
@click.option("--capacity", type=int, required=True)
@click.pass_obj
def worker(runner: PeerRunner, redis_url: str, variant: str, run_id: str, capacity: int) -> None:
    """Run the peer's worker until SIGTERM."""
    runner.serve(WorkerConfig(redis_url, variant, run_id, capacity))


@main.command()
@_run_options
@click.option("--rate", type=float, required=True)
@click.option("--duration", type=float, required=True)
@click.option("--warmup", type=int, default=WARMUP_JOBS, show_default=True)
@click.pass_obj
def enqueue(
    runner: PeerRunner,
    redis_url: str,
    variant: str,
    run_id: str,
    rate: float,
    duration: float,
    warmup: int,
) -> None:
    """Run one open-loop schedule."""
    stats = runner.enqueue(EnqueueConfig(redis_url, variant, run_id, rate, duration, warmup))
    click.echo(msgspec.json.encode(stats).decode())


if __name__ == "__main__":
    main(prog_name="python -m loadgen.peers.cli")
