"""Process entry of a peer's worker and enqueuer (the step starts both as subprocesses).

    python -m loadgen.peers.cli <peer> worker  --redis-url U --variant V --run-id R --capacity N
    python -m loadgen.peers.cli <peer> enqueue --redis-url U --variant V --run-id R
                                               --rate X --duration S [--warmup N]

``worker`` runs until SIGTERM. ``enqueue`` sends its warm-up jobs, prints ``ready``, waits
for ``go`` on stdin, runs the schedule and prints its ``EnqueueStats`` as one JSON line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadgen.peers.cli")
    parser.add_argument("peer", choices=PEERS)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run the peer's worker until SIGTERM")
    enqueue = commands.add_parser("enqueue", help="run one open-loop schedule")
    for command in (worker, enqueue):
        command.add_argument("--redis-url", required=True)
        command.add_argument("--variant", choices=VARIANTS, required=True)
        command.add_argument("--run-id", required=True)
    worker.add_argument("--capacity", type=int, required=True)
    enqueue.add_argument("--rate", type=float, required=True)
    enqueue.add_argument("--duration", type=float, required=True)
    enqueue.add_argument("--warmup", type=int, default=WARMUP_JOBS)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=LOG_LEVEL, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    runner: PeerRunner = importlib.import_module(peer_module(args.peer)).RUNNER
    if args.command == "worker":
        runner.serve(WorkerConfig(args.redis_url, args.variant, args.run_id, args.capacity))
        return
    config = EnqueueConfig(
        args.redis_url, args.variant, args.run_id, args.rate, args.duration, args.warmup
    )
    stats = runner.enqueue(config)
    print(msgspec.json.encode(stats).decode(), flush=True)


if __name__ == "__main__":
    main()
