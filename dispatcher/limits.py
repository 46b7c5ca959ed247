"""Request size limits and the field checks that both the API and SIP rules apply.

Pure: no I/O. A failed check raises ``InvalidArgument`` saying what was wrong; the Twirp
layer answers it as ``invalid_argument``.
"""

from __future__ import annotations

from dataclasses import dataclass

from livekit.protocol import agent_dispatch as pb

from dispatcher.errors import InvalidArgument

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


def check_restart_policy(policy: int, where: str = "") -> None:
    # Protobuf enums are open: an unknown number decodes fine and must be refused here.
    if policy not in _RESTART_POLICIES:
        raise InvalidArgument(
            f"{where}restart_policy {policy} is not a known policy "
            f"({', '.join(f'{n}={v}' for n, v in pb.JobRestartPolicy.items())})"
        )


def check_deployment(deployment: str, where: str = "") -> None:
    """As the reference: at most 64 bytes, no '_', whitespace or control characters."""
    if not deployment:
        return
    if len(deployment.encode()) > MAX_DEPLOYMENT_BYTES:
        raise InvalidArgument(f"{where}deployment exceeds {MAX_DEPLOYMENT_BYTES} bytes")
    if any(c == "_" or c.isspace() or not c.isprintable() for c in deployment):
        raise InvalidArgument(
            f"{where}deployment must not contain '_', whitespace or control characters"
        )
