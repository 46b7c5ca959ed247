"""Virtual agent servers: ``loadgen dispatch --agents N --agent-procs P`` runs N servers in
P processes, each server doing on the wire what the SDK does: it registers in its pool
shard, heartbeats at the SDK's interval (the script when it has something to say or jobs
to check, a plain ``ZADD`` otherwise), reads its inbox, confirms a reservation and reports
RUNNING in one round trip, holds the job, reports the end and then releases the slot, and
leaves its pool at the end. Each started job is timed as loadgen's real agents time it.

What a virtual server does not do that a real one does (BENCHMARKS.md says so too): it
runs no entrypoint or request handler (accepting every job, load 0); it shares its
process's connections, and one blocking inbox read serves up to ``GROUP`` servers of a
shard (an ``XREAD`` over their inboxes) where each real server blocks on its own; it does
not fence itself when its heartbeats fail (a run assumes a healthy Redis) nor stop jobs
whose reservation is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from typing import Any

from dispatcher import process
from dispatcher.ids import worker_id
from dispatcher.settings import AgentSettings
from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import Client, connect
from dispatcher.store.fastlane import entries_of
from dispatcher.store.meta import ensure_pool_shards
from dispatcher.wire import (
    Assignment,
    JobSpec,
    JobStatus,
    ServerInfo,
    Termination,
    encode,
    inbox_decoder,
)
from loadgen.fleet import (
    AgentConfig,
    AgentSummary,
    Fleet,
    Recorder,
    flush,
    flush_loop,
    record_start,
)
from loadgen.results import results_key
from workers import server_calls
from workers.server import SAY_ALL_EVERY

log = logging.getLogger(__name__)

GROUP = 32  # servers of one shard per blocking inbox read
_SLICES = 20  # heartbeats spread over the interval in this many batches
_INBOX_BLOCK_MS = 500
_SETTINGS = AgentSettings()


@dataclass(slots=True)
class Virtual:
    id: str
    shard: keys.ShardKeys
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    max_running: int = 0
    jobs: int = 0
    beats: int = 0  # acknowledged heartbeats; 0 again when it must say everything


class VirtualHost:
    """One process's virtual servers."""

    def __init__(self, config: AgentConfig, client: Client, count: int, shards: int) -> None:
        self.config = config
        self.client = client
        self.recorder = Recorder()
        ids = [worker_id() for _ in range(count)]
        self.servers = [Virtual(i, keys.server_shard(config.agent_name, i, shards)) for i in ids]
        self._offset_ms = 0  # Redis ms minus local monotonic ms, as the SDK measures it
        self.draining = False

    # --- pool membership ------------------------------------------------------------------

    async def register(self) -> None:
        for start in range(0, len(self.servers), 500):
            await self._beat(self.servers[start : start + 500])

    async def leave(self) -> None:
        batch = scripts.Batch()
        for server in self.servers:
            batch.script(scripts.deregister, *calls.deregister(server.shard, server.id))
        await batch.outcomes(self.client)

    async def heartbeats(self) -> None:
        """Every server once per interval, the process's servers spread evenly over it."""
        groups = [self.servers[i::_SLICES] for i in range(_SLICES)]
        step = _SETTINGS.heartbeat_interval_s / _SLICES
        while True:
            for group in groups:
                started = time.monotonic()
                with contextlib.suppress(Exception):  # the next interval tries again
                    await self._beat(group)
                await asyncio.sleep(max(0.0, step - (time.monotonic() - started)))

    async def _beat(self, group: list[Virtual]) -> None:
        """What the SDK sends for each server: the script when it says everything (and
        names its pool) or has jobs to check, else the plain ``ZADD`` of its expiry."""
        batch, scripted, first_call = scripts.Batch(), [], []
        sent, calls_so_far = time.monotonic(), 0
        for server in group:
            say = server.beats % SAY_ALL_EVERY == 0
            first_call.append(calls_so_far)
            scripted.append(say or bool(server.running))
            if say or server.running:
                description = self._description(server) if say else None
                ttl_ms, running = _SETTINGS.heartbeat_ttl_ms, sorted(server.running)
                server_calls.queue_heartbeat(
                    batch, server.shard, server.id, ttl_ms, description, running
                )
                calls_so_far += 2 if say else 1  # a description adds the pool's SADD
            else:
                expires = int(sent * 1000) + self._offset_ms + _SETTINGS.heartbeat_ttl_ms
                name, key, args = server_calls.lease_extension(server.shard, server.id, expires)
                batch.command(name, key, *args)
                calls_so_far += 1
        outcomes = await batch.outcomes(self.client)
        for server, script, index in zip(group, scripted, first_call, strict=True):
            outcome = outcomes[index]
            if isinstance(outcome, Exception):
                server.beats = 0
            elif script:
                self._offset_ms = int(outcome[0]) - int(sent * 1000)
                server.beats += 1
            else:
                server.beats = server.beats + 1 if outcome else 0  # 0: gone, say it all

    def _description(self, server: Virtual) -> calls.Description:
        capacity = self.config.capacity
        status = 2 if self.draining else 1 if len(server.running) >= capacity else 0
        info = ServerInfo(id=server.id, agent_name=self.config.agent_name, capacity=capacity)
        return (capacity, "0.00", status, encode(info))

    # --- inboxes and jobs -----------------------------------------------------------------

    def inbox_groups(self) -> list[list[Virtual]]:
        by_shard: dict[int, list[Virtual]] = {}
        for server in self.servers:
            by_shard.setdefault(server.shard.shard, []).append(server)
        return [s[i : i + GROUP] for s in by_shard.values() for i in range(0, len(s), GROUP)]

    async def read_inboxes(self, group: list[Virtual], stop: asyncio.Event) -> None:
        inboxes = {server.shard.inbox(server.id): server for server in group}
        last = dict.fromkeys(inboxes, b"0-0")
        reads = self.client.fast.dedicated(next(iter(inboxes)))
        try:
            while not stop.is_set():
                try:
                    reply = await reads.execute(
                        "XREAD", "COUNT", 256, "BLOCK", _INBOX_BLOCK_MS,
                        "STREAMS", *last, *last.values(), extra_s=_INBOX_BLOCK_MS / 1000,
                    )  # fmt: skip
                except Exception:  # policy: read again from the same ids, as the SDK does
                    await asyncio.sleep(0.2)
                    continue
                for stream, raw in reply or []:
                    name = stream.decode()
                    for entry_id, fields in entries_of(raw):
                        last[name] = entry_id
                        self._take(inboxes[name], fields)
        finally:
            reads.close()

    def _take(self, server: Virtual, fields: dict[bytes, bytes]) -> None:
        try:
            message = inbox_decoder.decode(fields[b"m"])
        except Exception:
            self.recorder.loop_errors += 1
            return
        if isinstance(message, Assignment):
            job_id = message.job.job_id
            task = asyncio.create_task(self._job(server, message.job))
            server.running[job_id] = task
            task.add_done_callback(lambda _: server.running.pop(job_id, None))
        elif isinstance(message, Termination):
            if (running := server.running.get(message.job_id)) is not None:
                running.cancel()

    async def _job(self, server: Virtual, spec: JobSpec) -> None:
        shard, batch = server.shard, scripts.Batch()
        batch.script(scripts.confirm, *calls.confirm(shard, server.id, spec.job_id))
        server_calls.queue_report(batch, spec, server.id, JobStatus.RUNNING)
        try:
            confirmed = (await batch.run(self.client))[0]
        except asyncio.CancelledError:
            confirmed = 1  # terminated while confirming: end it as the SDK does
        if confirmed != 1:
            return
        start = time.time_ns()
        self._record(server, spec, start)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(self.config.hold_s)
        report = scripts.Batch()
        server_calls.queue_report(report, spec, server.id, JobStatus.SUCCESS)
        await report.run(self.client)
        await scripts.release(self.client, *calls.release(shard, server.id, spec.job_id))
        self.recorder.ended()

    def _record(self, server: Virtual, spec: JobSpec, start: int) -> None:
        server.jobs += 1
        server.max_running = max(server.max_running, len(server.running))
        self.recorder.started()
        record_start(self.recorder, spec, start)

    async def announce_drain(self) -> None:
        """Every server says DRAINING, so no new job is placed on it."""
        self.draining = True
        for start in range(0, len(self.servers), 500):
            group = self.servers[start : start + 500]
            for server in group:
                server.beats = 0  # say it all
            await self._beat(group)

    async def drain(self, timeout_s: float) -> None:
        tasks = [t for s in self.servers for t in s.running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    def summaries(self, cpu_s: float) -> list[AgentSummary]:
        """One per server; the process's CPU split evenly, its counts on the first."""
        share = cpu_s / max(1, len(self.servers))
        recorder = self.recorder
        return [
            AgentSummary(
                server_id=s.id,
                capacity=self.config.capacity,
                max_running=s.max_running,
                jobs=s.jobs,
                bad_metadata=recorder.bad_metadata if n == 0 else 0,
                loop_errors=recorder.loop_errors if n == 0 else 0,
                cpu_s=share,
            )
            for n, s in enumerate(self.servers)
        ]


@contextlib.asynccontextmanager
async def serve_host(host: VirtualHost) -> AsyncIterator[None]:
    """The host's servers registered and serving inside; on the way out they drain as
    the SDK does (DRAINING said first, running jobs finished), push their results and
    leave their pool."""
    stopping = asyncio.Event()
    key = results_key(host.config.run_id)
    await host.register()
    tasks = [asyncio.create_task(host.heartbeats())]
    tasks += [asyncio.create_task(host.read_inboxes(g, stopping)) for g in host.inbox_groups()]
    tasks.append(asyncio.create_task(flush_loop(host.client, key, host.recorder)))
    try:
        yield
        await host.announce_drain()
        await host.drain(10.0)
    finally:
        stopping.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await flush(host.client, key, host.recorder)
        await host.leave()


async def serve_virtual(
    config: AgentConfig, count: int, ready: Event, stop: Event
) -> list[AgentSummary]:
    client = await connect(config.redis_url)
    try:
        await ensure_pool_shards(client, _SETTINGS.pool_shards)
        await scripts.load_all(client)
        host = VirtualHost(config, client, count, _SETTINGS.pool_shards)
        async with serve_host(host):
            cpu_start = time.process_time()
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
        return host.summaries(time.process_time() - cpu_start)
    finally:
        await client.aclose()


def virtual_process(
    config: AgentConfig, count: int, ready: Event, stop: Event, summaries: Any
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s virtual %(name)s: %(message)s")
    for summary in process.run(serve_virtual(config, count, ready, stop)):
        summaries.put(summary)


class VirtualFleet(Fleet):
    """``count`` virtual servers in ``procs`` processes; otherwise a ``Fleet``."""

    def __init__(self, config: AgentConfig, count: int, procs: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._ready = [context.Event() for _ in range(procs)]
        self._summaries = context.Queue()
        self._expected = count
        shares = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
        self._processes = [
            context.Process(
                target=virtual_process,
                args=(config, share, ready, self._stop, self._summaries),
                name=f"loadgen-virtual-{i}",
                daemon=True,
            )
            for i, (share, ready) in enumerate(zip(shares, self._ready, strict=True))
        ]
