"""Request checks that raise ``InvalidArgument`` with a message saying what was wrong (the
Twirp layer answers ``invalid_argument``); the checks SIP rules share live in ``limits``."""

from __future__ import annotations

from collections.abc import Mapping

from livekit.protocol import agent_dispatch as pb

from dispatcher.errors import InvalidArgument, ResourceExhausted
from dispatcher.limits import (
    MAX_NAME_BYTES,
    Limits,
    check_deployment,
    check_restart_policy,
)
from dispatcher.room_records import RoomSpec

__all__ = [
    "MAX_NAME_BYTES",
    "Limits",
    "check_agent",
    "check_attributes",
    "check_deployment",
    "check_dispatch_request",
    "check_metadata",
    "check_restart_policy",
    "check_room_spec",
    "require",
    "resource_exhausted",
]


def resource_exhausted(msg: str) -> ResourceExhausted:
    return ResourceExhausted(msg)


def require(value: str, field: str) -> None:
    if not value:
        raise InvalidArgument(f"{field} is required")
    if len(value.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument(f"{field} exceeds {MAX_NAME_BYTES} bytes")


def check_dispatch_request(req: pb.CreateAgentDispatchRequest, limits: Limits) -> None:
    require(req.room, "room")
    # An explicit dispatch must name its agent; unnamed (automatic) agents are sent at room
    # creation, never by CreateDispatch.
    require(req.agent_name, "agent_name")
    check_agent(req, limits)


def check_agent(
    agent: pb.CreateAgentDispatchRequest | pb.RoomAgentDispatch, limits: Limits, where: str = ""
) -> None:
    """Sizes and deployment of one dispatch request or ``RoomAgentDispatch`` entry."""
    if len(agent.agent_name.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument(f"{where}agent_name exceeds {MAX_NAME_BYTES} bytes")
    if not agent.agent_name.isprintable():
        raise InvalidArgument(f"{where}agent_name must not contain control characters")
    check_metadata(agent.metadata, limits, f"{where}metadata")
    check_attributes(agent.attributes, limits, where)
    check_deployment(agent.deployment)
    check_restart_policy(agent.restart_policy, where)


def check_attributes(attributes: Mapping[str, str], limits: Limits, where: str = "") -> None:
    if not attributes:
        return
    size = sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())
    if size > limits.max_attributes_bytes:
        raise InvalidArgument(
            f"{where}attribute size exceeds limits ({size} > {limits.max_attributes_bytes} bytes)"
        )


def check_metadata(metadata: str, limits: Limits, field: str = "metadata") -> None:
    size = len(metadata.encode())
    if size > limits.max_metadata_bytes:
        raise InvalidArgument(
            f"{field} size exceeds limits ({size} > {limits.max_metadata_bytes} bytes)"
        )


def check_room_spec(spec: RoomSpec, limits: Limits) -> None:
    check_metadata(spec.metadata, limits)
    if len(spec.agents) > limits.max_dispatches_per_room:
        raise InvalidArgument(
            f"{len(spec.agents)} agents exceed the limit of "
            f"{limits.max_dispatches_per_room} dispatches per room"
        )
    for index, agent in enumerate(spec.agents):
        check_agent(agent, limits, f"agents[{index}].")
