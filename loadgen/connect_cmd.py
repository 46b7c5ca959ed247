"""``loadgen connect``: participants connect at a fixed rate; connections/s and join latency.

The command shares ``loadgen dispatch``'s options where they mean the same (target, fleet,
output, knee search) and adds the shape of the joins. ``--trivial-stack`` aims the same
run at ``loadgen.trivial_stack`` (the API node's HTTP stack with a Join that does
nothing) in the same layout, for the ratio of the two. The run itself is
``loadgen.connect_run``, imported when the command runs.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from loadgen.errors import DispatchCommandError
from loadgen.options import CONNECTION_LIMIT

#: The options in the order ``--help`` lists them; those ``_OWN`` lacks are dispatch's.
_ORDER = (
    "url",
    "api_key",
    "api_secret",
    "redis_url",
    "dev",
    "pin",
    "trivial_stack",
    "rate",
    "duration",
    "new_room_share",
    "room_size",
    "leave_share",
    "connections",
    "agents",
    "capacity",
    "hold",
    "agent_name",
    "seed",
    "as_json",
    "plot",
    "find_max",
    "start_rate",
    "max_rate",
    "step_duration",
    "progress",
)


def _option(name: str, kind: click.ParamType[Any], default: float, help: str) -> click.Option:
    return click.Option([name], type=kind, default=default, show_default=True, help=help)


_SHARE = click.FloatRange(min=0, max=1)
_OWN = (
    click.Option(
        ["--trivial-stack"],
        is_flag=True,
        help="Start loadgen.trivial_stack (a Join that does nothing) in place of "
        "dispatcher dev, laid out as --dev would be; no --agents.",
    ),
    _option("--rate", click.FloatRange(min=0, min_open=True), 500.0, "Joins/s."),
    _option(
        "--new-room-share",
        click.FloatRange(min=0, max=1, min_open=True),
        0.1,
        "Joins that create a room (their token carries the agent).",
    ),
    _option("--room-size", click.IntRange(min=1), 10, "Joins a room gets before it is full."),
    _option("--leave-share", _SHARE, 0.0, "Joins followed by a Leave once answered."),
    _option(
        "--connections",
        click.IntRange(min=1),
        CONNECTION_LIMIT,
        "Keep-alive connections to the API node.",
    ),
    _option(
        "--agents",
        click.IntRange(min=0),
        0,
        "Simulated agent servers running the rooms' dispatches (0: none).",
    ),
)


def connect_command(dispatch: click.Command) -> click.Command:
    """The ``connect`` command, with ``dispatch``'s options where they mean the same."""
    by_name = {p.name: p for p in dispatch.params}
    by_name.update({p.name: p for p in _OWN})
    return click.Command(
        "connect",
        callback=_main,
        params=[by_name[name] for name in _ORDER],
        help="Participants join rooms at a fixed rate; report connections/s and join latency.",
    )


def _main(**params: Any) -> None:
    import uvloop

    from loadgen.connect_run import run_connect_command

    try:
        output = uvloop.run(run_connect_command(params))
    except DispatchCommandError as exc:
        sys.exit(f"error: {exc}")
    click.echo(output)
