"""What an entrypoint and a request handler see of a job, shaped like livekit-agents."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property

from livekit.protocol import agent

from dispatcher.convert import job_from_spec
from dispatcher.wire import JobSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RoomInfo:
    name: str
    sid: str


def job_message(spec: JobSpec, server_id: str) -> agent.Job:
    """The LiveKit ``Job`` message an agent reads as ``ctx.job``."""
    job = job_from_spec(spec)
    job.state.worker_id = server_id
    return job


@dataclass
class JobContext:
    """Handed to the entrypoint: ``ctx.job`` (LiveKit ``Job``), ``ctx.room.name``.

    ``job`` and ``room`` are built on first use: many entrypoints never read the protobuf
    ``Job``, and building it for every job was a measurable part of an agent's CPU."""

    spec: JobSpec
    worker_id: str
    _shutdown_callbacks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @cached_property
    def job(self) -> agent.Job:
        return job_message(self.spec, self.worker_id)

    @cached_property
    def room(self) -> RoomInfo:
        return RoomInfo(self.spec.room, self.spec.room_sid)

    @property
    def dispatch_received_ns(self) -> int:
        """When the API node received the dispatch (unix ns), for dispatch-time measurements."""
        return self.spec.received_ns

    def add_shutdown_callback(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._shutdown_callbacks.append(callback)

    async def run_shutdown_callbacks(self) -> None:
        for callback in self._shutdown_callbacks:
            try:
                await callback()
            except Exception:
                log.exception("shutdown callback of job %s failed", self.spec.job_id)


class JobRequest:
    """An offered job; the request handler calls ``accept()`` or ``reject()``."""

    def __init__(self, context: JobContext) -> None:
        self._context = context
        self.answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.terminate = False

    @property
    def job(self) -> agent.Job:
        """The same ``Job`` the entrypoint will see as ``ctx.job``."""
        return self._context.job

    @property
    def id(self) -> str:
        return self._context.spec.job_id

    @property
    def agent_name(self) -> str:
        return self._context.spec.agent_name

    async def accept(self) -> None:
        if not self.answer.done():
            self.answer.set_result(True)

    async def reject(self, terminate: bool = True) -> None:
        """``terminate=True`` (the default, as livekit-agents) offers it to no one else."""
        self.terminate = terminate
        if not self.answer.done():
            self.answer.set_result(False)
