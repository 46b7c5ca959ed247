"""What the worker, the enqueuer and the step that runs them agree on: names, keys, settings.

Nothing here imports a peer's package, so the orchestrator can use it without them.
"""

from __future__ import annotations

from dataclasses import dataclass

PEERS: tuple[str, ...] = ("taskiq", "celery", "arq")
DEFAULTS = "defaults"
AT_LEAST_ONCE = "at-least-once"
VARIANTS: tuple[str, ...] = (DEFAULTS, AT_LEAST_ONCE)

#: Jobs each enqueuer sends one by one before the measured schedule; the step waits until
#: every one of them started, so the worker is fully up (and the client connected) at t0.
WARMUP_JOBS = 5


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    redis_url: str
    variant: str
    run_id: str
    capacity: int


@dataclass(frozen=True, slots=True)
class EnqueueConfig:
    redis_url: str
    variant: str
    run_id: str
    rate: float
    duration_s: float
    warmup: int = WARMUP_JOBS


def check_peer(peer: str, variant: str) -> None:
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; expected one of {', '.join(PEERS)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")


def job_key(run_id: str, index: int) -> str:
    """The unique key of measured job ``index``: its result's job and dispatch id."""
    return f"{run_id}-{index}"


def warmup_key(run_id: str, index: int) -> str:
    return f"{run_id}-warmup-{index}"


def peer_module(peer: str) -> str:
    return f"loadgen.peers.{peer}_peer"
