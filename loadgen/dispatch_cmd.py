"""``loadgen dispatch``: turn the command's options into a session, run it, render it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson

from loadgen.devstack import DevStack, DevStackError
from loadgen.drive import DISPATCH_STEPS, StepKind, format_knee, run_dispatch, run_find_max
from loadgen.errors import DispatchCommandError
from loadgen.fleet import FleetError
from loadgen.options import DispatchOptions
from loadgen.plot import PlotUnavailable
from loadgen.progress import stream_writer
from loadgen.report import agent_dict, build_report, format_table
from loadgen.run import DispatchSession, RunError
from loadgen.sweep import KneeCriteria

# --pin: the benchmark suite's layout on a 2-core machine.
REDIS_CPUS, OTHER_CPUS = "0", "1"


async def run_command(params: dict[str, Any]) -> str:
    """Run what the options ask for and return the text to print."""
    try:
        stack = pinned_stack(params["pin"]) if params["dev"] else None
        async with target(params, stack) as (url, redis_url, pids):
            options = dispatch_options(params, url, redis_url)
            session = DispatchSession(options, system_pids=pids, **live_progress(params))
            return await _run(session, params)
    except (FleetError, RunError, DevStackError, PlotUnavailable) as exc:
        raise DispatchCommandError(str(exc)) from exc


def live_progress(params: dict[str, Any]) -> dict[str, Any]:
    """A session's progress arguments: on stderr unless ``--no-progress``."""
    write = stream_writer(sys.stderr) if params["progress"] else None
    return {"progress_write": write, "progress_tty": sys.stderr.isatty()}


def pinned_stack(pin: bool, **kwargs: Any) -> DevStack:
    """A local stack, in the suite's layout with ``pin``; ``kwargs`` go to ``DevStack``."""
    return DevStack(
        cpus=OTHER_CPUS if pin else None, redis_cpus=REDIS_CPUS if pin else None, **kwargs
    )


@contextlib.asynccontextmanager
async def target(
    params: dict[str, Any], stack: DevStack | None
) -> AsyncIterator[tuple[str, str, dict[str, int]]]:
    """(API URL, Redis URL, pids of the system's processes): ``stack`` started here, or
    the deployment the options name."""
    if stack is None:
        if not params["redis_url"]:
            raise DispatchCommandError("--redis-url is required unless --dev is given")
        if params["pin"]:
            raise DispatchCommandError("--pin only applies to --dev")
        yield params["url"], params["redis_url"], {}
        return
    await asyncio.to_thread(stack.start)
    if params["pin"]:
        os.sched_setaffinity(0, {int(OTHER_CPUS)})  # the fleet, spawned later, inherits it
    try:
        yield stack.url, stack.redis_url, stack.pids
    finally:
        await asyncio.to_thread(stack.stop)


def dispatch_options(params: dict[str, Any], url: str, redis_url: str) -> DispatchOptions:
    return DispatchOptions(
        url=url,
        api_key=params["api_key"],
        api_secret=params["api_secret"],
        redis_url=redis_url,
        rate=params["rate"],
        duration=params["duration"],
        agents=params["agents"],
        agent_procs=params.get("agent_procs") or 0,
        capacity=params["capacity"],
        hold=params["hold"],
        agent_name=params["agent_name"],
        seed=params["seed"],
    )


async def find_max(
    session: DispatchSession, params: dict[str, Any], kind: StepKind = DISPATCH_STEPS
) -> dict[str, Any]:
    """The knee search the options ask for, over the session's whole life."""
    async with session:
        result = await run_find_max(
            session,
            start=params["start_rate"],
            max_rate=params["max_rate"],
            step_duration=params["step_duration"],
            criteria=KneeCriteria(),
            log=stream_writer(sys.stderr),
            plot=params["plot"],
            kind=kind,
        )
    result["agents"] = [agent_dict(a) for a in session.agents]
    return result


async def _run(session: DispatchSession, params: dict[str, Any]) -> str:
    if params["find_max"]:
        result = await find_max(session, params)
        return orjson.dumps(result).decode() if params["as_json"] else format_knee(result)
    async with session:
        step, _ = await run_dispatch(session, params["plot"])
    report = build_report(step, session.run_id, session.agents)
    return orjson.dumps(report).decode() if params["as_json"] else format_table(report)
