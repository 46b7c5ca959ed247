"""Celery with its Redis broker (kombu's Redis transport: one list per queue, ``BRPOP``).

Worker: ``app.worker_main`` (what ``celery worker`` runs) with ``--pool threads
--concurrency <capacity>``: one process running up to 100 tasks on 100 threads. The default
``prefork`` pool would be 100 processes, ``solo`` runs one task at a time, and
``eventlet``/``gevent`` need extra packages and monkey-patching. SIGTERM is Celery's warm
shutdown: running tasks finish, unstarted prefetched messages go back to the queue.

Variants:

* ``defaults``: ``task_acks_late=False``: a message is acked (dropped from kombu's unacked
  hash, one pipelined call) when a pool thread accepts the task, just before the task body
  runs; ``worker_prefetch_multiplier=4``: up to 4 x capacity messages reserved.
* ``at-least-once``: ``task_acks_late=True`` (the ack after the body returned),
  ``task_reject_on_worker_lost=True`` and ``worker_prefetch_multiplier=1`` (no more messages
  reserved than there are threads). ``reject_on_worker_lost`` acts when a pool *process*
  dies (prefork); with threads the worker dies together with the task, and its unacked
  messages come back through the transport instead: a live worker's periodic
  ``restore_visible`` re-queues messages left unacked longer than ``visibility_timeout``
  (1 h by default).

Enqueuer: Celery's client is synchronous, so ``apply_async`` runs on ``broker_pool_limit``
threads (10 by default): the size of Celery's producer pool, beyond which a thread would
only wait for a producer.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from celery import Celery
from celery.exceptions import SecurityWarning

from loadgen.peers.cli import PeerRunner
from loadgen.peers.config import AT_LEAST_ONCE, EnqueueConfig, WorkerConfig
from loadgen.peers.recording import Recorder, ThreadFlusher
from loadgen.peers.schedule import EnqueueStats, run_threaded

TASK_NAME = "loadgen_record_start"

AT_LEAST_ONCE_SETTINGS: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
}


def make_app(redis_url: str, variant: str) -> Any:
    app = Celery("loadgen-peer", broker=redis_url, set_as_current=False)
    if variant == AT_LEAST_ONCE:
        app.conf.update(AT_LEAST_ONCE_SETTINGS)
    return app


def make_task(app: Any, recorder: Recorder) -> Any:
    def record_start(key: str, sent_ns: int) -> None:
        start = time.time_ns()  # first statement: everything before it is dispatch time
        recorder.started(key, sent_ns, start)

    return app.task(name=TASK_NAME)(record_start)


def worker_argv(capacity: int) -> list[str]:
    return ["worker", "--pool=threads", f"--concurrency={capacity}", "--loglevel=WARNING"]


def serve(config: WorkerConfig) -> None:
    # Celery warns when the worker runs as root (and refuses to with pickle content);
    # benchmark containers often do, and this worker accepts JSON only.
    warnings.filterwarnings(
        "ignore", "You're running the worker with superuser privileges", SecurityWarning
    )
    app = make_app(config.redis_url, config.variant)
    recorder = Recorder()
    make_task(app, recorder)
    flusher = ThreadFlusher(recorder, config.redis_url, config.run_id)
    flusher.start()
    try:
        app.worker_main(worker_argv(config.capacity))
    finally:
        flusher.stop()  # after the warm shutdown: every started task has been recorded


def enqueue(config: EnqueueConfig) -> EnqueueStats:
    app = make_app(config.redis_url, config.variant)
    task = make_task(app, Recorder())

    def submit(key: str, sent_ns: int) -> None:
        task.apply_async(args=(key, sent_ns))

    try:
        return run_threaded(submit, config, threads=int(app.conf.broker_pool_limit))
    finally:
        app.close()


RUNNER = PeerRunner(serve=serve, enqueue=enqueue)
