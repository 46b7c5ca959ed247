"""The agent server: registers with its pool, heartbeats capacity, runs assigned jobs.

Assignments arrive on the server's inbox stream with a slot already reserved for them. The
server confirms the slot and reports RUNNING in one pipelined round trip, then starts the
entrypoint; when the entrypoint ends it reports SUCCESS or FAILED (with the error text) to
the job's partition and only then frees the slot, so the scheduler always sees either the
final report or the reservation. It never runs more jobs than its capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

from dispatcher import ids
from dispatcher.store import keys, scripts
from dispatcher.store.client import Client, connect, is_cluster
from dispatcher.store.fastlane import stream_entries
from dispatcher.wire import (
    Assignment,
    InboxMessage,
    JobRejected,
    JobReport,
    JobSpec,
    JobStatus,
    JobType,
    ServerInfo,
    ServerStatus,
    Termination,
    encode,
    inbox_decoder,
    pool_name,
)
from workers.context import JobContext, JobRequest

log = logging.getLogger(__name__)

Entrypoint = Callable[[JobContext], Awaitable[None]]
RequestHandler = Callable[[JobRequest], Awaitable[None]]
LoadFunction = Callable[["AgentServer"], float]
_REQUEST_TIMEOUT_S = 5.0
_INBOX_BLOCK_MS = 500


class AgentServer:
    def __init__(
        self,
        *,
        redis_url: str | None = None,
        capacity: int = 10,
        load_fnc: LoadFunction | None = None,
        version: str = "",
        labels: dict[str, str] | None = None,
        heartbeat_interval_s: float = 1.0,
        heartbeat_ttl_ms: int = 3000,
        drain_timeout_s: float = 600.0,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.redis_url = redis_url or os.environ.get(
            "DISPATCHER_REDIS_URL", "redis://127.0.0.1:6379"
        )
        self.capacity = capacity
        self.load_fnc = load_fnc
        self.version = version
        self.labels = labels or {}
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_ttl_ms = heartbeat_ttl_ms
        self.drain_timeout_s = drain_timeout_s
        self.id = ids.worker_id()
        self.agent_name = ""
        self.job_type = JobType.ROOM
        self.running: dict[str, asyncio.Task[None]] = {}
        self.draining = False
        self._entrypoint: Entrypoint | None = None
        self._on_request: RequestHandler | None = None
        self._client: Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = asyncio.Event()
        self._use_pool("")

    def rtc_session(
        self,
        *,
        agent_name: str = "",
        on_request: RequestHandler | None = None,
        job_type: JobType = JobType.ROOM,
    ) -> Callable[[Entrypoint], Entrypoint]:
        """Register the entrypoint for jobs of ``agent_name`` ("" = automatic dispatch):
        one per room (the default), one per participant that joins, or one per participant
        at its first publish (``JobType.PARTICIPANT``, ``JobType.PUBLISHER``)."""
        if any(not c.isprintable() for c in agent_name):
            raise ValueError("agent_name must not contain control characters")

        def register(entrypoint: Entrypoint) -> Entrypoint:
            self.agent_name = agent_name
            self.job_type = JobType(job_type)
            self._entrypoint = entrypoint
            self._on_request = on_request
            self._use_pool(pool_name(agent_name, job_type))
            return entrypoint

        return register

    def _use_pool(self, name: str) -> None:
        self._pool = keys.pool_keys(name)
        # Built once: every job names them.
        self._reservations = self._pool.reservations(self.id)
        self._release_keys = [self._reservations, self._pool.jobs]

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("the agent server is not started")
        return self._client

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._entrypoint is None:
            raise RuntimeError("no entrypoint: decorate one with @server.rtc_session(...)")
        self._client = await connect(self.redis_url)
        await scripts.load_all(self._client)
        await self._client.sadd(keys.POOLS, self._pool.agent_name)
        await self.heartbeat()
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._inbox_loop(), name="inbox"),
        ]
        log.info(
            "agent server %s (%r, capacity %d) registered", self.id, self.agent_name, self.capacity
        )

    async def drain(self, timeout_s: float | None = None) -> None:
        """Take no new jobs, let running ones finish (up to the drain timeout), then leave."""
        self.draining = True
        await self.heartbeat()
        timeout = self.drain_timeout_s if timeout_s is None else timeout_s
        if self.running:
            log.info("draining: waiting for %d running job(s)", len(self.running))
            _, late = await asyncio.wait(list(self.running.values()), timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the loops between reads (cancelling a blocked read can wedge its
        connection), stop any job still running, and leave the pool."""
        self._closing.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=_INBOX_BLOCK_MS / 1000 + 2)
            for task in late:
                task.cancel()
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        if self._client is not None:
            pool = self._pool
            server_keys = [pool.servers, pool.server(self.id), pool.reservations(self.id)]
            await scripts.deregister(
                self._client, [*server_keys, pool.inbox(self.id), pool.jobs], [self.id]
            )
            await self._client.aclose()
            self._client = None

    # --- heartbeat ------------------------------------------------------------------------

    def load(self) -> float:
        return float(self.load_fnc(self)) if self.load_fnc else 0.0

    def status(self) -> ServerStatus:
        if self.draining:
            return ServerStatus.DRAINING
        return ServerStatus.FULL if len(self.running) >= self.capacity else ServerStatus.AVAILABLE

    async def heartbeat(self) -> None:
        pool = self._pool
        info = ServerInfo(
            id=self.id,
            agent_name=self.agent_name,
            job_type=int(self.job_type),
            version=self.version,
            labels=self.labels,
            capacity=self.capacity,
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        args: list[str | int | bytes] = [
            self.id,
            self.capacity,
            f"{self.load():.4f}",
            int(self.status()),
            self.heartbeat_ttl_ms,
            encode(info),
        ]
        server_keys = [pool.servers, pool.server(self.id), pool.reservations(self.id), pool.jobs]
        reply = await scripts.heartbeat(self.client, server_keys, args)
        if len(reply) > 1:
            log.warning(
                "reclaimed %d reservation(s) that never reached this server", len(reply) - 1
            )

    async def _heartbeat_loop(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.heartbeat_interval_s)
                return
            try:
                await self.heartbeat()
            except Exception:
                log.exception("heartbeat failed")

    # --- inbox ----------------------------------------------------------------------------

    async def _inbox_loop(self) -> None:
        inbox, last_id = self._pool.inbox(self.id), b"0-0"
        reads = self.client.fast.dedicated(inbox)  # the blocking read waits on its own socket
        try:
            while not self._closing.is_set():
                try:
                    reply = await reads.execute(
                        "XREAD", "COUNT", 256, "BLOCK", _INBOX_BLOCK_MS, "STREAMS", inbox, last_id
                    )
                except Exception:
                    log.exception("reading the inbox failed")
                    await asyncio.sleep(0.5)
                    continue
                for entry_id, fields in stream_entries(reply):
                    last_id = entry_id
                    self._dispatch(inbox_decoder.decode(fields[b"m"]))
        finally:
            reads.close()

    def _dispatch(self, message: InboxMessage) -> None:
        if isinstance(message, Assignment):
            job_id = message.job.job_id
            task = asyncio.create_task(self._assigned(message.job))
            self.running[job_id] = task
            # a callback, not a ``finally``: a task cancelled before it first ran runs no code
            task.add_done_callback(lambda _: self.running.pop(job_id, None))
        elif isinstance(message, Termination):
            self._terminate(message)

    def _terminate(self, message: Termination) -> None:
        task = self.running.get(message.job_id)
        if task is not None:
            log.info("job %s terminated: %s", message.job_id, message.reason)
            task.cancel()

    # --- one job --------------------------------------------------------------------------

    async def _assigned(self, spec: JobSpec) -> None:
        try:
            await self._handle(spec)
        except Exception:
            # The scheduler's assignment timer re-places a job this server failed to start.
            log.exception("job %s could not be handled", spec.job_id)

    async def _handle(self, spec: JobSpec) -> None:
        ctx = JobContext(spec=spec, worker_id=self.id)
        verdict = await self._verdict(ctx)
        if verdict is not None:
            await self._reject(spec, terminate=verdict[0], reason=verdict[1])
        elif await self._confirm_and_report(spec):
            await self._run(ctx)

    async def _verdict(self, ctx: JobContext) -> tuple[bool, str] | None:
        """None to accept; else (terminate, reason) to reject."""
        if self.draining:
            return False, "draining"
        if len(self.running) > self.capacity:
            return False, "over capacity"
        if self._on_request is None:
            return None
        request = JobRequest(ctx)
        try:
            await asyncio.wait_for(self._on_request(request), _REQUEST_TIMEOUT_S)
        except Exception as exc:
            log.exception("request handler of job %s failed", request.id)
            return False, f"request handler failed: {exc!r}"
        if not request.answer.done():
            return False, "request handler gave no answer"
        return (
            None if request.answer.result() else (request.terminate, "rejected by request handler")
        )

    async def _confirm_and_report(self, spec: JobSpec) -> bool:
        batch = scripts.Batch()
        batch.script(scripts.confirm, [self._reservations], [spec.job_id])
        self._queue_report(batch, spec, JobStatus.RUNNING)
        try:
            confirmed = (await batch.run(self.client))[0]
        except asyncio.CancelledError:
            # Terminated while confirming: the confirm may well have run, and a confirmed
            # slot is never reclaimed, so end the job as a terminated one and free it.
            await self._finish(spec, JobStatus.SUCCESS, "")
            raise
        if confirmed != 1:
            log.warning(
                "job %s: reservation was reclaimed before it arrived; not running", spec.job_id
            )
        return bool(confirmed == 1)

    async def _run(self, ctx: JobContext) -> None:
        spec = ctx.spec
        status, error = JobStatus.SUCCESS, ""
        assert self._entrypoint is not None
        try:
            await self._entrypoint(ctx)
        except asyncio.CancelledError:
            pass  # terminated: LiveKit reports a terminated job as SUCCESS
        except Exception as exc:
            log.exception("job %s failed", spec.job_id)
            status, error = JobStatus.FAILED, f"{type(exc).__name__}: {exc}"
        await ctx.run_shutdown_callbacks()
        await self._finish(spec, status, error)

    async def _finish(self, spec: JobSpec, status: JobStatus, error: str) -> None:
        # The report must be on the stream before the slot is free. On one node both share
        # a connection and one write, and Redis runs them in order; a cluster may keep the
        # partition and the pool on different nodes, so there the report is awaited first.
        batch = scripts.Batch()
        self._queue_report(batch, spec, status, error)
        if is_cluster(self.client):
            await batch.run(self.client)
            batch = scripts.Batch()
        batch.script(scripts.release, self._release_keys, [spec.job_id, self.id])
        await batch.run(self.client)

    async def _reject(self, spec: JobSpec, *, terminate: bool, reason: str) -> None:
        event = JobRejected(
            dispatch_id=spec.dispatch_id,
            job_id=spec.job_id,
            attempt=spec.attempt,
            server_id=self.id,
            terminate=terminate,
            reason=reason,
            key=spec.key,
        )
        events = keys.partition_keys(spec.partition).events
        await self.client.fast.execute("XADD", events, "*", "e", encode(event))
        await self._release(spec)

    async def _release(self, spec: JobSpec) -> None:
        await scripts.release(self.client, self._release_keys, [spec.job_id, self.id])

    def _queue_report(
        self, batch: scripts.Batch, spec: JobSpec, status: JobStatus, error: str = ""
    ) -> None:
        report = JobReport(
            dispatch_id=spec.dispatch_id,
            job_id=spec.job_id,
            attempt=spec.attempt,
            server_id=self.id,
            agent_name=self._pool.agent_name,
            status=status,
            error=error,
            at=time.time_ns(),
            key=spec.key,
        )
        batch.command("XADD", keys.partition_keys(spec.partition).events, "*", "e", encode(report))

    def run(self) -> None:
        """Process entry: ``python my_agent.py start`` (SIGTERM drains)."""
        from workers.runner import run_server

        run_server(self)
