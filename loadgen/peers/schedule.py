"""Enqueuer side: warm-up, the hand-shake with the step, and the open-loop schedule.

Enqueue ``i`` is due at ``t0 + i/rate`` whatever earlier enqueues do. Async clients get one
task per enqueue; a synchronous client (Celery) gets a small thread pool. Either way the
send time is stamped right before the client's enqueue call, and the lag (stamp minus due
time) is what tells whether the enqueuer kept up, including any wait for a free thread.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import msgspec

from loadgen.peers.config import EnqueueConfig, job_key, warmup_key
from loadgen.sender import planned_count, send_time

READY = "ready"
GO = "go"
START_DELAY_S = 0.02  # between the go signal and the first due time
_YIELD_EVERY = 64  # when behind schedule, still let enqueues progress this often

AsyncSubmit = Callable[[str, int], Awaitable[object]]
SyncSubmit = Callable[[str, int], object]


class EnqueueStats(msgspec.Struct, frozen=True):
    """The one JSON line an enqueuer prints when its schedule is done."""

    planned: int
    sent: int
    accepted: int  # enqueue calls that returned without raising
    errors: dict[str, int]  # exception class name -> count
    failed: list[int]  # indices of the sent enqueues that raised
    max_lag_ns: int
    achieved_rate: float  # sends per second between the first and the last send
    cpu_s: float  # this process, from the go signal until every enqueue returned


@dataclass(frozen=True, slots=True)
class Outcome:
    index: int
    stamped: float  # perf_counter() at the send stamp
    due: float
    error: str | None


def wait_for_go() -> None:
    """Tell the step the warm-up jobs are sent, then block until it says go."""
    print(READY, flush=True)
    if sys.stdin.readline().strip() != GO:
        raise SystemExit("enqueuer: stdin closed before the go signal")


async def run_async(submit: AsyncSubmit, config: EnqueueConfig) -> EnqueueStats:
    """Warm up, hand-shake, then run the schedule with one task per enqueue."""
    for index in range(config.warmup):
        await submit(warmup_key(config.run_id, index), time.time_ns())
    await asyncio.to_thread(wait_for_go)
    cpu_before = time.process_time()
    planned = planned_count(config.rate, config.duration_s)
    t0 = time.perf_counter() + START_DELAY_S
    tasks: list[asyncio.Task[Outcome]] = []
    for index in range(planned):
        due = send_time(t0, index, config.rate)
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif index % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        key = job_key(config.run_id, index)
        tasks.append(asyncio.create_task(_send_async(submit, key, index, due)))
    outcomes = await asyncio.gather(*tasks)
    return summarize(planned, outcomes, time.process_time() - cpu_before)


async def _send_async(submit: AsyncSubmit, key: str, index: int, due: float) -> Outcome:
    stamped = time.perf_counter()
    sent_ns = time.time_ns()
    try:
        await submit(key, sent_ns)
    except Exception as exc:
        return Outcome(index, stamped, due, type(exc).__name__)
    return Outcome(index, stamped, due, None)


def run_threaded(submit: SyncSubmit, config: EnqueueConfig, threads: int) -> EnqueueStats:
    """Warm up, hand-shake, then run the schedule on ``threads`` sending threads."""
    for index in range(config.warmup):
        submit(warmup_key(config.run_id, index), time.time_ns())
    wait_for_go()
    cpu_before = time.process_time()
    planned = planned_count(config.rate, config.duration_s)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="enqueue") as pool:
        t0 = time.perf_counter() + START_DELAY_S
        futures = []
        for index in range(planned):
            due = send_time(t0, index, config.rate)
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            key = job_key(config.run_id, index)
            futures.append(pool.submit(_send_sync, submit, key, index, due))
        outcomes = [future.result() for future in futures]
    return summarize(planned, outcomes, time.process_time() - cpu_before)


def _send_sync(submit: SyncSubmit, key: str, index: int, due: float) -> Outcome:
    stamped = time.perf_counter()
    sent_ns = time.time_ns()
    try:
        submit(key, sent_ns)
    except Exception as exc:
        return Outcome(index, stamped, due, type(exc).__name__)
    return Outcome(index, stamped, due, None)


def summarize(planned: int, outcomes: Sequence[Outcome], cpu_s: float) -> EnqueueStats:
    errors = Counter(o.error for o in outcomes if o.error is not None)
    stamps = [o.stamped for o in outcomes]
    span = max(stamps) - min(stamps) if stamps else 0.0
    return EnqueueStats(
        planned=planned,
        sent=len(outcomes),
        accepted=len(outcomes) - errors.total(),
        errors=dict(sorted(errors.items())),
        failed=[o.index for o in outcomes if o.error is not None],
        max_lag_ns=max((int((o.stamped - o.due) * 1e9) for o in outcomes), default=0),
        achieved_rate=(len(outcomes) - 1) / span if span > 0 else 0.0,
        cpu_s=cpu_s,
    )
