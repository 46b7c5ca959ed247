"""A LiveKit worker connected over ``/agent``, as an agent server of its pool.

The API node holding the worker's socket runs one ``RemoteServer`` for it: the SDK's
``AgentServer`` (heartbeat, fence, inbox, reservations, reports) whose request handler and
entrypoint are the worker's. An offered job becomes an ``availability`` round trip; a
confirmed one an ``assignment``; the worker's ``update_job`` reports end the entrypoint; a
termination (or a fence, or a reservation taken back) becomes a ``termination`` frame. So
the scheduler places on it, and every failure rule applies, exactly as for SDK servers.

When the socket closes with jobs running, the server *detaches*: it stops heartbeating and
reading its inbox but reports nothing, leaving its jobs and reservations as they are. The
worker reconnects (to this node or another) and sends ``migrate_job``; the new session
*adopts* this server id and its jobs without starting any again. If the worker does not
come back within the heartbeat TTL, the schedulers find the server lost and re-place its
jobs as for any lost server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Protocol

from livekit.protocol import agent

from dispatcher.wire import Assignment, InboxMessage, JobSpec, JobStatus, JobType, ServerStatus
from workers.context import JobContext, JobRequest
from workers.server import AgentServer

log = logging.getLogger(__name__)

AVAILABILITY_TIMEOUT_S = 3.5  # below the scheduler's 5 s assignment timeout, with room to confirm
START_TIMEOUT_S = 10.0  # assignment -> the worker's JS_RUNNING (a job process starting)
TERMINATE_GRACE_S = 20.0  # the worker gives a terminated job 15 s to shut down


class JobFailed(Exception):
    """The worker reported the job failed, or never started it."""


class WorkerJob:
    """What the worker has said of one job."""

    def __init__(self) -> None:
        self.running = asyncio.Event()
        self.ended: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()


class WorkerLink(Protocol):
    """The session's side of a remote server: the worker's socket and what it said."""

    load: float
    full: bool
    draining: bool
    reports_jobs: bool  # it has sent update_job (LiveKit's Node workers never do)

    async def ask(self, job: agent.Job) -> agent.AvailabilityResponse | None: ...
    def assign(self, job: agent.Job, answer: agent.AvailabilityResponse | None) -> None: ...
    def terminate(self, job_id: str) -> None: ...
    def job(self, job_id: str) -> WorkerJob: ...
    def forget(self, job_id: str) -> None: ...


class RemoteServer(AgentServer):
    def __init__(
        self,
        link: WorkerLink,
        *,
        server_id: str,
        agent_name: str,
        job_type: JobType,
        version: str,
        capacity: int,
        heartbeat_ttl_ms: int,
        migrated: Iterable[str] = (),
    ) -> None:
        super().__init__(
            capacity=capacity,
            version=version,
            labels={},  # LiveKit workers have none; the node's own settings are not theirs
            heartbeat_ttl_ms=heartbeat_ttl_ms,
            load_fnc=lambda _: 1.0 if link.full else link.load,  # full: passed over
        )
        self.id = server_id
        self._link = link
        self._migrated = set(migrated)  # running on the worker already: never offered again
        self._answers: dict[str, agent.AvailabilityResponse] = {}
        self.detached = False
        register = self.rtc_session(
            agent_name=agent_name, on_request=self._availability, job_type=job_type
        )
        register(self._remote_job)

    def status(self) -> ServerStatus:
        if self.draining or self._link.draining:
            return ServerStatus.DRAINING
        if self._link.full:
            return ServerStatus.FULL
        return super().status()

    # --- the worker's side of a job -------------------------------------------------------

    async def _availability(self, request: JobRequest) -> None:
        """No answer in time leaves the request unanswered: rejected, offered elsewhere."""
        with contextlib.suppress(TimeoutError):
            answer = await asyncio.wait_for(self._link.ask(request.job), AVAILABILITY_TIMEOUT_S)
            if answer is None:
                return
            if answer.available:
                self._answers[request.id] = answer
                await request.accept()
            else:
                await request.reject(terminate=answer.terminate)

    async def _confirm_and_report(self, spec: JobSpec) -> bool:
        confirmed = await super()._confirm_and_report(spec)
        if not confirmed:  # taken back before it could start: the worker's answer is moot
            self._answers.pop(spec.job_id, None)
        return confirmed

    async def _remote_job(self, ctx: JobContext) -> None:
        job_id = ctx.spec.job_id
        state = self._link.job(job_id)
        try:
            if job_id not in self._migrated:
                self._link.assign(ctx.job, self._answers.pop(job_id, None))
                if self._link.reports_jobs:
                    await self._started(state, job_id)
            status, error = await state.ended  # a worker that never reports: until terminated
        except asyncio.CancelledError:
            if not self.detached:
                await self._terminate_on_worker(job_id, state)
            raise
        finally:
            self._migrated.discard(job_id)
            self._link.forget(job_id)
        if status == agent.JobStatus.JS_FAILED:
            raise JobFailed(error or "the agent's job process failed")

    async def _started(self, state: WorkerJob, job_id: str) -> None:
        try:
            await asyncio.wait_for(state.running.wait(), START_TIMEOUT_S)
        except TimeoutError:
            if state.ended.done():
                return  # it ran and ended before its RUNNING report was seen
            self._link.terminate(job_id)
            raise JobFailed(
                f"the worker did not start the job within {START_TIMEOUT_S:g} s"
            ) from None

    async def _terminate_on_worker(self, job_id: str, state: WorkerJob) -> None:
        """Ask the worker to stop the job, and wait (for a while) for it to say it ended."""
        self._link.terminate(job_id)
        if not self._link.reports_jobs:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(state.ended), TERMINATE_GRACE_S)

    # --- adoption and detachment ----------------------------------------------------------

    def _dispatch(self, message: InboxMessage) -> None:
        """A job the worker brought with it is picked up where it is (its assignment is
        still in the inbox): no offer, no confirmation, no second start."""
        if isinstance(message, Assignment) and message.job.job_id in self._migrated:
            job_id = message.job.job_id
            if job_id not in self.running:
                task = asyncio.create_task(self._resume(message.job))
                self.running[job_id] = task
                task.add_done_callback(lambda _: self.running.pop(job_id, None))
            return
        super()._dispatch(message)

    async def _resume(self, spec: JobSpec) -> None:
        log.info("job %s migrated to this node with its worker", spec.job_id)
        try:
            await self._run(JobContext(spec=spec, worker_id=self.id))
        except Exception:
            log.exception("migrated job %s could not be followed", spec.job_id)

    async def _finish(
        self, spec: JobSpec, status: JobStatus, error: str, *, fenced: bool = False
    ) -> None:
        if self.detached:
            return  # the job is the worker's still: a migrate takes it up, or the lease lapses
        await super()._finish(spec, status, error, fenced=fenced)

    def holds_jobs(self) -> bool:
        """Jobs the worker has started (or was told to start) and not ended."""
        return bool(self._entered)

    async def detach(self) -> None:
        """The socket is gone: stop speaking for the worker without ending its jobs."""
        self.detached = True
        self._closing.set()
        self._leaving.set()
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._end_tasks(self._tasks)
        self._client = None
