"""The agent server of the fault suite: it writes down every run it makes.

Run as ``dispatcher agent tests.faults.recording_agent:server``. Each process appends JSON
lines to ``$FAULT_RECORD_DIR/<pid>.jsonl``: one ``hello`` naming its server id at import,
then ``start`` and ``end`` per run. Lines are flushed one by one, so a process killed with
SIGKILL leaves every line it wrote (the page cache survives the process).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, TextIO

from dispatcher import settings as config
from tests.faults import AGENT_NAME
from workers import AgentServer, JobContext

DEFAULT_HOLD_S = 2.0

# DISPATCHER_HEARTBEAT_INTERVAL_S / _TTL_MS come from the environment like any agent's.
_settings = config.load(config.AgentSettings)
server = AgentServer(
    capacity=int(os.environ.get("FAULT_AGENT_CAPACITY", "40")),
    heartbeat_interval_s=_settings.heartbeat_interval_s,
    heartbeat_ttl_ms=_settings.heartbeat_ttl_ms,
    drain_timeout_s=5.0,
)


def _open_record() -> TextIO | None:
    directory = os.environ.get("FAULT_RECORD_DIR")
    if not directory:
        return None
    return open(os.path.join(directory, f"{os.getpid()}.jsonl"), "a", buffering=1)


_out = _open_record()


def record(ev: str, **fields: Any) -> None:
    if _out is None:
        return
    line = {"ev": ev, "server": server.id, "pid": os.getpid(), "t": time.time_ns(), **fields}
    _out.write(json.dumps(line, separators=(",", ":")) + "\n")
    _out.flush()


def hold_seconds(metadata: str) -> float:
    try:
        return float(json.loads(metadata)["hold_s"])
    except (ValueError, KeyError, TypeError):
        return DEFAULT_HOLD_S


@server.rtc_session(agent_name=AGENT_NAME)
async def entry(ctx: JobContext) -> None:
    ids = {"dispatch": ctx.job.dispatch_id, "job": ctx.job.id}
    record("start", **ids)
    try:
        await asyncio.sleep(hold_seconds(ctx.job.metadata))
    except asyncio.CancelledError:
        record("end", how="cancelled", **ids)
        raise
    record("end", how="done", **ids)


record("hello")
