"""The task queues the benchmark compares us with, run with our method on the same Redis.

``run_peer_step`` runs one step for one peer: Taskiq (Redis Streams broker), Celery (Redis
broker) or arq, each in a ``defaults`` and an ``at-least-once`` variant (the per-peer
modules document what each variant sets and why). Only the step's subprocesses import the
peers' packages.
"""

from __future__ import annotations

from loadgen.peers.config import PEERS, VARIANTS
from loadgen.peers.processes import PeerError
from loadgen.peers.step import StepResult, run_peer_step

__all__ = ["PEERS", "VARIANTS", "PeerError", "StepResult", "run_peer_step"]
