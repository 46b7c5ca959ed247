"""One LiveKit worker's ``/agent`` socket: the protocol of the wire contract, §7.

    worker                                   this node
    register            ───────────────▶     (within 10 s; before it only ping is taken)
                        ◀───────────────     register {worker_id, server_info}   first, binary
    migrate_job (after a reconnect, with jobs still running)
    update_worker       ───────────────▶     the pool sees status and load
                        ◀───────────────     availability {job}     a job offered
    availability        ───────────────▶     accept / reject / reject + terminate
                        ◀───────────────     assignment {job, token, url}
    update_job RUNNING, SUCCESS | FAILED ──▶ reported to the job's partition
                        ◀───────────────     termination {job_id}

The job side (offers, reservations, reports) is ``RemoteServer``'s; this class speaks the
socket and keeps what the worker said (its load and status, each job's progress).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from livekit.protocol import agent, models

from dispatcher import ids
from dispatcher.gateway.remote import RemoteServer, WorkerJob
from dispatcher.gateway.tokens import assignment_token
from dispatcher.gateway.websocket import ConnectionClosed, WebSocket
from dispatcher.store.client import Client
from dispatcher.wire import JobType

log = logging.getLogger(__name__)

REGISTER_TIMEOUT_S = 10.0  # as the reference
FIRST_REPORT_TIMEOUT_S = 5.0  # register -> the worker's first status or migrate_job
PROTOCOL_VERSION = 16
_ENDED = (agent.JS_SUCCESS, agent.JS_FAILED, agent.JS_CANCELLED)


class ProtocolError(Exception):
    """The worker broke the protocol; the socket is closed with this text."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    node_id: str
    capacity: int
    heartbeat_ttl_ms: int
    media_url: str


# (agent name, job type, migrated job ids) -> the server id holding those jobs, if any
OwnerLookup = Callable[[str, JobType, list[str]], Awaitable[str | None]]


class WorkerSession:
    def __init__(
        self,
        ws: WebSocket,
        api_key: str,
        api_secret: str,
        config: SessionConfig,
        owner_of: OwnerLookup,
        client: Client,
    ) -> None:
        self.ws = ws
        self._client = client
        self._key, self._secret = api_key, api_secret
        self._config = config
        self._owner_of = owner_of
        self.load, self.full, self.draining = 0.0, False, False
        self.reports_jobs = False
        self.server: RemoteServer | None = None
        self._register = agent.RegisterWorkerRequest()
        self._asked: dict[str, asyncio.Future[agent.AvailabilityResponse]] = {}
        self._jobs: dict[str, WorkerJob] = {}

    # --- the socket's life ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._serve()
        except (ConnectionClosed, TimeoutError):
            pass
        except ProtocolError as exc:
            log.warning("worker socket closed: %s", exc)
            self.ws.close(1002, str(exc)[:120])
        except Exception:
            log.exception("worker session failed")
            self.ws.close(1011, "internal error")
        finally:
            await self._end()

    async def _serve(self) -> None:
        self._register = await asyncio.wait_for(self._registration(), REGISTER_TIMEOUT_S)
        try:
            job_type = JobType(self._register.type)  # ours are LiveKit's numbers
        except ValueError:
            raise ProtocolError(f"unknown job type {self._register.type}") from None
        worker_id = ids.worker_id()
        self._send(agent.ServerMessage(register=self._register_reply(worker_id)))
        first = await self._first_report()
        migrated = list(first.migrate_job.job_ids) if first is not None else []
        owner = await self._owner_of(self._register.agent_name, job_type, migrated)
        if owner is not None:
            log.info(
                "worker %s reconnected with %d job(s): adopts %s", worker_id, len(migrated), owner
            )
        for job_id in migrated:
            self._jobs.setdefault(job_id, WorkerJob())
        self.server = self._remote_server(owner or worker_id, job_type, migrated)
        await self.server.start(self._client)
        if first is not None and first.WhichOneof("message") != "migrate_job":
            self._handle(first)
        while True:
            self._handle(await self._message())

    def _remote_server(
        self, server_id: str, job_type: JobType, migrated: list[str]
    ) -> RemoteServer:
        config = self._config
        try:
            return RemoteServer(
                self,
                server_id=server_id,
                agent_name=self._register.agent_name,
                job_type=job_type,
                version=self._register.version,
                capacity=config.capacity,
                heartbeat_ttl_ms=config.heartbeat_ttl_ms,
                migrated=migrated,
            )
        except ValueError as exc:  # e.g. a version too long to match targets on
            raise ProtocolError(f"registration refused: {exc}") from None

    async def _end(self) -> None:
        """Jobs still running stay the worker's (detached, for a migrate to adopt); a
        server with none leaves its pool."""
        for future in self._asked.values():
            future.cancel()
        server = self.server
        if server is None:
            return
        if server.holds_jobs():
            await server.detach()
        else:
            await server.aclose()

    # --- reading --------------------------------------------------------------------------

    async def _message(self) -> agent.WorkerMessage:
        """The next message; pings are answered here. Text frames (protojson) are not
        spoken by LiveKit's workers: refused by name."""
        while True:
            data = await self.ws.receive()
            if isinstance(data, str):
                raise ProtocolError("text frames are not supported: send binary protobuf")
            message = agent.WorkerMessage()
            try:
                message.ParseFromString(data)
            except DecodeError as exc:
                raise ProtocolError(f"undecodable WorkerMessage: {exc}") from exc
            if message.WhichOneof("message") == "ping":
                self._pong(message.ping)
                continue
            return message

    async def _registration(self) -> agent.RegisterWorkerRequest:
        message = await self._message()
        which = message.WhichOneof("message")
        if which != "register":
            raise ProtocolError(f"expected register first, got {which or 'an empty message'}")
        return message.register

    async def _first_report(self) -> agent.WorkerMessage | None:
        try:
            return await asyncio.wait_for(self._message(), FIRST_REPORT_TIMEOUT_S)
        except TimeoutError:
            return None

    def _handle(self, message: agent.WorkerMessage) -> None:
        which = message.WhichOneof("message")
        if which == "update_worker":
            self._update_worker(message.update_worker)
        elif which == "availability":
            future = self._asked.pop(message.availability.job_id, None)
            if future is not None and not future.done():
                future.set_result(message.availability)
        elif which == "update_job":
            self._update_job(message.update_job)
        elif which == "register":
            raise ProtocolError("register sent twice")
        elif which == "migrate_job":
            log.warning("migrate_job after the first status report ignored")
        elif which == "simulate_job":
            log.info("simulate_job is not supported; ignored")

    def _update_worker(self, update: agent.UpdateWorkerStatus) -> None:
        if update.HasField("status"):
            self.full = update.status == agent.WS_FULL
        self.load = update.load
        self.draining = self.draining or update.draining

    def _update_job(self, update: agent.UpdateJobStatus) -> None:
        self.reports_jobs = True
        state = self._jobs.get(update.job_id)
        if state is None:
            log.debug("update for unknown job %s ignored", update.job_id)
            return
        if update.status == agent.JS_RUNNING:
            state.running.set()
        elif update.status in _ENDED and not state.ended.done():
            state.ended.set_result((update.status, update.error))

    # --- writing (RemoteServer's WorkerLink) ----------------------------------------------

    async def ask(self, job: agent.Job) -> agent.AvailabilityResponse | None:
        future: asyncio.Future[agent.AvailabilityResponse]
        future = asyncio.get_running_loop().create_future()
        self._asked[job.id] = future
        try:
            self._send(agent.ServerMessage(availability=agent.AvailabilityRequest(job=job)))
            return await future
        except ConnectionClosed:
            return None
        finally:
            self._asked.pop(job.id, None)

    def assign(self, job: agent.Job, answer: agent.AvailabilityResponse | None) -> None:
        answer = answer or agent.AvailabilityResponse(job_id=job.id, available=True)
        identity = answer.participant_identity or f"agent-{job.id}"
        job.state.participant_identity = identity
        token = assignment_token(self._key, self._secret, job, answer, identity, self._register)
        assignment = agent.JobAssignment(job=job, token=token)
        if self._config.media_url:
            assignment.url = self._config.media_url
        self._send(agent.ServerMessage(assignment=assignment))

    def terminate(self, job_id: str) -> None:
        try:
            self._send(agent.ServerMessage(termination=agent.JobTermination(job_id=job_id)))
        except ConnectionClosed:
            pass

    def job(self, job_id: str) -> WorkerJob:
        return self._jobs.setdefault(job_id, WorkerJob())

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def _send(self, message: agent.ServerMessage) -> None:
        self.ws.send(message.SerializeToString())

    def _pong(self, ping: agent.WorkerPing) -> None:
        now_ms = int(time.time() * 1000)
        pong = agent.WorkerPong(last_timestamp=ping.timestamp, timestamp=now_ms)
        self._send(agent.ServerMessage(pong=pong))

    def _register_reply(self, worker_id: str) -> agent.RegisterWorkerResponse:
        info = models.ServerInfo(
            version=_version(),
            protocol=PROTOCOL_VERSION,
            node_id=self._config.node_id,
            agent_protocol=1,
        )
        return agent.RegisterWorkerResponse(worker_id=worker_id, server_info=info)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agent-dispatcher")
    except PackageNotFoundError:
        return "dev"
