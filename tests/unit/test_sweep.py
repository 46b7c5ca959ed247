"""The knee search against synthetic systems: bracket, resolution, caps, reasons."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from loadgen.sweep import (
    KneeCriteria,
    KneeResult,
    StepOutcome,
    backlog_bounded,
    find_knee,
    passes,
)

CRITERIA = KneeCriteria()


def healthy(rate: float) -> StepOutcome:
    return StepOutcome(
        rate=rate,
        achieved_rate=rate,
        p99_ms=5.0,
        max_ms=20.0,
        lost=0,
        errors=0,
        backlog_bounded=True,
    )


def overloaded(rate: float) -> StepOutcome:
    return StepOutcome(
        rate=rate,
        achieved_rate=rate * 0.8,
        p99_ms=72.14,
        max_ms=900.0,
        lost=0,
        errors=0,
        backlog_bounded=False,
    )


class System:
    """A synthetic system that meets the criteria up to ``capacity`` and fails above."""

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.rates: list[float] = []

    async def measure(self, rate: float) -> StepOutcome:
        self.rates.append(rate)
        return healthy(rate) if rate <= self.capacity else overloaded(rate)


async def search(
    measure: Callable[[float], Awaitable[StepOutcome]], **overrides: float
) -> KneeResult:
    arguments: dict[str, float] = {"start": 100.0, "max_rate": 100_000.0} | overrides
    return await find_knee(
        measure,
        start=arguments["start"],
        criteria=CRITERIA,
        max_rate=arguments["max_rate"],
        resolution=arguments.get("resolution", 0.1),
        max_steps=int(arguments.get("max_steps", 12)),
    )


# --- passes ------------------------------------------------------------------------------


def test_a_healthy_step_passes_without_reason() -> None:
    assert passes(healthy(500.0), CRITERIA) == (True, "")


def test_limits_themselves_pass() -> None:
    at_limits = StepOutcome(500.0, 475.0, 50.0, 150.0, 0, 0, True)
    assert passes(at_limits, CRITERIA) == (True, "")


def test_every_missed_criterion_is_named() -> None:
    ok, reason = passes(overloaded(500.0), CRITERIA)
    assert not ok
    assert reason == (
        "p99 72.1 ms > 50 ms; max 900.0 ms > 150 ms; achieved 400.0/s < 95% of 500/s; "
        "backlog not bounded"
    )


def test_lost_errors_and_missing_latency_fail() -> None:
    step = StepOutcome(500.0, 500.0, None, None, lost=2, errors=3, backlog_bounded=True)
    ok, reason = passes(step, CRITERIA)
    assert not ok
    assert reason == "no job started; lost 2 > 0; errors 3 > 0"


def test_criteria_can_allow_some_errors() -> None:
    step = StepOutcome(500.0, 500.0, 1.0, 2.0, lost=0, errors=3, backlog_bounded=True)
    assert passes(step, KneeCriteria(max_errors=5)) == (True, "")


# --- backlog_bounded ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("send_rate", "started_within_grace", "expected"),
    [
        (500.0, 1000, True),
        (480.0, 1000, True),  # 96 % of the offer
        (400.0, 1000, False),  # the generator fell behind
        (500.0, 990, False),  # jobs still queued after the grace
    ],
)
def test_backlog_bounded(send_rate: float, started_within_grace: int, expected: bool) -> None:
    assert (
        backlog_bounded(
            offered_rate=500.0,
            send_rate=send_rate,
            accepted=1000,
            started_within_grace=started_within_grace,
        )
        is expected
    )


# --- find_knee ---------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [150.0, 1234.0, 5000.0, 99_000.0])
async def test_knee_is_found_within_resolution(capacity: float) -> None:
    system = System(capacity)
    result = await search(system.measure, resolution=0.05, max_steps=30)
    assert result.stopped == "resolution reached"
    assert result.knee_rate is not None and result.lowest_failing_rate is not None
    assert result.knee_rate <= capacity < result.lowest_failing_rate
    assert (result.lowest_failing_rate - result.knee_rate) / result.knee_rate <= 0.05
    assert [step.outcome.rate for step in result.steps] == system.rates


async def test_doubles_then_bisects_in_order() -> None:
    system = System(1000.0)
    result = await search(system.measure, resolution=0.1)
    assert system.rates == [100.0, 200.0, 400.0, 800.0, 1600.0, 1200.0, 1000.0, 1100.0]
    assert result.knee_rate == 1000.0
    assert result.lowest_failing_rate == 1100.0  # (1100 - 1000) / 1000 <= 0.1
    passed = [step.passed for step in result.steps]
    assert passed == [True, True, True, True, False, False, True, False]
    assert not result.capped


async def test_reasons_are_kept_per_step() -> None:
    result = await search(System(300.0).measure)
    failed = [step for step in result.steps if not step.passed]
    assert failed and all(step.reason.startswith("p99 72.1 ms > 50 ms") for step in failed)
    assert all(step.reason == "" for step in result.steps if step.passed)


async def test_failing_start_gives_no_knee() -> None:
    system = System(50.0)
    result = await search(system.measure)
    assert result.knee_rate is None
    assert result.lowest_failing_rate == 100.0
    assert result.stopped == "start failed"
    assert system.rates == [100.0]


async def test_max_rate_caps_the_doubling() -> None:
    system = System(1e9)
    result = await search(system.measure, max_rate=1000.0)
    assert system.rates == [100.0, 200.0, 400.0, 800.0, 1000.0]
    assert result.knee_rate == 1000.0
    assert result.lowest_failing_rate is None
    assert result.capped
    assert result.stopped == "max_rate passed"


async def test_a_failing_max_rate_is_bisected_below_it() -> None:
    system = System(950.0)
    result = await search(system.measure, max_rate=1000.0, resolution=0.01)
    assert system.rates[:5] == [100.0, 200.0, 400.0, 800.0, 1000.0]
    assert result.knee_rate is not None and 800.0 <= result.knee_rate <= 950.0
    assert not result.capped


@pytest.mark.parametrize("max_steps", [1, 3, 6, 7])
async def test_step_count_is_bounded(max_steps: int) -> None:
    system = System(1234.0)
    result = await search(system.measure, resolution=1e-6, max_steps=max_steps)
    assert len(result.steps) == len(system.rates) == max_steps
    assert result.stopped == "steps exhausted"


async def test_steps_run_out_while_still_doubling() -> None:
    result = await search(System(1e9).measure, max_steps=3)
    assert result.knee_rate == 400.0
    assert result.lowest_failing_rate is None
    assert not result.capped
    assert result.stopped == "steps exhausted"


@pytest.mark.parametrize(
    "overrides",
    [
        {"start": 0.0},
        {"start": 100.0, "max_rate": 50.0},
        {"resolution": 0.0},
        {"max_steps": 0},
    ],
)
async def test_bad_arguments_are_rejected(overrides: dict[str, float]) -> None:
    system = System(100.0)
    with pytest.raises(ValueError):
        await search(system.measure, **overrides)
    assert system.rates == []
