"""``FaultStack``: a whole deployment as real processes, with ways to hurt it.

One redis-server (AOF, fsync every second) or a Redis Cluster of three primaries with a
replica each, one API node, three schedulers and three recording agent servers, each its
own process with its log under the test's directory; optionally agent server ``agent-0``
reaches Redis through the pausable proxy. ``run`` drives
load, injects one fault, waits for the system to settle and reconciles what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, cast

import redis
from redis.cluster import ClusterNode

from dispatcher.scheduler.ownership import owner
from dispatcher.store import keys
from tests.e2e.procs import DISPATCHER, env, wait_http
from tests.faults import AGENT_NAME, driver
from tests.faults.reconcile import (
    OPEN_STATUSES,
    ListedJob,
    Observed,
    Record,
    Report,
    build_runs,
    parse_records,
    reconcile,
)
from tests.pools import SHARDS, shard
from tests.redis_servers import (
    _PREEXEC,
    HOST,
    RedisCluster,
    RedisServer,
    find_binary,
    free_port,
)

REPO = Path(__file__).resolve().parents[2]
POOL_SHARDS = [keys.shard_keys(AGENT_NAME, k, SHARDS) for k in range(SHARDS)]
FAST_TIMERS = {"DISPATCHER_HEARTBEAT_INTERVAL_S": "0.5"}
SCHEDULER_ENV = {
    **FAST_TIMERS,
    "DISPATCHER_LEASE_TTL_MS": "2000",
    "DISPATCHER_MEMBERSHIP_TTL_MS": "2000",
    "DISPATCHER_SNAPSHOT_INTERVAL_S": "0.25",
}
AGENT_ENV = {**FAST_TIMERS, "DISPATCHER_HEARTBEAT_TTL_MS": "2000"}
AOF = ("--appendfsync", "everysec")
# A killed primary's replica takes over after about a second; a replica may be promoted
# however long it was cut off from its primary (the test's cluster is young).
FAILOVER = ("--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 8.0
SCHEDULERS = 3  # defined; ``FaultStack(schedulers=n)`` starts the first n
Fault = Callable[["FaultStack"], Awaitable[None]]


@dataclass(frozen=True)
class Load:
    rate: float = 30.0  # dispatches per second
    duration_s: float = 7.0
    hold_s: float = 3.0  # how long each job runs
    fault_at_s: float = 3.0  # after the load starts
    retry_for_s: float = 20.0  # each request retries this long after its slot
    settle_s: float = 30.0  # after the load, for every job to end


class Proc:
    """One role's process; ``start`` again after a kill runs the same command anew."""

    def __init__(self, name: str, argv: list[str], environ: dict[str, str], logs: Path) -> None:
        self.name, self.argv, self.environ, self.logs = name, argv, environ, logs
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} never started"
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        self.starts += 1
        with (self.logs / f"{self.name}.{self.starts}.log").open("ab") as log:
            # PDEATHSIG (when forked from the main thread): no process outlives a crashed run.
            main = threading.current_thread() is threading.main_thread()
            self.popen = subprocess.Popen(
                self.argv, cwd=REPO, env=self.environ, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=_PREEXEC if main else None,
            )  # fmt: skip

    def send(self, sig: signal.Signals) -> None:
        if self.running:
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL and reap: when this returns the process is gone."""
        self.send(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait()

    def reap(self, until: float) -> None:
        if self.popen is None:
            return
        try:
            self.popen.wait(max(0.0, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()


def wait_port(port: int, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout_s} s")


class FaultStack:
    def __init__(
        self,
        tmp_path: Path,
        *,
        proxied_agent: bool = False,
        capacity: int = 40,
        cluster: bool = False,
        schedulers: int = SCHEDULERS,
    ) -> None:
        self.dir = tmp_path
        self.logs = tmp_path / "logs"
        self.records_dir = tmp_path / "records"
        self.logs.mkdir()
        self.records_dir.mkdir()
        self.redis = RedisServer(appendonly=True, extra_args=AOF, name="fault-redis")
        self.cluster = (
            RedisCluster(replicas=1, appendonly=True, extra_args=(*AOF, *FAILOVER))
            if cluster
            else None
        )
        self.api_port = free_port()
        self.proxy_port = free_port() if proxied_agent else 0
        self.capacity = capacity
        self.procs: dict[str, Proc] = {}
        self.killed_agents: dict[str, int] = {}  # server id -> kill time (unix ns)
        self.cut_agents: dict[str, list[tuple[int, int]]] = {}  # server id -> cuts (from, to)
        self.fault_ns = 0
        self.first_schedulers = schedulers  # started at once; the rest by ``start_scheduler``

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # --- lifecycle ------------------------------------------------------------------------

    def _add(self, name: str, argv: list[str], **extra: str) -> Proc:
        proc = Proc(name, argv, env(PYTHONPATH=str(REPO), **extra), self.logs)
        self.procs[name] = proc
        return proc

    @property
    def url(self) -> str:
        return self.cluster.url if self.cluster is not None else self.redis.url

    def client(self) -> redis.Redis | redis.RedisCluster:
        """A synchronous client of the deployment's Redis (caller closes it)."""
        if self.cluster is not None:  # every node a starting point: one may be down
            nodes = [ClusterNode(HOST, node.port) for node in self.cluster.nodes]  # type: ignore[no-untyped-call]
            return redis.RedisCluster(startup_nodes=nodes, socket_timeout=10.0)
        return self.redis.client()

    def _define(self) -> None:
        url = self.url
        self._add("api", [DISPATCHER, "api", "--host", "127.0.0.1",
                          "--port", str(self.api_port), "--redis-url", url])  # fmt: skip
        for i in range(1, SCHEDULERS + 1):
            argv = [DISPATCHER, "scheduler", "--node-id", f"s{i}", "--redis-url", url]
            self._add(f"scheduler-{i}", argv, **SCHEDULER_ENV)
        if self.proxy_port:
            argv = [sys.executable, "-m", "tests.faults.proxy", str(self.proxy_port),
                    str(self.redis.port)]  # fmt: skip
            self._add("proxy", argv)
        for i in range(3):
            agent_url = (
                f"redis://127.0.0.1:{self.proxy_port}" if i == 0 and self.proxy_port else url
            )
            argv = [DISPATCHER, "agent", "tests.faults.recording_agent:server",
                    "--redis-url", agent_url]  # fmt: skip
            self._add(f"agent-{i}", argv, FAULT_RECORD_DIR=str(self.records_dir),
                      FAULT_AGENT_CAPACITY=str(self.capacity), **AGENT_ENV)  # fmt: skip

    async def __aenter__(self) -> Self:
        if self.cluster is not None:
            self.cluster.start()  # from the main thread: its processes die with this one
        else:
            self.redis.start()
        try:
            self._define()
            if "proxy" in self.procs:
                self.procs["proxy"].start()
                await asyncio.to_thread(wait_port, self.proxy_port)
            later = {f"scheduler-{i}" for i in range(self.first_schedulers + 1, SCHEDULERS + 1)}
            for name, proc in self.procs.items():
                if not proc.running and name not in later:
                    proc.start()
            await self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """SIGTERM the roles (SIGCONT first: a stopped one cannot act on it), SIGKILL whatever
        is left after the grace period, then the proxy and Redis they were talking to."""
        roles = [p for name, p in self.procs.items() if name != "proxy"]
        for group in (roles, [p for name, p in self.procs.items() if name == "proxy"]):
            for proc in group:
                proc.send(signal.SIGCONT)
                proc.send(signal.SIGTERM)
            until = time.monotonic() + STOP_TIMEOUT_S
            for proc in group:
                proc.reap(until)
        if self.cluster is not None:
            self.cluster.stop()
        self.redis.stop()

    async def _wait_ready(self) -> None:
        await asyncio.to_thread(wait_http, f"{self.base}/readyz", START_TIMEOUT_S)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self._schedulers_ready() and self._agents_ready()):
            for proc in self.procs.values():
                started = proc.popen is not None
                assert proc.running or not started, (
                    f"{proc.name} exited during start; see {self.logs}"
                )
            assert time.monotonic() < deadline, f"the stack did not come up; see {self.logs}"
            await asyncio.sleep(0.1)

    def _schedulers_ready(self) -> bool:
        """Every running scheduler a member and every partition leased."""
        with self.client() as r:
            if cast(int, r.zcard(keys.SCHEDULERS)) < len(self.scheduler_ids()):
                return False
            partitions = int(cast(bytes, r.hget(keys.META, "partitions")))
            leases = [keys.partition_keys(p).lease for p in range(partitions)]
            return sum(cast(int, r.exists(lease)) for lease in leases) == partitions

    def _agents_ready(self) -> bool:
        servers = self.servers()
        agents = [p for name, p in self.procs.items() if name.startswith("agent-")]
        if any(p.pid not in servers for p in agents):
            return False
        with self.client() as r:
            members = {
                m.decode()
                for shard in POOL_SHARDS
                for m in cast(
                    list[bytes], r.zrangebyscore(shard.exp, int(time.time() * 1000), "+inf")
                )
            }
        return all(servers[p.pid] in members for p in agents)

    # --- faults ---------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """kill -9 one role's process; an agent server's kill time is kept for reconciling."""
        proc = self.procs[name]
        server = self.servers().get(proc.pid) if name.startswith("agent-") else None
        proc.kill()
        if server is not None:
            self.killed_agents[server] = time.time_ns()

    def restart(self, name: str) -> None:
        self.procs[name].start()

    def stop(self, name: str) -> None:
        self.procs[name].send(signal.SIGSTOP)

    def cont(self, name: str) -> None:
        self.procs[name].send(signal.SIGCONT)

    def start_scheduler(self, name: str) -> None:
        """A scheduler joins, as a StatefulSet's next pod does."""
        self.procs[name].start()

    def terminate(self, name: str) -> None:
        """SIGTERM one role and wait for it to exit, as a pod scaled away does."""
        proc = self.procs[name]
        proc.send(signal.SIGTERM)
        proc.reap(time.monotonic() + STOP_TIMEOUT_S)

    def scheduler_ids(self) -> list[str]:
        """The node ids of the running schedulers."""
        return [
            proc.argv[proc.argv.index("--node-id") + 1]
            for name, proc in self.procs.items()
            if name.startswith("scheduler-") and proc.running
        ]

    def ownership_settled(self) -> bool:
        """The membership is the running schedulers, and each partition's lease is held by
        the node rendezvous hashing gives it among them."""
        nodes = sorted(self.scheduler_ids())
        with self.client() as r:
            members = sorted(
                m.decode()
                for m in cast(
                    list[bytes], r.zrangebyscore(keys.SCHEDULERS, int(time.time() * 1000), "+inf")
                )
            )
            if members != nodes:
                return False
            partitions = int(cast(bytes, r.hget(keys.META, "partitions")))
            leases = cast(
                list[bytes | None],
                [r.get(keys.partition_keys(p).lease) for p in range(partitions)],
            )
        holders = [(lease or b"").decode().partition("/")[0] for lease in leases]
        return holders == [owner(p, nodes) for p in range(partitions)]

    def partition_lag(self) -> dict[int, int | None]:
        """Each partition stream's consumer-group lag, read as KEDA's redis-streams scaler
        reads it (``XINFO GROUPS``, the group's ``lag``; None where Redis cannot tell)."""
        with self.client() as r:
            partitions = int(cast(bytes, r.hget(keys.META, "partitions")))
            lags: dict[int, int | None] = {}
            for p in range(partitions):
                groups = cast(
                    list[dict[str, object]], r.xinfo_groups(keys.partition_keys(p).events)
                )
                [group] = [g for g in groups if g["name"] == keys.CONSUMER_GROUP.encode()]
                lag = group.get("lag")
                lags[p] = None if lag is None else int(cast(int, lag))
        return lags

    def kill_redis(self) -> None:
        self.redis.kill()

    def start_redis(self) -> None:
        """Start the same server again (port and AOF kept). From the main thread, so it
        gets PDEATHSIG; the few ms it blocks the event loop only delay the driver's sends."""
        self.redis.start()

    def failover(self, key: str) -> None:
        """``CLUSTER FAILOVER`` on the replica of ``key``'s primary: a coordinated switch."""
        assert self.cluster is not None
        replica = self.cluster.replica_of(self.cluster.primary_of(key))
        with replica.client() as r:
            r.execute_command("CLUSTER", "FAILOVER")

    def reshard(self, key: str) -> int:
        """Move every slot of ``key``'s primary to another primary with ``redis-cli --cluster
        reshard`` (keys migrate slot by slot: clients meet ASK, TRYAGAIN, then MOVED);
        returns the slots moved. Blocking: run it in a thread."""
        assert self.cluster is not None
        source = self.cluster.primary_of(key)
        target = next(
            n for n in self.cluster.nodes
            if n is not source and n.running and self.cluster.role(n) == "master"
        )  # fmt: skip
        with source.client() as r:
            slots = sum(
                int(end) - int(start) + 1
                for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS")
                if int(primary[1]) == source.port
            )
            source_id = cast(bytes, r.execute_command("CLUSTER", "MYID")).decode()
        with target.client() as r:
            target_id = cast(bytes, r.execute_command("CLUSTER", "MYID")).decode()
        subprocess.run(
            [find_binary("redis-cli"), "--cluster", "reshard", f"{HOST}:{source.port}",
             "--cluster-from", source_id, "--cluster-to", target_id,
             "--cluster-slots", str(slots), "--cluster-yes"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        return slots

    def kill_primary(self, key: str) -> None:
        """kill -9 the primary of ``key``'s slot; its replica takes over."""
        assert self.cluster is not None
        self.cluster.primary_of(key).kill()

    def cut(self) -> None:
        """Stall agent-0's traffic to Redis in both directions (connections stay open)."""
        self.procs["proxy"].send(signal.SIGUSR1)
        server = self.servers()[self.procs["agent-0"].pid]
        self.cut_agents.setdefault(server, []).append((time.time_ns(), 2**63))

    def uncut(self) -> None:
        self.procs["proxy"].send(signal.SIGUSR2)
        for cuts in self.cut_agents.values():
            if cuts and cuts[-1][1] == 2**63:
                cuts[-1] = (cuts[-1][0], time.time_ns())

    # --- observation ----------------------------------------------------------------------

    def records(self) -> list[Record]:
        out: list[Record] = []
        for path in sorted(self.records_dir.glob("*.jsonl")):
            with path.open() as lines:
                out += parse_records(lines)
        return out

    def servers(self) -> dict[int, str]:
        """Agent process id -> its server id, from the hello lines."""
        return {r.pid: r.server for r in self.records() if r.ev == "hello"}

    def agent_shard(self, name: str) -> keys.ShardKeys:
        """The pool shard of one agent process's server."""
        return shard(AGENT_NAME, self.servers()[self.procs[name].pid])

    def alive_servers(self) -> frozenset[str]:
        by_pid = self.servers()
        return frozenset(
            by_pid[p.pid]
            for name, p in self.procs.items()
            if name.startswith("agent-") and p.running and p.pid in by_pid
        )

    def reservations(self) -> dict[str, dict[str, str]]:
        """Server id -> job id -> reach deadline, for every reservation hash in the pool."""
        out = {}
        with self.client() as r:
            for pool_shard in POOL_SHARDS:
                prefix = pool_shard.reservations("")
                for key in r.scan_iter(match=prefix + "*", count=1000):
                    entries = cast(dict[bytes, bytes], r.hgetall(key))
                    if entries:
                        server = key.decode().removeprefix(prefix)
                        out[server] = {k.decode(): v.decode() for k, v in entries.items()}
        return out

    def log_digest(self, limit: int = 6) -> str:
        """Warnings and errors per log, to print next to the report."""
        lines = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()
            bad = [x for x in text if " ERROR " in x or " WARNING " in x or "Error" in x]
            if bad:
                lines.append(f"{path.name}: {len(bad)} warning/error lines")
                lines += [f"    {x[:220]}" for x in bad[:limit]]
        return "\n".join(lines)

    # --- a scenario -----------------------------------------------------------------------

    async def run(
        self, fault: Fault, load: Load = Load(), requests: list[driver.Request] | None = None
    ) -> Report:
        """Drive ``load`` (``requests``, or as many as it sends), inject ``fault``, settle
        and reconcile; the requests are filled in with what became of them."""
        if requests is None:
            requests = driver.plan(int(load.rate * load.duration_s))
        start_ns = time.time_ns()
        traffic = asyncio.create_task(
            driver.drive(self.base, requests, load.rate, load.hold_s, load.retry_for_s)
        )
        try:
            await asyncio.sleep(load.fault_at_s)
            self.fault_ns = time.time_ns()
            await fault(self)
        finally:
            await traffic
        listed = await self._settle(requests, load.settle_s)
        return self._reconcile(requests, listed, start_ns + int(load.duration_s * 1e9))

    async def _settle(
        self, requests: list[driver.Request], timeout_s: float
    ) -> dict[str, list[ListedJob]]:
        """Poll until every accepted dispatch has jobs and all have ended, and no recorded
        run is still going; give up after ``timeout_s`` (the report then says what hung)."""
        wanted = [r for r in requests if r.dispatch_id]
        listed: dict[str, list[ListedJob]] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            todo = [r for r in wanted if not _ended(listed.get(r.dispatch_id))]
            listed.update(await driver.list_rooms(self.base, todo))
            todo = [r for r in todo if not _ended(listed.get(r.dispatch_id))]
            if (not todo and not self._runs_open()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        await self._wait_reservations_free(deadline=time.monotonic() + 2.0)
        return listed

    def _runs_open(self) -> bool:
        runs = build_runs(self.records(), self.killed_agents, time.time_ns())
        return any(run.how == "open" for run in runs)

    async def _wait_reservations_free(self, deadline: float) -> None:
        alive = self.alive_servers()
        while time.monotonic() < deadline:
            if not any(s in alive for s in self.reservations()):
                return
            await asyncio.sleep(0.2)

    def _reconcile(
        self, requests: list[driver.Request], listed: dict[str, list[ListedJob]], load_end_ns: int
    ) -> Report:
        report = self._judge(requests, listed, load_end_ns)
        report.refusals = driver.refusals(requests)
        return report

    def _judge(
        self, requests: list[driver.Request], listed: dict[str, list[ListedJob]], load_end_ns: int
    ) -> Report:
        return reconcile(
            Observed(
                requested=len(requests),
                accepted=driver.accepted(requests),
                records=self.records(),
                killed=dict(self.killed_agents),
                cut_off=dict(self.cut_agents),
                alive=self.alive_servers(),
                listed=listed,
                reservations=self.reservations(),
                end_ns=time.time_ns(),
                fault_ns=self.fault_ns,
                load_end_ns=load_end_ns,
            )
        )


def _ended(jobs: list[ListedJob] | None) -> bool:
    return bool(jobs) and all(j.status not in OPEN_STATUSES for j in jobs or ())
