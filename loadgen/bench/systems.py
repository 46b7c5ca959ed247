"""The systems a bench run can compare, and ``--systems`` parsing."""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.peers import PEERS, VARIANTS

OURS = "dispatcher"
ALL = "all"


@dataclass(frozen=True, slots=True)
class System:
    """``key`` is what ``--systems`` takes, ``label`` what the table shows."""

    key: str
    label: str
    peer: str | None = None
    variant: str | None = None

    @property
    def is_peer(self) -> bool:
        return self.peer is not None


DISPATCHER = System(OURS, OURS)

ALL_SYSTEMS: tuple[System, ...] = (
    DISPATCHER,
    *(
        System(f"{peer}-{variant}", f"{peer} ({variant})", peer, variant)
        for peer in PEERS
        for variant in VARIANTS
    ),
)


def parse_systems(spec: str) -> tuple[System, ...]:
    """Comma-separated keys (``dispatcher``, ``taskiq-defaults``, ``celery-at-least-once``,
    ...); a peer's name alone selects both its variants, ``all`` every system. The result
    keeps the order of ``ALL_SYSTEMS`` whatever the order of the keys."""
    wanted: set[str] = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        matches = _matching(item)
        if not matches:
            choices = ", ".join([ALL, *PEERS, *(s.key for s in ALL_SYSTEMS)])
            raise ValueError(f"unknown system {item!r}; choose from {choices}")
        wanted.update(matches)
    if not wanted:
        raise ValueError("no system selected")
    return tuple(s for s in ALL_SYSTEMS if s.key in wanted)


def _matching(item: str) -> set[str]:
    if item == ALL:
        return {s.key for s in ALL_SYSTEMS}
    return {s.key for s in ALL_SYSTEMS if item in (s.key, s.peer)}
