"""The participant tokens of a ``loadgen connect`` step, minted before the step starts.

Minting costs 4-8 us a token; done during the schedule it would be load generator
work the open loop pays for, so every token of a step is minted up front. A token that
creates a room carries ``roomConfig.agents`` with one agent whose metadata holds the join's
scheduled send time (the simulated agents read it, as they read a dispatch's).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher.api.auth import create_token
from loadgen.join_plan import PlannedJoin
from loadgen.payload import TOKEN_TTL_S, encode_metadata

#: RoomStore outlive the step even when everyone left, so a later join never re-creates one.
ROOM_TIMEOUT_S = 600


@dataclass(frozen=True, slots=True)
class Minted:
    tokens: list[str]  # one per planned join, in plan order
    cpu_s: float  # what minting them cost


def join_claims(join: PlannedJoin, agent_name: str, metadata: str) -> dict[str, object]:
    """A participant's grant to join ``join.room``; with the agent config if it creates it."""
    claims: dict[str, object] = {
        "sub": join.identity,
        "video": {"roomJoin": True, "room": join.room},
    }
    if join.creates_room:
        claims["roomConfig"] = {
            "agents": [{"agentName": agent_name, "metadata": metadata}],
            "emptyTimeout": ROOM_TIMEOUT_S,
            "departureTimeout": ROOM_TIMEOUT_S,
        }
    return claims


def mint_tokens(
    plan: Sequence[PlannedJoin],
    api_key: str,
    api_secret: str,
    agent_name: str,
    *,
    first_send_ns: int,
    rate: float,
) -> Minted:
    """Tokens for ``plan``; join i is scheduled at ``first_send_ns`` + i/``rate``."""
    cpu_before = time.process_time()
    tokens = []
    for index, join in enumerate(plan):
        due_ns = first_send_ns + round(index * 1e9 / rate)
        metadata = encode_metadata(due_ns) if join.creates_room else ""
        claims = join_claims(join, agent_name, metadata)
        tokens.append(create_token(api_key, api_secret, claims, TOKEN_TTL_S))
    return Minted(tokens, time.process_time() - cpu_before)
