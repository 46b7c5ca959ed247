"""The capacity model's arithmetic: costs by rate, the mixed prediction and the sizing."""

from __future__ import annotations

from typing import Any

import pytest

from loadgen.capacity import (
    check_mixes,
    cost_at,
    cost_table,
    planning_costs,
    predict_cpu_s,
    size,
)


def run(
    d: float, j: float, done: dict[str, int], cpu: dict[str, float], sender: float = 0.5
) -> Any:
    return {
        "dispatches_per_s": d,
        "joins_per_s": j,
        "duration_s": 10.0,
        "accepted": done,
        "cpu_s": cpu,
        "loadgen_cpu_s": sender,
    }


def cpu(api: float, schedulers: float, agents: float, redis: float) -> dict[str, float]:
    return {"api": api, "schedulers": schedulers, "agents": agents, "redis": redis}


RUNS = [
    run(100, 0, {"dispatch": 1000}, cpu(1.0, 2.0, 1.0, 1.0)),
    run(100, 0, {"dispatch": 1000}, cpu(1.2, 2.2, 1.0, 1.0)),
    run(100, 0, {"dispatch": 1000}, cpu(5.0, 9.0, 1.0, 1.0)),  # an outlier the median drops
    run(200, 0, {"dispatch": 2000}, cpu(1.0, 2.0, 1.0, 1.0)),
    run(0, 300, {"joins": 3000}, cpu(0.9, 0.3, 0.0, 0.6), sender=7.5),  # CPU 1 asked 0.87
    run(0, 150, {"joins": 1500}, cpu(0.6, 0.3, 0.0, 0.3)),
]


def test_cost_table_is_the_median_per_unit_by_workload_and_rate() -> None:
    table = cost_table(RUNS)
    assert table["dispatch"][100.0]["api"] == 1200.0  # µs: 1.2 s over 1,000
    assert table["dispatch"][100.0]["schedulers"] == 2200.0
    assert table["dispatch"][200.0]["api"] == 500.0
    assert list(table["join"]) == [150.0, 300.0]
    assert table["join"][300.0]["redis"] == 200.0


def test_cost_between_rates_is_interpolated_and_outside_them_the_nearest() -> None:
    table = cost_table(RUNS)["dispatch"]
    assert cost_at(table, 150.0, "api") == pytest.approx(850.0)
    assert cost_at(table, 50.0, "api") == 1200.0
    assert cost_at(table, 1000.0, "api") == 500.0


def test_a_mix_costs_each_workload_at_its_own_rate() -> None:
    table = cost_table(RUNS)
    predicted = predict_cpu_s(table, {"dispatch": (200.0, 2000), "join": (150.0, 1500)})
    assert predicted["api"] == pytest.approx(2000 * 500e-6 + 1500 * 400e-6)
    assert predicted["agents"] == pytest.approx(2000 * 500e-6)


def test_the_check_compares_a_mixed_run_with_its_prediction() -> None:
    table = cost_table(RUNS)
    mixed = run(200, 150, {"dispatch": 2000, "joins": 1500}, cpu(2.0, 2.3, 1.0, 2.0))
    (check,) = check_mixes(table, [*RUNS, mixed])
    assert check["predicted_over_measured"]["api"] == pytest.approx(0.8)
    assert check["predicted_over_measured"]["redis"] == pytest.approx(0.65)
    assert check["within_tolerance"] is False  # Redis is 35 % under


def test_planning_uses_the_highest_rate_that_did_not_starve_the_roles() -> None:
    table = cost_table(RUNS)
    stored = {
        "runs": RUNS,
        "costs_us": {w: {str(r): c for r, c in t.items()} for w, t in table.items()},
    }
    chosen = planning_costs(stored)
    assert chosen["dispatch"]["rate"] == 200.0
    assert chosen["join"]["rate"] == 150.0  # 300/s asked more of CPU 1 than it had to spare


def test_sizing_rounds_up_per_role_and_gives_partitions_for_every_scheduler() -> None:
    costs = {
        "dispatch": {"api": 400.0, "schedulers": 500.0, "agents": 300.0, "redis": 600.0},
        "join": {"api": 0.0, "schedulers": 0.0, "agents": 0.0, "redis": 0.0},
    }
    sizing = size(costs, 100_000, 0, utilisation=0.6, redis_utilisation=0.5,
                  new_room_share=0.1, job_s=60, capacity=25)  # fmt: skip
    assert sizing.cores == {"api": 40.0, "schedulers": 50.0, "agents": 30.0, "redis": 60.0}
    assert sizing.processes == {"api": 67, "schedulers": 84, "redis_shards": 120}
    assert sizing.partitions == 128  # 120 shards and 84 schedulers need more than 64
    assert sizing.pool_shards == 120  # a pool on every shard
    assert sizing.agent_servers == 240_000
