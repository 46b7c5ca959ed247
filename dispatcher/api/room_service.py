"""``livekit.RoomService`` (rooms, and the participants present in them) and ``RoomStore``, the
one way API nodes create rooms and let participants in and out.

A room lives in its partition: its record in ``rooms``, its dispatches, its index and its
participants under keys of the same hash tag, so creating it with its dispatches, or letting
a participant in, is one script call. The partition's lease holder learns of every change
from the events those scripts append, and closes the room when its timeouts pass.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
from livekit.protocol import models
from livekit.protocol import room as room_pb

from dispatcher.api.access import Authorizer
from dispatcher.api.http import Request
from dispatcher.api.twirp import TwirpService
from dispatcher.api.validation import (
    Limits,
    check_metadata,
    check_room_spec,
    require,
    resource_exhausted,
)
from dispatcher.convert import participant_message
from dispatcher.errors import Aborted, NotFound
from dispatcher.partitions import partition_of
from dispatcher.room_records import RoomSpec, new_room, room_dispatches, room_message
from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import Client
from dispatcher.wire import (
    DispatchRecord,
    ParticipantLeft,
    ParticipantRecord,
    RoomDeleted,
    RoomMetadataUpdated,
    RoomRecord,
    dispatch_decoder,
    participant_decoder,
    room_decoder,
)

SERVICE = "livekit.RoomService"
_CAS_ATTEMPTS = 5


class Joined:
    """How ``RoomStore.open`` treated the participant."""

    NONE, NEW, PRESENT, ROOM_FULL = 0, 1, 2, -1


@dataclass(slots=True)
class Opened:
    created: bool
    room: RoomRecord
    dispatches: list[DispatchRecord] = field(default_factory=list)  # created by this call
    joined: int = Joined.NONE
    participant: ParticipantRecord | None = None


class RoomStore:
    """Room scripts on the right partition, with records built by ``dispatcher.room_records``."""

    def __init__(
        self, client: Client, partitions: int, retention_s: int, limits: Limits | None = None
    ) -> None:
        self.client = client
        self._partitions = partitions
        self._retention_s = retention_s
        self._limits = limits or Limits()

    def keys_of(self, room: str) -> keys.PartitionKeys:
        return keys.partition_keys(partition_of(room, self._partitions))

    async def open(
        self,
        name: str,
        spec: RoomSpec,
        *,
        ensure: bool = False,
        participant: ParticipantRecord | None = None,
        joined_event: bytes = b"",
    ) -> Opened:
        """Create the room with ``spec`` unless it exists, then let ``participant`` in.

        ``spec.agents`` become dispatches only when this call creates the room, or with
        ``ensure`` for each agent the existing room has no live dispatch of."""
        now = time.time_ns()
        room = new_room(name, spec, now)
        dispatches = room_dispatches(room, spec, now)
        if ensure and not spec.agents:
            ensure = False  # nothing to ensure: the automatic dispatch is for new rooms only
        k = self.keys_of(name)
        call = calls.open_room(
            k,
            room,
            dispatches,
            ensure=ensure,
            participant=participant,
            joined_event=joined_event,
            max_participants=spec.max_participants,
            max_dispatches=self._limits.max_dispatches_per_room,
        )
        reply = await scripts.open_room(self.client, *call)
        created, stored, made, joined, stored_participant = reply
        await self.client.replication.settle(self.client.fast, k.events)
        made_ids = {m.decode() for m in made}
        return Opened(
            created=bool(created),
            room=room_decoder.decode(stored),
            dispatches=[d for d in dispatches if d.id in made_ids],
            joined=int(joined),
            participant=participant_decoder.decode(stored_participant)
            if stored_participant
            else None,
        )

    async def list(self, names: list[str]) -> list[tuple[RoomRecord, int]]:
        """Rooms (all when ``names`` is empty) with their participant counts."""
        by_partition: dict[int, list[str]] = {}
        if names:
            for name in names:
                by_partition.setdefault(partition_of(name, self._partitions), []).append(name)
        else:
            by_partition = {p: [] for p in range(self._partitions)}
        await self._check_listing(by_partition)
        batch = scripts.Batch()
        for partition, wanted in by_partition.items():
            batch.script(
                scripts.list_rooms, *calls.list_rooms(keys.partition_keys(partition), wanted)
            )
        rooms: list[tuple[RoomRecord, int]] = []
        for result in await batch.run(self.client):
            if isinstance(result, Exception):
                raise result
            rooms += [
                (room_decoder.decode(result[i]), result[i + 1]) for i in range(0, len(result), 2)
            ]
        rooms.sort(key=lambda pair: (pair[0].created_at, pair[0].name))
        return rooms

    async def _check_listing(self, by_partition: Mapping[int, Sequence[str]]) -> None:
        """Refuse a listing over its limits before any record is copied."""
        most = self._limits.max_list_rooms
        batch = scripts.Batch()
        for partition, wanted in by_partition.items():
            k = keys.partition_keys(partition)
            batch.script(scripts.room_sizes, *calls.room_sizes(k, most, wanted))
        count = size = 0
        for partition_count, partition_size in await batch.run(self.client):
            count, size = count + partition_count, size + max(partition_size, 0)
            if count > most or partition_size < 0:
                raise resource_exhausted(
                    f"more than {most} rooms to list; name the rooms to list (names)"
                )
        if size > self._limits.max_list_bytes:
            raise resource_exhausted(
                f"the rooms' records total {size} bytes, more than a listing may return "
                f"({self._limits.max_list_bytes}); name fewer rooms (names)"
            )

    async def participants(self, name: str) -> Sequence[ParticipantRecord]:
        """Who is in the room, by join time (empty for a room that does not exist)."""
        flat = await self.client.fast.execute("HVALS", self.keys_of(name).participants(name))
        people = [participant_decoder.decode(raw) for raw in flat]
        return sorted(people, key=lambda p: (p.joined_at, p.identity))

    async def participant(self, name: str, identity: str) -> ParticipantRecord | None:
        raw = await self.client.fast.execute(
            "HGET", self.keys_of(name).participants(name), identity
        )
        return None if raw is None else participant_decoder.decode(raw)

    async def leave(self, name: str, identity: str, kind: str) -> bool:
        """The participant leaves (its participant and publisher jobs end); False when it
        was not in the room."""
        k = self.keys_of(name)
        event = ParticipantLeft(room=name, identity=identity, at=time.time_ns(), kind=kind)
        left = await scripts.leave_room(self.client, *calls.leave_room(k, event))
        return bool(left)

    async def update_metadata(self, name: str, metadata: str) -> RoomRecord | None:
        """The room with its new metadata (None: no such room); jobs created from here on
        see it in ``ctx.job.room.metadata``."""
        k = self.keys_of(name)
        for _ in range(_CAS_ATTEMPTS):
            raw = await self.client.fast.execute("HGET", k.rooms, name)
            if raw is None:
                return None
            room = msgspec.structs.replace(room_decoder.decode(raw), metadata=metadata)
            event = RoomMetadataUpdated(room=name, metadata=metadata)
            result = await scripts.update_room(self.client, *calls.update_room(k, raw, room, event))
            if result == 1:
                await self.client.replication.settle(self.client.fast, k.events)
                return room
            if result == 0:
                return None
        raise Aborted("room changed concurrently; retry the call")

    async def delete(self, name: str) -> bool:
        """Delete the room, marking its dispatches deleted; False when there is none."""
        k = self.keys_of(name)
        for _ in range(_CAS_ATTEMPTS):
            raw_room = await self.client.fast.execute("HGET", k.rooms, name)
            if raw_room is None:
                return False
            flat: list[bytes] = await self.client.fast.execute("HGETALL", k.room(name))
            now = time.time_ns()
            marks = [
                (dispatch_id, record, _deleted(record, now))
                for dispatch_id, record in zip(flat[::2], flat[1::2], strict=True)
            ]
            event = RoomDeleted(room=name, sid=room_decoder.decode(raw_room).sid, at=now)
            call = calls.delete_room(k, event, self._retention_s, marks)
            result = await scripts.delete_room(self.client, *call)
            if result != 0:
                await self.client.replication.settle(self.client.fast, k.events)
                return bool(result == 1)
        raise Aborted("room changed concurrently; retry the call")


def _deleted(raw: bytes, now: int) -> DispatchRecord:
    record = dispatch_decoder.decode(raw)
    return record if record.deleted_at else msgspec.structs.replace(record, deleted_at=now)


class RoomService:
    def __init__(self, rooms: RoomStore, authorizer: Authorizer, limits: Limits) -> None:
        self._rooms = rooms
        self._auth = authorizer
        self._limits = limits

    def twirp(self) -> TwirpService:
        service = TwirpService(SERVICE)
        service.add("CreateRoom", room_pb.CreateRoomRequest, self.create)
        service.add("ListRooms", room_pb.ListRoomsRequest, self.list)
        service.add("DeleteRoom", room_pb.DeleteRoomRequest, self.delete)
        service.add("ListParticipants", room_pb.ListParticipantsRequest, self.list_participants)
        service.add("GetParticipant", room_pb.RoomParticipantIdentity, self.get_participant)
        service.add("RemoveParticipant", room_pb.RoomParticipantIdentity, self.remove_participant)
        service.add("UpdateRoomMetadata", room_pb.UpdateRoomMetadataRequest, self.update_metadata)
        return service

    async def create(self, req: room_pb.CreateRoomRequest, request: Request) -> models.Room:
        self._auth.grant(request, "room_create")
        require(req.name, "name")
        spec = RoomSpec.of(req)
        check_room_spec(spec, self._limits)
        opened = await self._rooms.open(req.name, spec)
        return room_message(opened.room)

    async def list(
        self, req: room_pb.ListRoomsRequest, request: Request
    ) -> room_pb.ListRoomsResponse:
        self._auth.grant(request, "room_list")
        for name in req.names:
            require(name, "names[]")
        response = room_pb.ListRoomsResponse()
        rooms = await self._rooms.list(list(dict.fromkeys(req.names)))
        response.rooms.extend(room_message(room, count) for room, count in rooms)
        return response

    async def delete(
        self, req: room_pb.DeleteRoomRequest, request: Request
    ) -> room_pb.DeleteRoomResponse:
        # As the reference: DeleteRoom needs roomCreate, not roomAdmin.
        self._auth.grant(request, "room_create")
        require(req.room, "room")
        if not await self._rooms.delete(req.room):
            raise _no_room(req.room)
        return room_pb.DeleteRoomResponse()

    async def list_participants(
        self, req: room_pb.ListParticipantsRequest, request: Request
    ) -> room_pb.ListParticipantsResponse:
        self._auth.room_admin(request, req.room)
        require(req.room, "room")
        people = await self._rooms.participants(req.room)
        return room_pb.ListParticipantsResponse(participants=map(participant_message, people))

    async def get_participant(
        self, req: room_pb.RoomParticipantIdentity, request: Request
    ) -> models.ParticipantInfo:
        return participant_message(await self._present(req, request))

    async def remove_participant(
        self, req: room_pb.RoomParticipantIdentity, request: Request
    ) -> room_pb.RemoveParticipantResponse:
        """As if the participant left: its participant and publisher jobs end."""
        person = await self._present(req, request)
        if not await self._rooms.leave(req.room, req.identity, person.kind):
            raise not_in_room(req.identity, req.room)
        return room_pb.RemoveParticipantResponse()

    async def update_metadata(
        self, req: room_pb.UpdateRoomMetadataRequest, request: Request
    ) -> models.Room:
        self._auth.room_admin(request, req.room)
        require(req.room, "room")
        check_metadata(req.metadata, self._limits)
        room = await self._rooms.update_metadata(req.room, req.metadata)
        if room is None:
            raise _no_room(req.room)
        return room_message(room)

    async def _present(
        self, req: room_pb.RoomParticipantIdentity, request: Request
    ) -> ParticipantRecord:
        self._auth.room_admin(request, req.room)
        require(req.room, "room")
        require(req.identity, "identity")
        person = await self._rooms.participant(req.room, req.identity)
        if person is None:
            raise not_in_room(req.identity, req.room)
        return person


def not_in_room(identity: str, room: str) -> NotFound:
    return NotFound(f"participant {identity!r} is not in room {room!r}")


def _no_room(room: str) -> NotFound:
    return NotFound(f"room {room!r} does not exist")
