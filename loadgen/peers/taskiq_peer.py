"""Taskiq with its Redis Streams broker (``taskiq_redis.RedisStreamBroker``).

Worker: taskiq's own worker body, ``taskiq.cli.worker.run.start_listen`` (what each child of
``taskiq worker`` runs: uvloop, taskiq's SIGTERM handling, a ``Receiver``), called in this
process. ``taskiq worker --workers 1`` would add a supervising parent that only restarts dead
children; without it the worker is exactly one process. Capacity is the receiver's
``max_async_tasks`` (at most that many tasks running at once, each an asyncio task).

Variants:

* ``defaults``: broker and worker defaults. The broker reads with ``XREADGROUP COUNT 100
  BLOCK 2000`` and after every non-empty read runs an ``XAUTOCLAIM`` (idle > 10 min) pipeline;
  the receiver acks (``XACK``) with ``ack_type=when_saved``, i.e. after the task returned and
  its result went to the result backend (none configured: the no-op dummy).
* ``at-least-once``: ``ack_type=when_executed``, the ack right after the task returned,
  whatever result backend is configured. Taskiq's default already acks only after execution,
  so both variants issue the same Redis calls. A job whose worker dies mid-run stays in the
  group's pending list and is claimed again once idle for ``idle_timeout`` (10 min), and only
  by a worker whose last read returned messages: the claim runs after non-empty reads only.
"""

from __future__ import annotations

import time
from typing import Any, cast

import uvloop
from taskiq import AsyncTaskiqDecoratedTask, TaskiqEvents, TaskiqState
from taskiq.acks import AcknowledgeType
from taskiq.cli.worker.args import WorkerArgs
from taskiq.cli.worker.run import start_listen
from taskiq_redis import RedisStreamBroker

from loadgen.peers.cli import PeerRunner
from loadgen.peers.config import AT_LEAST_ONCE, EnqueueConfig, WorkerConfig
from loadgen.peers.recording import AsyncFlusher, Recorder
from loadgen.peers.schedule import EnqueueStats, run_async

TASK_NAME = "loadgen_record_start"

RecordStart = AsyncTaskiqDecoratedTask[[str, int], Any]


def make_task(broker: RedisStreamBroker, recorder: Recorder) -> RecordStart:
    async def record_start(key: str, sent_ns: int) -> None:
        start = time.time_ns()  # first statement: everything before it is dispatch time
        recorder.started(key, sent_ns, start)

    return broker.register_task(record_start, task_name=TASK_NAME)


def ack_type(variant: str) -> AcknowledgeType:
    return AcknowledgeType.WHEN_EXECUTED if variant == AT_LEAST_ONCE else AcknowledgeType.WHEN_SAVED


def serve(config: WorkerConfig) -> None:
    broker = RedisStreamBroker(config.redis_url)
    recorder = Recorder()
    make_task(broker, recorder)
    flusher = AsyncFlusher(recorder, config.redis_url, config.run_id)

    async def on_startup(_: TaskiqState) -> None:
        await flusher.start()

    async def on_shutdown(_: TaskiqState) -> None:
        await flusher.stop()

    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, on_startup)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, on_shutdown)
    args = WorkerArgs(
        # start_listen takes a broker instance as well as an import path
        broker=cast(str, broker),
        modules=[],
        configure_logging=False,
        max_async_tasks=config.capacity,
        ack_type=ack_type(config.variant),
    )
    start_listen(args)


def enqueue(config: EnqueueConfig) -> EnqueueStats:
    return uvloop.run(_enqueue(config))


async def _enqueue(config: EnqueueConfig) -> EnqueueStats:
    broker = RedisStreamBroker(config.redis_url)
    task = make_task(broker, Recorder())
    await broker.startup()
    try:
        return await run_async(task.kiq, config)
    finally:
        await broker.shutdown()


RUNNER = PeerRunner(serve=serve, enqueue=enqueue)
