"""The fleet-scale benchmarks run end to end on a small scale, so they keep working."""

from __future__ import annotations

from loadgen import fleet_idle, placement_bench, shard_calls_bench


def test_placement_costs_the_same_per_job_whatever_the_pool() -> None:
    assert placement_bench.per_placement_us(10, 200, 12) > 0
    assert placement_bench.per_placement_us(1000, 200, 12) > 0


def test_an_idle_fleet_registers_and_its_cost_is_reported() -> None:
    plan = fleet_idle.IdlePlan(40, 1, duration_s=1.0, warmup_s=3.0, pin=False)
    report = fleet_idle.run(plan)
    assert report["servers_registered"] == 40
    assert report["redis_cpu_pct"] > 0
    assert report["calls_per_s"]["zadd"] > 0  # the quiet heartbeats


def test_each_pool_call_is_timed_in_its_worst_case() -> None:
    timed = shard_calls_bench.run(servers=120, shards=12, pin=False)["calls_us"]
    assert set(timed) == {
        "heartbeat (saying everything)",
        "heartbeat (plain ZADD)",
        "reserve (stale index)",
        "shard_tick (full page, reap, reclaim)",
    }
    assert all(t["max"] >= t["median"] > 0 for t in timed.values())
