"""SIP inbound trunks: stored as LiveKit's ``SIPInboundTrunkInfo``, and which trunk an
inbound call came in on, so dispatch rules with trunk filters apply to it.

Stored in the hash ``keys.SIP_TRUNKS`` (``dsp:{sip}:trunks``).

Trunks are few (a carrier account has a handful); every lookup reads the whole hash.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from livekit.protocol import models
from livekit.protocol import sip as sip_pb

from dispatcher.errors import NotFound
from dispatcher.sip.store import new_record
from dispatcher.store.client import Client
from dispatcher.store.keys import SIP_TRUNKS

TRUNK_ID_PREFIX = "ST_"

Trunk = sip_pb.SIPInboundTrunkInfo


class TrunkNotFound(NotFound):
    """No inbound trunk has that id."""

    def __init__(self, trunk_id: str) -> None:
        super().__init__(f"SIP trunk {trunk_id!r} not found")


async def load(client: Client) -> list[Trunk]:
    raw: list[bytes] = await client.hvals(SIP_TRUNKS)  # type: ignore[assignment]
    return sorted((Trunk.FromString(v) for v in raw), key=lambda t: t.sip_trunk_id)


async def get(client: Client, trunk_id: str) -> Trunk:
    raw: bytes | None = await client.hget(SIP_TRUNKS, trunk_id)  # type: ignore[assignment]
    if raw is None:
        raise TrunkNotFound(trunk_id)
    return Trunk.FromString(raw)


def listed(
    trunks: Iterable[Trunk], trunk_ids: Sequence[str], numbers: Sequence[str]
) -> list[Trunk]:
    """The trunks among ``trunk_ids`` (all when empty) that serve any of ``numbers``."""
    wanted_ids, wanted_numbers = set(trunk_ids), set(numbers)
    return [
        t
        for t in trunks
        if (not wanted_ids or t.sip_trunk_id in wanted_ids)
        and (not wanted_numbers or wanted_numbers & set(t.numbers))
    ]


async def create(client: Client, trunk: Trunk) -> Trunk:
    created = new_record(trunk, "sip_trunk_id", TRUNK_ID_PREFIX)
    await _write(client, created)
    return created


async def replace(client: Client, trunk_id: str, trunk: Trunk) -> Trunk:
    current = await get(client, trunk_id)
    updated = Trunk()
    updated.CopyFrom(trunk)
    updated.sip_trunk_id = trunk_id
    updated.created_at.CopyFrom(current.created_at)
    updated.updated_at.FromNanoseconds(time.time_ns())
    await _write(client, updated)
    return updated


async def update(client: Client, trunk_id: str, change: sip_pb.SIPInboundTrunkUpdate) -> Trunk:
    trunk = await get(client, trunk_id)
    for name in ("numbers", "allowed_addresses", "allowed_numbers"):
        if change.HasField(name):
            _apply_list(getattr(trunk, name), getattr(change, name))
    for name in ("auth_username", "auth_password", "auth_realm", "name", "metadata"):
        if change.HasField(name):
            setattr(trunk, name, getattr(change, name))
    trunk.updated_at.FromNanoseconds(time.time_ns())
    await _write(client, trunk)
    return trunk


async def delete(client: Client, trunk_id: str) -> Trunk:
    """Remove the trunk and return it; of two concurrent deletes only one succeeds."""
    trunk = await get(client, trunk_id)
    if not await client.hdel(SIP_TRUNKS, trunk_id):
        raise TrunkNotFound(trunk_id)
    return trunk


def trunk_of_call(trunks: Iterable[Trunk], to_number: str, from_number: str) -> str:
    """The id of the trunk a call came in on: one listing the called number (a trunk with
    no numbers takes any), whose allowed callers (if any) include the caller. A trunk that
    names the number wins over a catch-all; "" when none fits."""
    fitting = [
        t
        for t in trunks
        if (not t.numbers or to_number in t.numbers)
        and (not t.allowed_numbers or from_number in t.allowed_numbers)
    ]
    fitting.sort(key=lambda t: (not t.numbers, t.sip_trunk_id))
    return fitting[0].sip_trunk_id if fitting else ""


def _apply_list(values: Sequence[str], change: models.ListUpdate) -> None:
    current = [] if change.clear else list(values)
    if change.set:
        current = list(change.set)
    current += [v for v in change.add if v not in current]
    current = [v for v in current if v not in set(change.remove)]
    del values[:]  # type: ignore[attr-defined]
    values.extend(current)  # type: ignore[attr-defined]


async def _write(client: Client, trunk: Trunk) -> None:
    await client.hset(SIP_TRUNKS, trunk.sip_trunk_id, trunk.SerializeToString())
