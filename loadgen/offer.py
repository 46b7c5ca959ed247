"""``loadgen offer``: how many dispatch requests this load generator can offer by itself.

The same sender as ``loadgen dispatch`` (tokens, bodies, open-loop schedule, keep-alive
connections) aimed at ``loadgen.trivial``, an endpoint that costs next to nothing and runs
in its own process. If the achieved rate keeps up with the offered one well above the
system's knee, the knee is the system's, not the load generator's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

from dispatcher.localredis import free_port
from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from loadgen.errors import DispatchCommandError
from loadgen.hdr import LatencyHistogram
from loadgen.options import DispatchOptions
from loadgen.sender import OK, http_client, prepare_dispatches, send_all

ENDPOINT_CPUS, SENDER_CPUS = "0", "1"


def start_endpoint(port: int, pin: bool) -> subprocess.Popen[bytes]:
    pin_args = ["taskset", "-c", ENDPOINT_CPUS] if pin else []
    command = [*pin_args, sys.executable, "-m", "loadgen.trivial", "--port", str(port)]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise DispatchCommandError(f"the trivial endpoint did not start on port {port}")


async def run_offer(rate: float, duration: float, pin: bool) -> dict[str, Any]:
    port = free_port()
    endpoint = start_endpoint(port, pin)
    if pin:
        os.sched_setaffinity(0, {int(SENDER_CPUS)})
    options = DispatchOptions(
        url=f"http://127.0.0.1:{port}",
        api_key=DEV_API_KEY,
        api_secret=DEV_API_SECRET,
        redis_url="",
        rate=rate,
        duration=duration,
        agents=0,
        capacity=0,
        hold=0.0,
        agent_name="loadgen-agent",
    )
    client = http_client(options)
    try:
        stats = await send_all(client, options, prepare_dispatches(client, options, "offer"))
    finally:
        await client.aclose()
        endpoint.terminate()
        endpoint.wait()
    errors = {code: n for code, n in sorted(stats.codes.items()) if code != OK}
    return {
        "offered_rate": rate,
        "duration_s": duration,
        "planned": stats.planned,
        "attempted": stats.attempted,
        "send_rate": round(stats.send_rate(), 1),
        "accepted": stats.codes[OK],
        "errors": errors,
        "response_ms": LatencyHistogram.of(stats.response_ns).summary_ms(),
        "send_lag_ms": LatencyHistogram.of(stats.lag_ns).summary_ms(),
        "cpu_us_per_request": round(stats.cpu_s / stats.attempted * 1e6, 1)
        if stats.attempted
        else None,
    }


def format_offer(report: dict[str, Any]) -> str:
    lag, response = report["send_lag_ms"], report["response_ms"]
    return "\n".join(
        [
            f"loadgen offer  {report['offered_rate']:g}/s for {report['duration_s']:g} s "
            "to a trivial endpoint",
            f"sent      {report['attempted']} of {report['planned']}, "
            f"{report['send_rate']:.1f}/s achieved; accepted {report['accepted']}, "
            f"errors {report['errors'] or 'none'}",
            f"sender    CPU {report['cpu_us_per_request']} us/request; lag p99 {lag['p99']} ms, "
            f"max {lag['max']} ms; response p99 {response['p99']} ms",
        ]
    )
