"""What metrics cost on the dispatch path: ``loadgen.roles`` runs with metrics off and on,
interleaved (off, on, off, on, ...) so that a noisy machine weighs on both alike, each
role's CPU per dispatch in each, and the difference.

With metrics on, every role serves ``/metrics`` and is scraped every few seconds; the
agent servers count their jobs either way (a few integer increments per job, and no port
in loadgen's fleet), so their figures show the noise of the run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

ROLES = ("api", "schedulers", "agents", "redis")
Measure = Callable[..., dict[str, Any]]


def cpu_us_per_dispatch(run: dict[str, Any]) -> dict[str, float]:
    accepted = max(1, int(run["accepted"].get("dispatch", 0)))
    return {role: run["cpu_s"][role] * 1e6 / accepted for role in ROLES}


def compare(
    measure: Measure, args: Sequence[float | int], repeats: int, scrape_every_s: float
) -> dict[str, Any]:
    """``repeats`` runs of each, alternating; the median per role of each, the change."""
    dispatches, duration, schedulers, partitions = args
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    lost: dict[str, list[Any]] = {"off": [], "on": []}
    for _ in range(int(repeats)):
        for arm, every in (("off", 0.0), ("on", scrape_every_s)):
            run = measure(
                float(dispatches), 0.0, float(duration), int(schedulers), int(partitions), every
            )
            runs[arm].append(cpu_us_per_dispatch(run))
            lost[arm].append(run["lost"])
    median = {
        arm: {role: round(statistics.median(r[role] for r in each), 1) for role in ROLES}
        for arm, each in runs.items()
    }
    change = {
        role: round(100 * (median["on"][role] / median["off"][role] - 1), 1)
        if median["off"][role]
        else None
        for role in ROLES
    }
    pairs = list(zip(runs["off"], runs["on"], strict=True))
    paired = {
        role: round(
            100 * statistics.median(on[role] / off[role] - 1 for off, on in pairs)
            if all(off[role] for off in runs["off"])
            else 0.0,
            1,
        )
        for role in ROLES
    }
    return {
        "dispatches_per_s": dispatches,
        "duration_s": duration,
        "repeats": repeats,
        "scrape_every_s": scrape_every_s,
        "cpu_us_per_dispatch_median": median,
        "change_percent": change,
        "paired_change_percent": paired,  # the median of each on run against the off before it
        "runs": {
            arm: [{k: round(v, 1) for k, v in r.items()} for r in each]
            for arm, each in runs.items()
        },
        "lost": lost,
    }
