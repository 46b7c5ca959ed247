"""``livekit.AgentDispatchService``: create, list and delete dispatches.

Each call is one script on the room's partition: create writes the dispatch record (and the
room when absent) and appends the event in the same call, so a ListDispatch right after
CreateDispatch shows the dispatch. CreateDispatch may carry a target of ours
(``api/targeting.py``): its jobs then run only on matching agent servers. The API node
never reads streams or writes job state.
"""

from __future__ import annotations

import time

import msgspec
from livekit.protocol import agent_dispatch as pb

from dispatcher.api.access import Authorizer
from dispatcher.api.http import Request
from dispatcher.api.targeting import read_target
from dispatcher.api.twirp import TwirpService
from dispatcher.api.validation import (
    Limits,
    check_dispatch_request,
    require,
    resource_exhausted,
)
from dispatcher.convert import dispatch_message
from dispatcher.errors import Aborted, NotFound, ResourceExhausted
from dispatcher.partitions import partition_of
from dispatcher.room_records import RoomSpec, dispatch_of, new_room
from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import Client
from dispatcher.wire import (
    DispatchCreated,
    DispatchDeleted,
    DispatchRecord,
    JobRecord,
    dispatch_decoder,
    job_decoder,
)

SERVICE = "livekit.AgentDispatchService"
_IDEMPOTENCY_HEADERS = ("Idempotency-Key", "X-Livekit-Request-Id")
_DELETE_ATTEMPTS = 5


class DispatchService:
    def __init__(
        self,
        client: Client,
        authorizer: Authorizer,
        partitions: int,
        limits: Limits,
        idempotency_ttl_s: int,
    ) -> None:
        self._client = client
        self._auth = authorizer
        self._partitions = partitions
        self._limits = limits
        self._idempotency_ttl_s = idempotency_ttl_s

    def twirp(self) -> TwirpService:
        service = TwirpService(SERVICE)
        service.add("CreateDispatch", pb.CreateAgentDispatchRequest, self.create)
        service.add("ListDispatch", pb.ListAgentDispatchRequest, self.list)
        service.add("DeleteDispatch", pb.DeleteAgentDispatchRequest, self.delete)
        return service

    def _keys(self, room: str) -> keys.PartitionKeys:
        return keys.partition_keys(partition_of(room, self._partitions))

    async def create(
        self, req: pb.CreateAgentDispatchRequest, request: Request
    ) -> pb.AgentDispatch:
        received = time.time_ns()
        self._auth.room_admin(request, req.room)
        check_dispatch_request(req, self._limits)
        target = read_target(req, request)
        # The room this call creates if there is none; an existing room keeps its own sid,
        # which the lease holder puts in the job.
        room = new_room(req.room, RoomSpec(), received)
        record = dispatch_of(room, req, received, target)
        event = DispatchCreated(dispatch=record, room_sid=room.sid, received_ns=received)
        k = self._keys(req.room)
        limits = self._limits
        call = calls.create_dispatch(
            k,
            record,
            event,
            room,
            request_id=_request_id(request),
            idempotency_ttl_s=self._idempotency_ttl_s,
            max_dispatches=limits.max_dispatches_per_room,
            max_bytes=limits.max_list_bytes,
        )
        created, stored = await scripts.create_dispatch(self._client, *call)
        if created < 0:
            raise _room_full(req.room, created, stored, limits)
        await self._client.replication.settle(self._client.fast, k.events)
        # An idempotent replay answers with the dispatch the first call created.
        return dispatch_message(record if created == 1 else dispatch_decoder.decode(stored))

    async def list(
        self, req: pb.ListAgentDispatchRequest, request: Request
    ) -> pb.ListAgentDispatchResponse:
        self._auth.room_admin(request, req.room)
        require(req.room, "room")
        k = self._keys(req.room)
        call = calls.list_dispatches(k, req.room, req.dispatch_id, self._limits.max_list_bytes)
        raw_dispatches, raw_jobs = await scripts.list_dispatches(self._client, *call)
        if raw_dispatches == -1:
            raise resource_exhausted(
                f"the records of room {req.room!r} total {raw_jobs} bytes, more than a listing "
                f"may return ({self._limits.max_list_bytes}); list one dispatch by dispatch_id"
            )
        jobs: dict[str, list[JobRecord]] = {}
        for raw in raw_jobs:
            job = job_decoder.decode(raw)
            jobs.setdefault(job.spec.dispatch_id, []).append(job)
        dispatches = sorted(
            (dispatch_decoder.decode(raw) for raw in raw_dispatches),
            key=lambda d: (d.created_at, d.id),
        )
        response = pb.ListAgentDispatchResponse()
        response.agent_dispatches.extend(
            dispatch_message(d, jobs.get(d.id, ())) for d in dispatches
        )
        return response

    async def delete(
        self, req: pb.DeleteAgentDispatchRequest, request: Request
    ) -> pb.AgentDispatch:
        self._auth.room_admin(request, req.room)
        require(req.room, "room")
        require(req.dispatch_id, "dispatch_id")
        k = self._keys(req.room)
        for _ in range(_DELETE_ATTEMPTS):
            raw: bytes | None = await self._client.hget(k.room(req.room), req.dispatch_id)  # type: ignore[assignment]
            if raw is None:
                raise NotFound("dispatch ID not found")
            current = dispatch_decoder.decode(raw)
            if current.deleted_at:
                return dispatch_message(current)
            if (deleted := await self._mark_deleted(k, raw, current)) is not None:
                return dispatch_message(deleted)
        raise Aborted("dispatch changed concurrently; retry the call")

    async def _mark_deleted(
        self, k: keys.PartitionKeys, raw: bytes, current: DispatchRecord
    ) -> DispatchRecord | None:
        now = time.time_ns()
        deleted = msgspec.structs.replace(current, deleted_at=now)
        event = DispatchDeleted(room=current.room, dispatch_id=current.id, deleted_at=now)
        result = await scripts.delete_dispatch(
            self._client, *calls.delete_dispatch(k, raw, deleted, event)
        )
        if result[0] == -1:
            raise NotFound("dispatch ID not found")
        await self._client.replication.settle(self._client.fast, k.events)
        return deleted if result[0] == 1 else None


def _room_full(room: str, outcome: int, value: int, limits: Limits) -> ResourceExhausted:
    if outcome == -1:
        return resource_exhausted(
            f"room {room!r} already has {value} dispatches, the most a room may have "
            f"({limits.max_dispatches_per_room}); delete the room to start over"
        )
    return resource_exhausted(
        f"room {room!r}'s dispatch records would total {value} bytes, more than a listing "
        f"may return ({limits.max_list_bytes})"
    )


def _request_id(request: Request) -> str:
    for header in _IDEMPOTENCY_HEADERS:
        if value := request.headers.get(header, "").strip():
            return value[:128]
    return ""
