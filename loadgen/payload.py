"""What one dispatch sends: room name, metadata carrying the send time, body and token.

Pure functions, so the round trip of ``sent_ns`` through the metadata is unit-testable.
A request can be encoded ahead of its send with ``STAMP_PLACEHOLDER_NS`` as the send time
and cut around it (``split_at_stamp``): stamping it then only joins three pieces.
"""

from __future__ import annotations

import random

import orjson
from livekit.protocol.agent_dispatch import CreateAgentDispatchRequest

from dispatcher.api.auth import create_token

CREATE_PATH = "/twirp/livekit.AgentDispatchService/CreateDispatch"
TOKEN_TTL_S = 600
#: Unix ns from 2001 to 2286 have 19 digits: a request encoded with this stand-in for its
#: send time is as long as the real one, Content-Length included.
STAMP_DIGITS = 19
STAMP_PLACEHOLDER_NS = 10 ** (STAMP_DIGITS - 1)


def room_prefix(seed: int | None) -> str:
    """A per-run room-name prefix; a seed makes names (and so partitions) reproducible."""
    rng = random.Random(seed)
    return f"lg-{rng.getrandbits(40):010x}"


def room_name(prefix: str, index: int) -> str:
    """One unique room per dispatch, so every dispatch is a new room and a new job."""
    return f"{prefix}-{index}"


def encode_metadata(sent_ns: int) -> str:
    """The dispatch metadata: the client's send time, read back by the simulated agent."""
    return orjson.dumps({"sent_ns": sent_ns}).decode()


def decode_sent_ns(metadata: str) -> int:
    """The send time from a job's metadata; raises ValueError when it is not there."""
    try:
        value = orjson.loads(metadata)["sent_ns"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"no sent_ns in metadata {metadata[:80]!r}") from exc
    if not isinstance(value, int):
        raise ValueError(f"sent_ns is not an integer: {value!r}")
    return value


def request_body(agent_name: str, room: str, metadata: str) -> bytes:
    """The protobuf ``CreateAgentDispatchRequest``, as the server SDKs send it."""
    request = CreateAgentDispatchRequest(agent_name=agent_name, room=room, metadata=metadata)
    return bytes(request.SerializeToString())


def authorization(api_key: str, api_secret: str, room: str, *, now: float | None = None) -> str:
    """``Bearer <token>`` granting roomAdmin for exactly ``room``, as dispatch calls need;
    issued at ``now`` (unix s, default the present)."""
    claims: dict[str, object] = {"video": {"roomAdmin": True, "room": room}}
    return "Bearer " + create_token(api_key, api_secret, claims, TOKEN_TTL_S, now=now)


def split_at_stamp(request: bytes) -> tuple[bytes, bytes]:
    """A request encoded with ``STAMP_PLACEHOLDER_NS`` as its send time, cut into what comes
    before the stamp's digits and what comes after them (the metadata, and in it the stamp,
    is the last field of the body)."""
    placeholder = b"%d" % STAMP_PLACEHOLDER_NS
    at = request.rindex(placeholder)
    return request[:at], request[at + len(placeholder) :]


def stamp(sent_ns: int) -> bytes:
    """The digits of a send time, to go where ``split_at_stamp`` cut."""
    digits = b"%d" % sent_ns
    if len(digits) != STAMP_DIGITS:
        raise ValueError(f"send time {sent_ns} does not have {STAMP_DIGITS} digits")
    return digits
