"""arq: a sorted set per queue, one Redis key per job, a worker that polls.

Worker: ``arq.worker.Worker`` with ``max_jobs=capacity``: one process, one event loop. It runs
on uvloop like every other process of the benchmark (arq uses the current event loop; its
CLI leaves asyncio's default in place).

Variants: arq has one delivery mode and it is at-least-once ("pessimistic execution"): a job
stays in the queue's sorted set until a worker finished it; starting it only sets an
in-progress key that expires after ``job_timeout`` + 10 s (310 s by default), after which
any worker runs it again (up to ``max_tries`` = 5). There is nothing to switch on, so both
variants run arq's defaults.

Defaults that shape dispatch time: the worker polls (``ZRANGEBYSCORE``) every
``poll_delay`` = 0.5 s, so a job waits for the next poll, half a poll on average. Each poll
reads at most ``queue_read_limit`` = max(5 x max_jobs, 100) ids and starts them one after
another, each with ``WATCH``/``EXISTS``/``ZSCORE``/``MULTI PSETEX EXEC`` and then
``GET``/``INCR``/``EXPIRE`` before the body runs. Enqueueing is ``WATCH``/``EXISTS``, then
``MULTI PSETEX ZADD EXEC``, on a pool of at most 100 connections (redis-py's default, which
raises rather than waits when exhausted).
"""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import Any

import uvloop
from arq import Worker, create_pool
from arq.connections import RedisSettings
from arq.worker import Function, func

from loadgen.peers.cli import PeerRunner
from loadgen.peers.config import EnqueueConfig, WorkerConfig
from loadgen.peers.recording import AsyncFlusher, Recorder
from loadgen.peers.schedule import EnqueueStats, run_async

TASK_NAME = "loadgen_record_start"


def make_function(recorder: Recorder) -> Function:
    async def record_start(ctx: dict[str, Any], key: str, sent_ns: int) -> None:
        start = time.time_ns()  # first statement: everything before it is dispatch time
        recorder.started(key, sent_ns, start)

    return func(record_start, name=TASK_NAME)


def serve(config: WorkerConfig) -> None:
    # arq 0.25 closes its pool with redis-py's deprecated close(); nothing to configure.
    warnings.filterwarnings(
        "ignore", "Call to deprecated close", DeprecationWarning, module=r"arq\.worker"
    )
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)  # Worker binds to the current loop when constructed
    recorder = Recorder()
    flusher = AsyncFlusher(recorder, config.redis_url, config.run_id)
    worker = Worker(
        functions=[make_function(recorder)],
        redis_settings=RedisSettings.from_dsn(config.redis_url),
        max_jobs=config.capacity,
    )
    loop.run_until_complete(flusher.start())
    try:
        worker.run()  # until SIGTERM; finishes or cancels the running jobs
    finally:
        loop.run_until_complete(flusher.stop())
        loop.close()


def enqueue(config: EnqueueConfig) -> EnqueueStats:
    return uvloop.run(_enqueue(config))


async def _enqueue(config: EnqueueConfig) -> EnqueueStats:
    pool = await create_pool(RedisSettings.from_dsn(config.redis_url))

    async def submit(key: str, sent_ns: int) -> None:
        await pool.enqueue_job(TASK_NAME, key, sent_ns)

    try:
        return await run_async(submit, config)
    finally:
        await pool.aclose()


RUNNER = PeerRunner(serve=serve, enqueue=enqueue)
