"""Request checks that answer ``invalid_argument`` with a message saying what was wrong."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from livekit.protocol import agent_dispatch as pb

from dispatcher.api.twirp import TwirpError
from dispatcher.rooms import RoomSpec

MAX_NAME_BYTES = 256
MAX_DEPLOYMENT_BYTES = 64
_RESTART_POLICIES = frozenset(pb.JobRestartPolicy.values())


@dataclass(frozen=True, slots=True)
class Limits:
    max_metadata_bytes: int = 512 * 1024
    max_attributes_bytes: int = 64 * 1024
    max_dispatches_per_room: int = 100
    max_list_bytes: int = 4 * 1024 * 1024
    max_list_rooms: int = 10_000


def resource_exhausted(msg: str) -> TwirpError:
    return TwirpError("resource_exhausted", msg)


def require(value: str, field: str) -> None:
    if not value:
        raise TwirpError.invalid_argument(f"{field} is required")
    if len(value.encode()) > MAX_NAME_BYTES:
        raise TwirpError.invalid_argument(f"{field} exceeds {MAX_NAME_BYTES} bytes")


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
        raise TwirpError.invalid_argument(f"{where}agent_name exceeds {MAX_NAME_BYTES} bytes")
    if not agent.agent_name.isprintable():
        raise TwirpError.invalid_argument(f"{where}agent_name must not contain control characters")
    check_metadata(agent.metadata, limits, f"{where}metadata")
    check_attributes(agent.attributes, limits, where)
    check_deployment(agent.deployment)
    check_restart_policy(agent.restart_policy, where)


def check_restart_policy(policy: int, where: str = "") -> None:
    # Protobuf enums are open: an unknown number decodes fine and must be refused here.
    if policy not in _RESTART_POLICIES:
        raise TwirpError.invalid_argument(
            f"{where}restart_policy {policy} is not a known policy "
            f"({', '.join(f'{n}={v}' for n, v in pb.JobRestartPolicy.items())})"
        )


def check_attributes(attributes: Mapping[str, str], limits: Limits, where: str = "") -> None:
    if not attributes:
        return
    size = sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())
    if size > limits.max_attributes_bytes:
        raise TwirpError.invalid_argument(
            f"{where}attribute size exceeds limits ({size} > {limits.max_attributes_bytes} bytes)"
        )


def check_metadata(metadata: str, limits: Limits, field: str = "metadata") -> None:
    size = len(metadata.encode())
    if size > limits.max_metadata_bytes:
        raise TwirpError.invalid_argument(
            f"{field} size exceeds limits ({size} > {limits.max_metadata_bytes} bytes)"
        )


def check_room_spec(spec: RoomSpec, limits: Limits) -> None:
    check_metadata(spec.metadata, limits)
    if len(spec.agents) > limits.max_dispatches_per_room:
        raise TwirpError.invalid_argument(
            f"{len(spec.agents)} agents exceed the limit of "
            f"{limits.max_dispatches_per_room} dispatches per room"
        )
    for index, agent in enumerate(spec.agents):
        check_agent(agent, limits, f"agents[{index}].")


def check_deployment(deployment: str) -> None:
    """As the reference: at most 64 bytes, no '_', whitespace or control characters."""
    if not deployment:
        return
    if len(deployment.encode()) > MAX_DEPLOYMENT_BYTES:
        raise TwirpError.invalid_argument(f"deployment exceeds {MAX_DEPLOYMENT_BYTES} bytes")
    if any(c == "_" or c.isspace() or not c.isprintable() for c in deployment):
        raise TwirpError.invalid_argument(
            "deployment must not contain '_', whitespace or control characters"
        )
