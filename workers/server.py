"""The agent server: registers with its pool, heartbeats capacity, runs assigned jobs.

Assignments arrive on the server's inbox stream with a slot already reserved for them. The
server confirms the slot and reports RUNNING in one pipelined round trip, then starts the
entrypoint; when the entrypoint ends it reports SUCCESS or FAILED (with the error text) to
the job's partition and only then frees the slot, so the scheduler always sees either the
final report or the reservation. It never runs more jobs than its capacity.

Liveness is a lease: a server that has had no heartbeat acknowledged for ``heartbeat_ttl``
minus ``fence_margin`` stops its jobs (it fences itself), before any scheduler may declare
it lost and re-place them; each heartbeat also names the jobs it runs, and a job whose
reservation is gone (re-placed while this server was cut off) is stopped at once. Reports
that end a job are retried until Redis acknowledges them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

from dispatcher import ids, targets
from dispatcher import settings as config
from dispatcher.errors import describe
from dispatcher.metrics.counts import AgentServerCounts
from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import Client, connect
from dispatcher.store.fastlane import stream_entries
from dispatcher.store.meta import ensure_pool_shards
from dispatcher.wire import (
    Assignment,
    Drain,
    InboxMessage,
    JobRejected,
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
from workers import server_calls
from workers.context import JobContext, JobRequest
from workers.retry import until_acknowledged
from workers.runner import run_server

log = logging.getLogger(__name__)

Entrypoint = Callable[[JobContext], Awaitable[None]]
RequestHandler = Callable[[JobRequest], Awaitable[None]]
LoadFunction = Callable[["AgentServer"], float]
_REQUEST_TIMEOUT_S = 5.0
_INBOX_BLOCK_MS = 500
SAY_ALL_EVERY = 30  # heartbeats: what a failover lost is said again within 30 s
_HEARTBEAT_RETRY_S = 0.1  # while heartbeats fail: the first one after Redis is back counts
_CLOSE_REPORTS_S = 10.0  # how long closing waits for stopped jobs' final reports


class AgentServer:
    def __init__(
        self,
        *,
        redis_url: str | None = None,
        capacity: int = 10,
        load_fnc: LoadFunction | None = None,
        version: str | None = None,
        labels: dict[str, str] | None = None,
        heartbeat_interval_s: float | None = None,
        heartbeat_ttl_ms: int | None = None,
        fence_margin_ms: int | None = None,
        drain_timeout_s: float | None = None,
    ) -> None:
        """Settings left out come from ``DISPATCHER_*`` (``AgentSettings``), else defaults."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        env = config.load(config.AgentSettings)
        self.heartbeat_interval_s = config.given(heartbeat_interval_s, env.heartbeat_interval_s)
        self.heartbeat_ttl_ms = config.given(heartbeat_ttl_ms, env.heartbeat_ttl_ms)
        margin = config.given(fence_margin_ms, env.fence_margin_ms) or self.heartbeat_ttl_ms // 3
        if not 0 < margin < self.heartbeat_ttl_ms:
            raise ValueError("fence_margin_ms must be positive and below heartbeat_ttl_ms")
        self.fence_margin_ms = margin
        self.drain_timeout_s = config.given(drain_timeout_s, env.drain_timeout_s)
        self.redis_url = redis_url or env.redis_url
        self.health_host, self.health_port = env.health_host, env.health_port
        self.metrics_host, self.metrics_port = env.metrics_host, env.metrics_port
        self.counts = AgentServerCounts()
        self._replication = env.replication()
        self._pool_shards = env.pool_shards
        self.capacity = capacity
        self.load_fnc = load_fnc
        identity = targets.server_identity(version, labels, env.agent_version, env.agent_labels)
        self.version, self.labels = identity
        self.id = ids.worker_id()
        self.agent_name = ""
        self.job_type = JobType.ROOM
        self.running: dict[str, asyncio.Task[None]] = {}
        self.draining = False
        self._entrypoint: Entrypoint | None = None
        self._on_request: RequestHandler | None = None
        self._client: Client | None = None
        self._shared_client = False
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = asyncio.Event()  # take no new jobs
        self._leaving = asyncio.Event()  # every job has ended: stop heartbeating
        self._acked_at = float("-inf")  # monotonic send time of the last acknowledged heartbeat
        self._entered: set[str] = set()  # jobs confirmed and in their entrypoint
        self._stopped: dict[str, str] = {}  # job id -> why this server stopped it itself
        self._finishing: set[str] = set()  # jobs whose final report is on its way
        self._said: tuple[int, str, int] | None = None  # as of the last acknowledged heartbeat
        self._beats = 0  # acknowledged heartbeats
        self._redis_offset_ms: int | None = None  # Redis ms minus local monotonic ms (over)
        self._offset_disconnects = 0  # the fast lane's disconnects when it was measured
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
        self._pool_name = name
        self._shard: keys.ShardKeys | None = None  # known once started (K is in Redis)

    @property
    def shard(self) -> keys.ShardKeys:
        """This server's shard of its pool: where it heartbeats and finds its inbox."""
        if self._shard is None:
            raise RuntimeError("the agent server is not started")
        return self._shard

    @property
    def longest_drain_s(self) -> float:
        """The longest a SIGTERM'd server takes to stop: its jobs' drain, then closing
        (the inbox read, the stopped jobs' final reports, the other tasks)."""
        return self.drain_timeout_s + 2 * (_INBOX_BLOCK_MS / 1000 + 2) + _CLOSE_REPORTS_S

    def not_ready(self) -> str | None:
        """Why this server should not count as ready (None: its heartbeats land)."""
        if self.draining:
            return "draining"
        silent_s = time.monotonic() - self._acked_at
        if silent_s == float("inf"):
            return "starting"
        if silent_s > self.heartbeat_ttl_ms / 1000:
            return f"no heartbeat acknowledged for {silent_s:.0f} s (Redis unavailable?)"
        return None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("the agent server is not started")
        return self._client

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, client: Client | None = None) -> None:
        """Join the pool; ``client``: a connection to share (kept open by ``aclose``)."""
        if self._entrypoint is None:
            raise RuntimeError("no entrypoint: decorate one with @server.rtc_session(...)")
        self._shared_client = client is not None
        self._client = client or await connect(self.redis_url, self._replication)
        try:
            await ensure_pool_shards(self._client, self._pool_shards)
            self._shard = keys.server_shard(self._pool_name, self.id, self._pool_shards)
            await scripts.load_all(self._client)
            await self.heartbeat()
        except BaseException:  # Redis went away: ``start`` may be called again
            own, self._client = self._client, None
            if not self._shared_client:
                await own.aclose()
            raise
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._fence_loop(), name="fence"),
            asyncio.create_task(self._inbox_loop(), name="inbox"),
        ]
        log.info(
            "agent server %s (%r, capacity %d) registered", self.id, self.agent_name, self.capacity
        )

    async def drain(self, timeout_s: float | None = None) -> None:
        """Take no new jobs, let running ones finish (up to the drain timeout), then leave."""
        self.draining = True
        try:
            await self.heartbeat()  # DRAINING: no new placements
        except Exception as exc:  # policy: the heartbeat loop says it again in a moment
            log.warning("could not announce the drain (%s)", describe(exc))
        timeout = self.drain_timeout_s if timeout_s is None else timeout_s
        if self.running:
            log.info("draining: waiting for %d running job(s)", len(self.running))
            _, late = await asyncio.wait(list(self.running.values()), timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop reading the inbox between reads (cancelling a blocked read can wedge its
        connection), stop any job still running, and leave the pool. Heartbeats go on
        (saying DRAINING) until the stopped jobs' final reports have landed: a server that
        fell silent first would be judged lost and its jobs re-run."""
        self.draining = True
        self._closing.set()
        await self._end_tasks([t for t in self._tasks if t.get_name() == "inbox"])
        await self._stop_jobs()
        self._leaving.set()
        await self._end_tasks(self._tasks)
        if self._client is not None:
            shard = self.shard
            try:
                await scripts.deregister(self._client, *calls.deregister(shard, self.id))
            except Exception as exc:  # policy: the schedulers find it lost and reap it
                log.warning("could not leave the pool (%s); it will be reaped", describe(exc))
            if not self._shared_client:
                await self._client.aclose()
            self._client = None

    async def _end_tasks(self, tasks: list[asyncio.Task[None]]) -> None:
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=_INBOX_BLOCK_MS / 1000 + 2)
            for task in late:
                task.cancel()

    async def _stop_jobs(self) -> None:
        """Stop every job; their final reports get a while to reach Redis, then are
        abandoned (the schedulers then treat this server as lost)."""
        for job_id, task in list(self.running.items()):
            if job_id not in self._finishing:  # a report on its way is let through
                task.cancel()
        if not self.running:
            return
        _, late = await asyncio.wait(list(self.running.values()), timeout=_CLOSE_REPORTS_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            log.error("%d job(s) closed without a final report: Redis did not answer", len(late))

    # --- heartbeat ------------------------------------------------------------------------

    def load(self) -> float:
        return float(self.load_fnc(self)) if self.load_fnc else 0.0

    def status(self) -> ServerStatus:
        if self.draining:
            return ServerStatus.DRAINING
        return ServerStatus.FULL if len(self.running) >= self.capacity else ServerStatus.AVAILABLE

    async def heartbeat(self) -> None:
        """Extend this server's lease. Every server sends one a second, so the common case
        is kept cheap: with nothing to say and no job to check, a plain ``ZADD`` of the new
        expiry. Otherwise the heartbeat script, which also records what the server says of
        itself (when that changed since the last acknowledged heartbeat, and every few
        heartbeats all the same, since a failover may lose it) and names its running jobs
        whose reservation is gone."""
        said = (self.capacity, f"{self.load():.2f}", int(self.status()))
        say = said != self._said or self._beats % SAY_ALL_EVERY == 0
        if not (say or self._entered):
            if await self._extend_lease():
                return
            say = True  # it may be gone from its pool (reaped): register it whole again
        await self._heartbeat_script(said, say)

    async def _extend_lease(self) -> bool:
        """The expiry on Redis's clock, as the script would set it but computed here:
        the send time plus the TTL, with Redis's clock offset as measured by the last
        script heartbeat. That offset is Redis's time at execution minus the local send
        time, so it overestimates by the delay: the expiry can only come out later than
        the script's, never earlier than the fence assumes. False when this cannot be
        done (no fresh offset, the lease may have lapsed, or the server is no longer in
        its pool): the script is sent instead."""
        offset, fresh = self._redis_offset_ms, self.client.fast.disconnects
        if offset is None or fresh != self._offset_disconnects or self.fenced():
            return False
        shard, sent = self.shard, time.monotonic()
        expires = int(sent * 1000) + offset + self.heartbeat_ttl_ms
        try:
            name, key, args = server_calls.lease_extension(shard, self.id, expires)
            extended = await self.client.fast.execute(name, key, *args, key=key)
        except Exception:
            self._said = None  # the next heartbeat says everything
            raise
        if not extended:
            return False  # reaped, or left: the script registers it again
        self._beats += 1
        self._acked_at = max(self._acked_at, sent)
        return True

    async def _heartbeat_script(self, said: tuple[int, str, int], say: bool) -> None:
        shard = self.shard
        description = (*said, self._info()) if say else None
        batch = scripts.Batch()
        ttl_ms, running = self.heartbeat_ttl_ms, sorted(self._entered)
        server_calls.queue_heartbeat(batch, shard, self.id, ttl_ms, description, running)
        disconnects, sent = self.client.fast.disconnects, time.monotonic()
        try:
            now_ms, gone = (await batch.run(self.client))[0]
        except Exception:
            self._said = None
            raise
        self._redis_offset_ms = int(now_ms) - int(sent * 1000)
        self._offset_disconnects = disconnects
        self._said, self._beats = said, self._beats + 1
        self._acked_at = max(self._acked_at, sent)
        for raw in gone:
            self._stop(raw.decode(), "its reservation is gone: the job was placed elsewhere")

    def _info(self) -> bytes:
        return encode(
            ServerInfo(
                id=self.id,
                agent_name=self.agent_name,
                job_type=int(self.job_type),
                version=self.version,
                labels=self.labels,
                capacity=self.capacity,
                host=socket.gethostname(),
                pid=os.getpid(),
            )
        )

    async def _heartbeat_loop(self) -> None:
        """Every interval; while heartbeats fail, every ``_HEARTBEAT_RETRY_S``, so the first
        one after Redis comes back is sent at once."""
        failing = False
        while not self._leaving.is_set():
            pause = _HEARTBEAT_RETRY_S if failing else self.heartbeat_interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leaving.wait(), pause)
                return
            try:
                await asyncio.wait_for(self.heartbeat(), self.heartbeat_ttl_ms / 1000)
            except Exception as exc:
                if not failing:
                    log.warning("heartbeat failed (%s); retrying", describe(exc))
                failing = True
                self.counts.heartbeat_failures += 1
            else:
                if failing:
                    log.info("heartbeat acknowledged again")
                failing = False

    # --- fencing --------------------------------------------------------------------------

    def fence_deadline(self) -> float:
        """Monotonic time after which this server may no longer run jobs: its last
        acknowledged heartbeat's send time plus the TTL, less the margin. Redis set that
        heartbeat's expiry no earlier than the send time plus the TTL, and schedulers wait
        for the expiry plus their own margin before re-placing, so the fence comes first."""
        return self._acked_at + (self.heartbeat_ttl_ms - self.fence_margin_ms) / 1000

    def fenced(self) -> bool:
        return time.monotonic() >= self.fence_deadline()

    async def _fence_loop(self) -> None:
        while not self._leaving.is_set():
            pause = max(self.fence_deadline() - time.monotonic(), _HEARTBEAT_RETRY_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leaving.wait(), pause)
                return
            if self.fenced() and self._entered:
                for job_id in list(self._entered):
                    self._stop(job_id, self._fence_reason())

    def _fence_reason(self) -> str:
        silent_s = time.monotonic() - self._acked_at
        return f"agent server fenced itself: no heartbeat acknowledged for {silent_s:.1f} s"

    def _stop(self, job_id: str, why: str) -> None:
        """Stop a job because this server may not run it (fenced, or re-placed); its final
        report says so, and the scheduler re-places it if it is still current."""
        task = self.running.get(job_id)
        if task is None or job_id not in self._entered or job_id in self._stopped:
            return  # not in its entrypoint: it has not started, or is reporting its end
        log.warning("job %s stopped: %s", job_id, why)
        self._stopped[job_id] = why
        task.cancel()

    # --- inbox ----------------------------------------------------------------------------

    async def _inbox_loop(self) -> None:
        inbox, last_id = self.shard.inbox(self.id), b"0-0"
        reads = self.client.fast.dedicated(inbox)  # the blocking read waits on its own socket
        try:
            while not self._closing.is_set():
                try:
                    reply = await reads.execute(
                        "XREAD", "COUNT", 256, "BLOCK", _INBOX_BLOCK_MS, "STREAMS", inbox, last_id,
                        extra_s=_INBOX_BLOCK_MS / 1000,
                    )  # fmt: skip
                except Exception as exc:  # policy: read again from the same id
                    log.warning("reading the inbox failed (%s); retrying", describe(exc))
                    await asyncio.sleep(0.2)
                    continue
                for entry_id, fields in stream_entries(reply):
                    last_id = entry_id
                    self._take(entry_id, fields)
        finally:
            reads.close()

    def _take(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        """A message that cannot be read is skipped (its job, if any, times out and is
        re-placed by the scheduler); the inbox goes on."""
        try:
            message = inbox_decoder.decode(fields[b"m"])
        except Exception as exc:
            log.error("inbox entry %s skipped: undecodable (%s)", entry_id, describe(exc))
            return
        self._dispatch(message)

    def _dispatch(self, message: InboxMessage) -> None:
        if isinstance(message, Assignment):
            job_id = message.job.job_id
            task = asyncio.create_task(self._assigned(message.job))
            self.running[job_id] = task
            # a callback, not a ``finally``: a task cancelled before it first ran runs no code
            task.add_done_callback(lambda _: self.running.pop(job_id, None))
        elif isinstance(message, Termination):
            self._terminate(message)
        elif isinstance(message, Drain):
            # Placement already skips this server. It stays up, drained (readiness says
            # so), until it is stopped: no job is cut short, none comes in.
            log.info("drained by an operator; %d job(s) run on", len(self.running))
            self.draining = True

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
        if self.fenced():
            return False, "no heartbeat acknowledged lately"
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
        batch.script(scripts.confirm, *calls.confirm(self.shard, self.id, spec.job_id))
        server_calls.queue_report(batch, spec, self.id, JobStatus.RUNNING)
        try:
            # Policy: retried until acknowledged (a confirm is idempotent, a second RUNNING
            # report changes nothing); a revoke in the meantime makes it answer 0.
            results = await until_acknowledged(
                f"starting job {spec.job_id}", lambda: batch.run(self.client)
            )
            confirmed = results[0]
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
        self._entered.add(spec.job_id)
        self.counts.started += 1
        if self.fenced():  # confirmed only after the fence deadline: never start it
            self._stopped[spec.job_id] = self._fence_reason()
        try:
            if spec.job_id not in self._stopped:
                await self._entrypoint(ctx)
        except asyncio.CancelledError:
            pass  # terminated: LiveKit reports a terminated job as SUCCESS
        except Exception as exc:
            log.exception("job %s failed", spec.job_id)
            status, error = JobStatus.FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            self._entered.discard(spec.job_id)
        await ctx.run_shutdown_callbacks()
        stopped = self._stopped.pop(spec.job_id, None)
        if stopped is not None:
            status, error = JobStatus.FAILED, stopped
        self.counts.job_ended(status)
        await self._finish(spec, status, error, fenced=stopped is not None)

    async def _finish(
        self, spec: JobSpec, status: JobStatus, error: str, *, fenced: bool = False
    ) -> None:
        """Policy: the final report and the release are retried until Redis acknowledges
        them, and the release is sent only once the report is acknowledged: sent together,
        a report that failed alone (an error reply) would leave the slot freed with no
        report, and the scheduler would re-run a job that ended."""
        client = self.client
        report = scripts.Batch()
        server_calls.queue_report(report, spec, self.id, status, error, fenced=fenced)
        release = scripts.Batch()
        release.script(scripts.release, *calls.release(self.shard, self.id, spec.job_id))
        events = keys.partition_keys(spec.partition).events

        async def report_durably() -> None:
            await report.run(client)
            await client.replication.settle(client.fast, events)

        what = f"final report of job {spec.job_id}"
        self._finishing.add(spec.job_id)
        try:
            await until_acknowledged(what, report_durably)
            await until_acknowledged(what, lambda: release.run(client))
        finally:
            self._finishing.discard(spec.job_id)

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
        what = f"rejection of job {spec.job_id}"
        await until_acknowledged(
            what, lambda: self.client.fast.execute("XADD", events, "*", "e", encode(event))
        )
        release = calls.release(self.shard, self.id, spec.job_id)
        await until_acknowledged(what, lambda: scripts.release(self.client, *release))

    def run(self) -> None:
        """Process entry: ``python my_agent.py start`` (SIGTERM drains)."""
        run_server(self)
