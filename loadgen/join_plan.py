"""Who joins which room, decided before a ``loadgen connect`` step by a seeded generator.

A share of joins (``new_room_share``) create a room; the others join a room created
earlier, picked at random among the open ones. A room is open from ``JOINABLE_AFTER_S``
after its creating join is due (so, below the knee, the creating join has been answered
before anyone else arrives) until it has had ``room_size`` joins. When no room is open,
the join creates one. Every join has its own identity, so none is a reconnect.

Rooms created during the schedule only open after ``JOINABLE_AFTER_S``, so the schedule
would begin with that long of nothing but room creations. The plan therefore also holds
``openers``: joins, sent before the schedule, that create enough rooms for its start.

Pure and seeded: the same settings and seed give the same plan.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

#: How long after its creating join is due a room takes other joins.
JOINABLE_AFTER_S = 0.25


@dataclass(frozen=True, slots=True)
class JoinShape:
    """The mix of joins: how many create rooms, how full rooms get, how many leave."""

    new_room_share: float = 0.1
    room_size: int = 10  # joins a room gets (its creator included) before it is retired
    leave_share: float = 0.0  # joins followed by a Leave once answered

    def __post_init__(self) -> None:
        if not 0.0 < self.new_room_share <= 1.0:
            raise ValueError(f"new_room_share must be in (0, 1], not {self.new_room_share}")
        if self.room_size < 1:
            raise ValueError(f"room_size must be at least 1, not {self.room_size}")
        if not 0.0 <= self.leave_share <= 1.0:
            raise ValueError(f"leave_share must be in [0, 1], not {self.leave_share}")


@dataclass(frozen=True, slots=True)
class PlannedJoin:
    room: str
    identity: str
    creates_room: bool
    leaves: bool


class _OpenRooms:
    """Rooms that take joins: waiting out their creation, then open until full."""

    def __init__(self, room_size: int) -> None:
        self._room_size = room_size
        self._joins: dict[str, int] = {}
        self._maturing: deque[tuple[float, str]] = deque()  # (joinable from, room)
        self._open: list[str] = []

    def created(self, room: str, at_s: float) -> None:
        self._joins[room] = 1
        if self._room_size > 1:
            self._maturing.append((at_s + JOINABLE_AFTER_S, room))

    def open_at(self, at_s: float) -> list[str]:
        while self._maturing and self._maturing[0][0] <= at_s:
            self._open.append(self._maturing.popleft()[1])
        return self._open

    def joined(self, position: int) -> str:
        """Count a join of the open room at ``position``; retire it once full."""
        room = self._open[position]
        self._joins[room] += 1
        if self._joins[room] >= self._room_size:
            self._open[position] = self._open[-1]  # order does not matter: O(1) removal
            self._open.pop()
        return room


@dataclass(frozen=True, slots=True)
class JoinPlan:
    openers: list[PlannedJoin]  # sent before the schedule: the rooms open at its start
    joins: list[PlannedJoin]  # the schedule: join i is due at i / rate


def opening_rooms(rate: float, shape: JoinShape) -> int:
    """Rooms enough for twice the joins of existing rooms due before any new one opens."""
    if shape.room_size == 1:
        return 0  # no join ever joins an existing room
    early_joins = rate * JOINABLE_AFTER_S * (1 - shape.new_room_share)
    return math.ceil(2 * early_joins / (shape.room_size - 1))


def plan_joins(
    prefix: str, count: int, rate: float, shape: JoinShape, seed: int | None
) -> JoinPlan:
    """``count`` joins due one every 1/``rate`` s; names start with ``prefix``."""
    rng = random.Random(seed)
    rooms = _OpenRooms(shape.room_size)
    openers = _openers(prefix, opening_rooms(rate, shape), rooms)
    created = len(openers)
    joins: list[PlannedJoin] = []
    for index in range(count):
        due_s = index / rate
        candidates = rooms.open_at(due_s)
        creates = not candidates or rng.random() < shape.new_room_share
        if creates:
            room = f"{prefix}-r{created}"
            created += 1
            rooms.created(room, due_s)
        else:
            room = rooms.joined(rng.randrange(len(candidates)))
        leaves = shape.leave_share > 0 and rng.random() < shape.leave_share
        joins.append(PlannedJoin(room, f"{prefix}-u{index}", creates, leaves))
    return JoinPlan(openers, joins)


def _openers(prefix: str, count: int, rooms: _OpenRooms) -> list[PlannedJoin]:
    """Joins creating ``count`` rooms that are open when the schedule starts."""
    openers = [PlannedJoin(f"{prefix}-r{n}", f"{prefix}-o{n}", True, False) for n in range(count)]
    for opener in openers:
        rooms.created(opener.room, -JOINABLE_AFTER_S)
    return openers
