"""Every stream event and stored record, as msgspec Structs encoded with msgpack.

Events are tagged unions so one decoder reads a whole stream. New fields get defaults and go at
the end; unknown fields are ignored, so older and newer nodes can share a stream.

Every Struct here is immutable data and declared ``gc=False``: none can be part of a
reference cycle, and a scheduler holds one per live room and job, which the cycle collector
would otherwise walk on every full collection (``dispatcher/process.py``).
"""

from __future__ import annotations

import enum
from typing import Any, Generic, Literal, TypeVar

import msgspec


class JobStatus(enum.IntEnum):
    """LiveKit's ``JobStatus`` numbers."""

    PENDING = 0
    RUNNING = 1
    SUCCESS = 2
    FAILED = 3
    CANCELLED = 4


class JobReason(enum.IntEnum):
    """LiveKit's ``JobStateReason`` numbers."""

    UNSPECIFIED = 0
    NO_CAPACITY = 1
    ROOM_CLOSED = 2
    DISPATCH_DELETED = 3
    RETRYING = 4


class RestartPolicy(enum.IntEnum):
    ON_FAILURE = 0
    NEVER = 1


class JobType(enum.IntEnum):
    """LiveKit's ``JobType``: one job per room, per publishing participant, or per participant."""

    ROOM = 0
    PUBLISHER = 1
    PARTICIPANT = 2


class ServerStatus(enum.IntEnum):
    AVAILABLE = 0
    FULL = 1
    DRAINING = 2


# --- records written by API nodes -------------------------------------------------------------


class DispatchTarget(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """Where a dispatch's jobs may run (ours, beyond LiveKit): only servers matching every
    part given. Empty parts match any server."""

    server_id: str = ""
    version: str = ""
    labels: dict[str, str] = {}


class RoomRecord(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    name: str
    sid: str
    created_at: int  # unix ns
    empty_timeout: int = 0  # s: closes this long after creation if nobody joined
    departure_timeout: int = 0  # s: closes this long after the last participant left
    max_participants: int = 0  # 0 = no limit
    metadata: str = ""


class ParticipantRecord(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A participant present in a room (one per identity; a reconnect keeps the sid)."""

    sid: str
    identity: str
    name: str = ""
    kind: str = ""  # the token's ``kind``: "" / "standard", "agent", "sip", "egress", ...
    metadata: str = ""
    attributes: dict[str, str] = {}
    joined_at: int = 0  # unix ns


class DispatchRecord(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    id: str
    agent_name: str
    room: str
    metadata: str = ""
    restart_policy: RestartPolicy = RestartPolicy.ON_FAILURE
    deployment: str = ""
    attributes: dict[str, str] = {}
    created_at: int = 0  # unix ns
    deleted_at: int = 0  # unix ns, 0 = live
    target: DispatchTarget | None = None  # None: any server of the agent


# --- what a job is, as handed to an agent server -----------------------------------------------


class JobSpec(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    job_id: str
    dispatch_id: str
    attempt: int
    partition: int
    room: str
    room_sid: str
    agent_name: str
    metadata: str = ""
    room_metadata: str = ""  # the room's as the job was created (UpdateRoomMetadata: later jobs)
    job_type: int = 0
    deployment: str = ""
    attributes: dict[str, str] = {}
    received_ns: int = 0  # when the API node received the dispatch (unix ns)
    key: str = ""  # the job's own key when it is not the dispatch id (participant jobs)
    participant: ParticipantRecord | None = None  # whom a participant/publisher job is for
    target: DispatchTarget | None = None  # the dispatch's: only matching servers are reserved

    @property
    def job_key(self) -> str:
        """What the job is stored and looked up by: its dispatch for a room job, else the
        dispatch plus job type plus participant."""
        return self.key or self.dispatch_id

    @property
    def pool(self) -> str:
        """The agent-server pool serving this job."""
        return pool_name(self.agent_name, self.job_type)


_POOL_TYPE_SEPARATOR = "\x1f"  # cannot occur in an agent name (control characters refused)


def pool_name(agent_name: str, job_type: int) -> str:
    """Servers of one agent name and job type form a pool; room servers keep the bare name."""
    if job_type == JobType.ROOM:
        return agent_name
    return f"{agent_name}{_POOL_TYPE_SEPARATOR}{JobType(job_type).name.lower()}"


def pool_agent(pool: str) -> str:
    """The agent name whose servers form ``pool``."""
    return pool.partition(_POOL_TYPE_SEPARATOR)[0]


# --- partition stream events ------------------------------------------------------------------


class DispatchCreated(msgspec.Struct, tag="created", kw_only=True, frozen=True, gc=False):
    dispatch: DispatchRecord
    room_sid: str
    received_ns: int


class DispatchDeleted(msgspec.Struct, tag="deleted", kw_only=True, frozen=True, gc=False):
    room: str
    dispatch_id: str
    deleted_at: int


class JobReport(msgspec.Struct, tag="report", kw_only=True, frozen=True, gc=False):
    """An agent server's status for one job attempt."""

    dispatch_id: str
    job_id: str
    attempt: int
    server_id: str
    # The server's pool (see ``pool_name``); encoded under its first name, so servers and
    # schedulers of either side of an upgrade read each other.
    pool: str = msgspec.field(name="agent_name")
    status: JobStatus
    error: str = ""
    at: int = 0  # unix ns
    key: str = ""  # ``JobSpec.key``
    # The server stopped the job because it could not renew its heartbeat: the job did not
    # fail, its server did, so it is re-placed as for a lost server.
    fenced: bool = False

    @property
    def job_key(self) -> str:
        return self.key or self.dispatch_id


class JobRejected(msgspec.Struct, tag="rejected", kw_only=True, frozen=True, gc=False):
    """An agent server declined an assignment; ``terminate`` means offer it to no one else."""

    dispatch_id: str
    job_id: str
    attempt: int
    server_id: str
    terminate: bool = False
    reason: str = ""
    key: str = ""  # ``JobSpec.key``

    @property
    def job_key(self) -> str:
        return self.key or self.dispatch_id


class ParticipantPublished(msgspec.Struct, tag="published", kw_only=True, frozen=True, gc=False):
    """A participant's first published track (publisher jobs start here)."""

    room: str
    identity: str


class RoomDeleted(msgspec.Struct, tag="room_deleted", kw_only=True, frozen=True, gc=False):
    room: str
    sid: str
    at: int


class RoomMetadataUpdated(msgspec.Struct, tag="room_metadata", kw_only=True, frozen=True, gc=False):
    room: str
    metadata: str


class ParticipantJoined(msgspec.Struct, tag="joined", kw_only=True, frozen=True, gc=False):
    room: str
    participant: ParticipantRecord


class ParticipantLeft(msgspec.Struct, tag="left", kw_only=True, frozen=True, gc=False):
    room: str
    identity: str
    at: int
    kind: str = ""  # the participant's kind (agents and egress do not count as present)


Event = (
    DispatchCreated
    | DispatchDeleted
    | JobReport
    | JobRejected
    | RoomDeleted
    | RoomMetadataUpdated
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantPublished
)

# Events about one room, which its partition's lease holder applies to the room's life.
RoomEvent = (
    RoomDeleted
    | RoomMetadataUpdated
    | DispatchDeleted
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantPublished
)
ROOM_EVENTS = (
    RoomDeleted, RoomMetadataUpdated, DispatchDeleted, ParticipantJoined, ParticipantLeft,
    ParticipantPublished,
)  # fmt: skip


# --- agent-server inbox messages ---------------------------------------------------------------


class Assignment(msgspec.Struct, tag="assign", kw_only=True, frozen=True, gc=False):
    job: JobSpec


class Termination(msgspec.Struct, tag="terminate", kw_only=True, frozen=True, gc=False):
    job_id: str
    reason: str = ""


class Drain(msgspec.Struct, tag="drain", kw_only=True, frozen=True, gc=False):
    """An operator drained this server (``dispatcher.AgentServers/DrainServer``): placement
    already skips it; it takes no new job and lets its running ones finish."""

    reason: str = ""


InboxMessage = Assignment | Termination | Drain


# --- scheduler-owned job record ----------------------------------------------------------------

Phase = Literal["pending", "assigned", "running", "terminating", "ended"]


class JobAttempt(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """One attempt's LiveKit-visible state."""

    job_id: str
    status: JobStatus = JobStatus.PENDING
    server_id: str = ""
    error: str = ""
    reason: JobReason = JobReason.UNSPECIFIED
    started_at: int = 0
    ended_at: int = 0
    updated_at: int = 0


class JobRecord(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """The job of one dispatch: the current attempt plus the ended earlier ones."""

    spec: JobSpec
    phase: Phase
    current: JobAttempt
    restart_policy: RestartPolicy = RestartPolicy.ON_FAILURE
    past: tuple[JobAttempt, ...] = ()
    rejected_by: tuple[str, ...] = ()


class RoomLife(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """The lease holder's view of a room's lifetime: who is present and when it closes."""

    room: RoomRecord
    # Participants in the room, agents and egress excluded. A count suffices: API nodes
    # emit one join and one leave per participant session. Who they are is in the
    # participants hash, read only when a participant or publisher job needs it.
    present: int = 0
    dispatches: tuple[DispatchRecord, ...] = ()  # live: participant jobs come from these
    joined_ever: bool = False
    emptied_at: int = 0  # unix ns when the last participant left


class Hook(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A webhook event as queued in a partition's hooks stream; the deliverer renders it as
    LiveKit's ``WebhookEvent`` JSON when it sends it."""

    event: str  # room_started, participant_joined, job_ended, ...
    id: str  # ``EV_…``, the same on every delivery attempt
    created_at: int  # unix ns
    room: RoomRecord | None = None  # job events carry the room in ``job.spec``
    participant: ParticipantRecord | None = None
    job: JobRecord | None = None


class ServerInfo(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """An agent server's self-description, stored at registration."""

    id: str
    agent_name: str
    job_type: int = 0
    version: str = ""
    labels: dict[str, str] = {}
    capacity: int = 1
    host: str = ""
    pid: int = 0


# --- a scheduler's own figures, for ``dispatcher status`` and the dashboard ---------------------


class Failure(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A job attempt that failed (ended FAILED, or failed and was tried again)."""

    job_id: str
    dispatch_id: str
    room: str
    agent_name: str
    server_id: str = ""
    error: str = ""
    reason: str = ""  # JobReason's name, lower case ("retrying": another attempt follows)
    at: int = 0  # unix ns


class SchedulerFigures(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """What one scheduler process counted since it started, and holds now. Counters are
    cumulative: readers diff successive records for rates."""

    node_id: str
    started_at: int  # unix ns, when the process began counting
    at: int  # unix ns, when this record was written
    heartbeat_ms: int  # how often it is written
    partitions: list[int] = []
    # Dispatch time (the API node's receipt to the RUNNING report), in ms: counts[i] are
    # the samples <= bounds[i], the last one those above every bound.
    dispatch_bounds_ms: list[float] = []
    dispatch_counts: list[int] = []
    dispatch_sum_ms: float = 0.0
    jobs_created: int = 0
    jobs_started: int = 0
    jobs_ended: dict[str, int] = {}  # "<status>/<reason>" -> count
    attempts_retried: int = 0
    jobs_by_phase: dict[str, int] = {}
    pending_by_reason: dict[str, int] = {}
    failures: list[Failure] = []  # the latest, oldest first


_event_encoder = msgspec.msgpack.Encoder()
encode = _event_encoder.encode
T = TypeVar("T")


class Decoder(Generic[T]):
    """A msgpack decoder whose every failure is a ``msgspec.DecodeError``: msgspec recurses
    once per level (unknown fields included) and fails near 1,000 levels with a
    ``RecursionError``, which callers that dead-letter or skip undecodable input would not
    expect."""

    __slots__ = ("_decode",)

    def __init__(self, type_: Any) -> None:
        self._decode = msgspec.msgpack.Decoder(type_).decode

    def decode(self, data: bytes | bytearray | memoryview) -> T:
        try:
            decoded: T = self._decode(data)
        except RecursionError:
            raise msgspec.DecodeError("input nested too deep") from None
        return decoded


event_decoder: Decoder[Event] = Decoder(Event)
inbox_decoder: Decoder[InboxMessage] = Decoder(InboxMessage)
dispatch_decoder: Decoder[DispatchRecord] = Decoder(DispatchRecord)
room_decoder: Decoder[RoomRecord] = Decoder(RoomRecord)
participant_decoder: Decoder[ParticipantRecord] = Decoder(ParticipantRecord)
life_decoder: Decoder[RoomLife] = Decoder(RoomLife)
job_decoder: Decoder[JobRecord] = Decoder(JobRecord)
server_info_decoder: Decoder[ServerInfo] = Decoder(ServerInfo)
figures_decoder: Decoder[SchedulerFigures] = Decoder(SchedulerFigures)
hook_decoder: Decoder[Hook] = Decoder(Hook)
