"""What ``loadgen connect`` runs: its target, a ``ConnectSession``, one step or the knee.

The knee search is ``loadgen dispatch``'s over connect steps: a step passes with join p99
under 50 ms, join max under 150 ms, no error (Joins and Leaves), the offered rate
achieved and, with agents, every room's dispatch started within the grace and none lost.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from loadgen import trivial_stack
from loadgen.connect_report import (
    build_connect_report,
    connect_outcome,
    format_connect,
    joins_over_time,
)
from loadgen.connect_session import ConnectSession
from loadgen.devstack import DevStack, DevStackError
from loadgen.dispatch_cmd import (
    dispatch_options,
    find_max,
    live_progress,
    pinned_stack,
    target,
)
from loadgen.drive import StepKind, format_knee
from loadgen.errors import DispatchCommandError
from loadgen.fleet import FleetError
from loadgen.join_plan import JoinShape
from loadgen.options import DispatchOptions
from loadgen.plot import PlotUnavailable
from loadgen.run import RunError

CONNECT_STEPS = StepKind(
    report=build_connect_report,
    outcome=connect_outcome,
    latency_key="join_ms",
    plot_title="join latency against offered rate",
)


async def run_connect_command(params: dict[str, Any]) -> str:
    """Run what the options ask for and return the text to print."""
    result = await run_connect(params)
    if params["as_json"]:
        return orjson.dumps(result).decode()
    return format_knee(result, "join_ms") if params["find_max"] else format_connect(result)


async def run_connect(params: dict[str, Any]) -> dict[str, Any]:
    """One run's report, or with ``find_max`` the knee search's result."""
    if params["trivial_stack"] and params["agents"]:
        raise DispatchCommandError("--trivial-stack dispatches nothing: leave out --agents")
    try:
        async with target(params, _stack(params)) as (url, redis_url, pids):
            shape = JoinShape(params["new_room_share"], params["room_size"], params["leave_share"])
            options = _options(params, url, redis_url)
            session = ConnectSession(options, shape, system_pids=pids, **live_progress(params))
            return await _run(session, params)
    except (FleetError, RunError, DevStackError, PlotUnavailable) as exc:
        raise DispatchCommandError(str(exc)) from exc


def _stack(params: dict[str, Any]) -> DevStack | None:
    if params["trivial_stack"]:
        return pinned_stack(params["pin"], role="trivial", command=trivial_stack.command)
    return pinned_stack(params["pin"]) if params["dev"] else None


def _options(params: dict[str, Any], url: str, redis_url: str) -> DispatchOptions:
    options = dispatch_options(params, url, redis_url)
    return dataclasses.replace(options, connections=params["connections"])


async def _run(session: ConnectSession, params: dict[str, Any]) -> dict[str, Any]:
    if params["find_max"]:
        return await find_max(session, params, CONNECT_STEPS)
    async with session:
        step = await session.step(params["rate"], params["duration"])
    if params["plot"]:
        from loadgen.plot import plot_over_time

        title = f"join latency at {params['rate']:g}/s (client round trip)"
        plot_over_time(joins_over_time(step), params["plot"], title)
    return build_connect_report(step, session.run_id, session.agents)
