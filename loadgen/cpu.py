"""CPU accounting for a run: processes by pid (Linux /proc) and Redis by command time.

Redis is measured two ways. ``INFO cpu`` gives the CPU time of its main thread (commands,
event loop and socket I/O): the figure we compare across systems. ``INFO commandstats``
gives the microseconds spent executing commands; note that a command a Lua script calls is
counted both on its own line and inside the script's, so for systems that use scripts the
sum overstates command time (it is reported for the record, not compared).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from redis.asyncio.cluster import RedisCluster

from dispatcher.store.client import Client

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def total_cpu_s(pids: Iterable[int]) -> float:
    return sum(process_cpu_s(pid) for pid in pids)


def commandstats_usec(info: Mapping[str, Any]) -> int:
    """The sum of ``usec`` over every ``cmdstat_*`` entry of one node's INFO."""
    return sum(
        int(stats.get("usec", 0))
        for name, stats in info.items()
        if name.startswith("cmdstat_") and isinstance(stats, Mapping)
    )


async def redis_command_usec(client: Client) -> int:
    """Microseconds Redis has spent executing commands, over every primary."""
    if isinstance(client, RedisCluster):
        per_node: Any = await client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        return sum(commandstats_usec(info) for info in per_node.values())
    return commandstats_usec(await client.info("commandstats"))


def process_cpu_s_of_redis(info: Mapping[str, Any]) -> float:
    """Redis's whole-process CPU (every thread, user + sys) from one node's ``INFO cpu``:
    microseconds, where /proc counts 10 ms ticks."""
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main_thread_cpu_s(info: Mapping[str, Any]) -> float:
    """Redis's main-thread CPU (user + sys) from one node's ``INFO cpu``."""
    if "used_cpu_user_main_thread" in info:
        return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def redis_cpu_s(client: Client) -> float:
    """CPU seconds Redis's main thread has used, summed over every primary."""
    if isinstance(client, RedisCluster):
        per_node: Any = await client.info("cpu", target_nodes=RedisCluster.PRIMARIES)
        return sum(main_thread_cpu_s(info) for info in per_node.values())
    return main_thread_cpu_s(await client.info("cpu"))
