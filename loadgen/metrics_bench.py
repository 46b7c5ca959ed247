"""What metrics add per call on the dispatch path, without I/O: the API node's request
counting (``MeasuredApp`` against a plain ``HttpApp``, one Twirp route), and the
scheduler's observer over one job's life (pending, assigned, running, ended); and what
one scrape of a scheduler owning 64 partitions costs it (against a local redis-server).
The machine's noise weighs far less on these than on ``loadgen.roles --metrics-ab``.

    python -m loadgen.metrics_bench --calls 200000 --repeats 5
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
from collections.abc import Callable

import click
import orjson

from dispatcher.api.http import Headers, HttpApp, Request, Response
from dispatcher.api.twirp import TwirpRouter, TwirpService
from dispatcher.metrics.api import MeasuredApp, RequestCounts
from dispatcher.scheduler import jobs
from dispatcher.scheduler.metrics import JobCounts
from dispatcher.wire import DispatchCreated, DispatchRecord, JobRecord, JobReport, JobStatus

ROUTE = "/twirp/livekit.AgentDispatchService/CreateDispatch"


def _app(app: HttpApp) -> HttpApp:
    router = TwirpRouter()
    router.install(app)
    service = TwirpService("livekit.AgentDispatchService")

    async def created(_: None, __: Request) -> Response:
        return Response(200, b"{}", "application/json")

    service.add_raw("CreateDispatch", created)
    router.add_service(service)
    return app


async def _per_request_us(app: HttpApp, calls: int) -> float:
    request = Request("POST", ROUTE, Headers())
    began = time.perf_counter()
    for _ in range(calls):
        await app.handle(request)
    return (time.perf_counter() - began) / calls * 1e6


def job_life() -> list[JobRecord]:
    """One job's records as a partition applies them: created, placed, running, ended."""
    dispatch = DispatchRecord(id="AD_bench", agent_name="bench", room="r", created_at=1)
    created = jobs.created(DispatchCreated(dispatch=dispatch, room_sid="RM_x", received_ns=1), 0, 2)
    placed = jobs.placed(created.record, "AW_x", 3)
    spec = placed.spec

    def report(status: JobStatus) -> JobReport:
        return JobReport(
            dispatch_id=spec.dispatch_id,
            job_id=spec.job_id,
            attempt=0,
            server_id="AW_x",
            pool="bench",
            status=status,
            at=4,
        )

    running = jobs.on_report(placed, report(JobStatus.RUNNING), 4).record
    ended = jobs.on_report(running, report(JobStatus.SUCCESS), 5).record
    return [created.record, placed, running, ended]


def per_job_life_us(calls: int, observe: Callable[[JobRecord | None, JobRecord], None]) -> float:
    life = job_life()
    changes = list(zip([None, *life[:-1]], life, strict=True))
    began = time.perf_counter()
    for _ in range(calls):
        for before, after in changes:
            observe(before, after)
    return (time.perf_counter() - began) / calls * 1e6


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _scrape_ms(scrapes: int) -> float:
    """CPU ms per scrape of a scheduler owning 64 partitions, one pool of one server."""
    from dispatcher import settings as config
    from dispatcher.localredis import LocalRedis
    from dispatcher.metrics.export import Metrics
    from dispatcher.scheduler.metrics import exported
    from dispatcher.scheduler.node import SchedulerNode
    from workers import AgentServer, JobContext

    local = LocalRedis()
    try:
        metrics = Metrics()
        values = {"redis_url": local.url, "node_id": "bench", "partitions": 64}
        node = await SchedulerNode.create(config.load(config.SchedulerSettings, values, {}))
        exported(metrics).watch(node)
        await node.start()
        agent = AgentServer(redis_url=local.url, capacity=100)

        @agent.rtc_session(agent_name="bench")
        async def entry(_: JobContext) -> None:
            await asyncio.Event().wait()

        await agent.start()
        await asyncio.sleep(1.0)  # the registry sees the pool
        began = _cpu_s()
        for _ in range(scrapes):
            await metrics.render()
        spent = _cpu_s() - began
        await agent.aclose()
        await node.aclose()
        return spent / scrapes * 1000
    finally:
        local.stop()


def measure(calls: int) -> dict[str, float]:
    plain = asyncio.run(_per_request_us(_app(HttpApp()), calls))
    measured = asyncio.run(_per_request_us(_app(MeasuredApp(RequestCounts())), calls))
    return {
        "api_request_plain_us": plain,
        "api_request_measured_us": measured,
        "api_request_added_us": measured - plain,
        "scheduler_job_life_observed_us": per_job_life_us(calls, JobCounts().job_changed),
    }


@click.command()
@click.option("--calls", type=int, default=200_000)
@click.option("--repeats", type=int, default=5, help="Runs; the median of each figure.")
@click.option("--scrapes", type=int, default=100, help="Scheduler scrapes timed (0: none).")
def main(calls: int, repeats: int, scrapes: int) -> None:
    runs = [measure(calls) for _ in range(repeats)]
    median = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
    if scrapes:
        median["scheduler_scrape_cpu_ms"] = round(asyncio.run(_scrape_ms(scrapes)), 3)
    print(
        orjson.dumps(
            {"calls": calls, "repeats": repeats, **median}, option=orjson.OPT_INDENT_2
        ).decode()
    )


if __name__ == "__main__":
    main()
