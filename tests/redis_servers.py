"""Throw-away real ``redis-server`` processes for tests (no pytest dependency).

``RedisServer`` runs one server on a free loopback port in its own temporary
directory; ``RedisCluster`` runs three cluster-enabled servers and joins them
into a 3-master cluster with ``redis-cli --cluster create``.  Given ``TlsFiles``
(certificates from a throw-away CA), either speaks TLS only (``rediss://`` URLs).
Both are context managers, and every process is also registered with a finalizer
(run at interpreter exit at the latest) and asked to die with its parent (Linux
``PR_SET_PDEATHSIG``), so servers are not leaked even if the test run crashes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

import redis
import trustme
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
CLUSTER_BUS_OFFSET = 10000
CLUSTER_SLOTS = 16384
START_TIMEOUT = 10.0
CLUSTER_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0

_SETUP_HINT = "run scripts/setup.sh to install redis-server and redis-tools"


class RedisNotInstalledError(RuntimeError):
    """``redis-server`` or ``redis-cli`` is not on PATH."""


class RedisStartError(RuntimeError):
    """A server or cluster did not come up in time."""


@dataclass(frozen=True)
class RedisTarget:
    """Where a test should connect: a single server or a cluster seed node."""

    url: str
    cluster: bool


@dataclass(frozen=True)
class TlsFiles:
    """PEM files signed by one throw-away CA: ``cert``/``key`` for servers (valid for
    127.0.0.1 and localhost), ``client_cert``/``client_key`` for clients that present a
    certificate (any server of these files accepts it)."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, directory: Path) -> TlsFiles:
        ca = trustme.CA()
        server = ca.issue_cert(HOST, "localhost")
        client = ca.issue_cert("client.dispatcher.test")
        files = cls(*(directory / name for name in _TLS_FILE_NAMES))
        ca.cert_pem.write_to_path(files.ca)
        for cert, cert_path, key_path in (
            (server, files.cert, files.key),
            (client, files.client_cert, files.client_key),
        ):
            cert.private_key_pem.write_to_path(key_path)
            for i, pem in enumerate(cert.cert_chain_pems):
                pem.write_to_path(cert_path, append=i > 0)
        return files

    def url_query(self, *, client_cert: bool) -> str:
        """The URL options that trust the CA, and present the client certificate."""
        options = {"ssl_ca_certs": str(self.ca)}
        if client_cert:
            options |= {"ssl_certfile": str(self.client_cert), "ssl_keyfile": str(self.client_key)}
        return urlencode(options, safe="/")

    def client_kwargs(self) -> dict[str, Any]:
        """redis-py arguments for a client that trusts the CA and presents its certificate."""
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.client_cert),
            "ssl_keyfile": str(self.client_key),
        }


_TLS_FILE_NAMES = ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")


def find_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RedisNotInstalledError(f"{name!r} not found on PATH; {_SETUP_HINT}")
    return path


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


# Ports handed out recently by this process: bind(0) may return the same port
# twice in a row once the probe socket is closed, and we start several servers.
_handed_out: set[int] = set()


def free_port(*, cluster: bool = False) -> int:
    """A currently free TCP port on 127.0.0.1.

    With ``cluster=True`` the cluster bus port (port + 10000) is free as well.
    """
    for _ in range(500):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        bus = port + CLUSTER_BUS_OFFSET
        if port in _handed_out or (cluster and (bus > 65535 or bus in _handed_out)):
            continue
        if cluster and not _port_is_free(bus):
            continue
        _handed_out.add(port)
        if cluster:
            _handed_out.add(bus)
        return port
    raise RuntimeError("could not find a free loopback port")


def _die_with_parent() -> Callable[[], None] | None:
    """preexec_fn asking Linux to SIGKILL the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    return preexec


_PREEXEC = _die_with_parent()


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _ping(port: int, **tls: Any) -> bool:
    client = redis.Redis(
        host=HOST,
        port=port,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),  # one quick try; the caller loops
        **tls,
    )
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
        return False
    finally:
        client.close()


class _Process:
    """Process + temp dir of one server; kept apart from RedisServer so the
    finalizer can clean up without holding a reference to the server object."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: Path | None = None

    def send(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def terminate(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig``, wait up to STOP_TIMEOUT, then SIGKILL; always reaps."""
        self.send(sig)
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def cleanup(self) -> None:
        self.terminate()
        directory, self.dir = self.dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


class RedisServer:
    """One ``redis-server`` on a free 127.0.0.1 port in a private temp dir.

    ``start()`` blocks until PING answers.  ``stop()`` ends the process
    (SIGTERM, then SIGKILL) and removes the data dir; ``kill()`` SIGKILLs it
    but keeps the dir and port so ``start()``/``restart()`` can bring the same
    server back (with its AOF when ``appendonly=True``).

    With ``tls`` the server listens for TLS only (``--port 0``, ``port`` is its
    ``--tls-port``); ``tls_auth_clients`` makes it require a client certificate.
    ``url`` then trusts the CA and presents the client certificate when required.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        appendonly: bool = False,
        extra_args: Sequence[str] = (),
        cluster_node: bool = False,
        name: str = "redis",
        tls: TlsFiles | None = None,
        tls_auth_clients: bool = False,
    ) -> None:
        self._binary = find_binary("redis-server")
        self._fixed_port = port is not None
        self._cluster_node = cluster_node
        self.port = port if port is not None else free_port(cluster=cluster_node)
        self.appendonly = appendonly
        self.extra_args = tuple(extra_args)
        self.name = name
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self._state = _Process()
        self._finalizer = weakref.finalize(self, self._state.cleanup)

    # -- properties ---------------------------------------------------------
    @property
    def host(self) -> str:
        return HOST

    @property
    def url(self) -> str:
        if self.tls is not None:
            query = self.tls.url_query(client_cert=self.tls_auth_clients)
            return f"rediss://{HOST}:{self.port}?{query}"
        return f"redis://{HOST}:{self.port}"

    @property
    def client_kwargs(self) -> dict[str, Any]:
        """redis-py arguments, besides host and port, for a client of this server."""
        return {} if self.tls is None else self.tls.client_kwargs()

    @property
    def dir(self) -> Path | None:
        return self._state.dir

    @property
    def log_path(self) -> Path | None:
        return None if self._state.dir is None else self._state.dir / "redis.log"

    @property
    def pid(self) -> int | None:
        return None if self._state.proc is None else self._state.proc.pid

    @property
    def running(self) -> bool:
        proc = self._state.proc
        return proc is not None and proc.poll() is None

    def __repr__(self) -> str:
        return f"RedisServer({self.name}, {self.url}, pid={self.pid})"

    # -- lifecycle ----------------------------------------------------------
    def _argv(self, directory: Path) -> list[str]:
        argv = [
            self._binary,
            *self._port_args(),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(directory),
            "--protected-mode", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        return [*argv, *self.extra_args]

    def _port_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert),
            "--tls-key-file", str(self.tls.key),
            "--tls-ca-cert-file", str(self.tls.ca),
            "--tls-auth-clients", "yes" if self.tls_auth_clients else "no",
        ]  # fmt: skip

    def _spawn(self) -> None:
        if self._state.dir is None:
            self._state.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-{self.port}-"))
        directory = self._state.dir
        # PDEATHSIG fires when the *thread* that forked exits: use it from main only.
        main = threading.current_thread() is threading.main_thread()
        with open(directory / "redis.log", "ab") as log:
            self._state.proc = subprocess.Popen(
                self._argv(directory),
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_PREEXEC if main else None,
            )

    def _wait_ready(self, deadline: float) -> None:
        proc = self._state.proc
        assert proc is not None
        while True:
            if proc.poll() is not None:
                raise RedisStartError(
                    f"{self!r} exited with code {proc.returncode} during startup; "
                    f"log tail:\n{self._log_text()}"
                )
            if _ping(self.port, **self.client_kwargs):
                return
            if time.monotonic() > deadline and proc.poll() is None:
                raise RedisStartError(
                    f"{self!r} did not answer PING within {START_TIMEOUT:.0f}s; "
                    f"log tail:\n{self._log_text()}"
                )
            time.sleep(0.01)

    def _log_text(self) -> str:
        log = self.log_path
        return "(no log)" if log is None else _log_tail(log)

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Start the server (no-op if running) and wait until PING answers."""
        if self.running:
            return self
        for attempt in range(3):
            self._spawn()
            try:
                self._wait_ready(time.monotonic() + timeout)
                self._fixed_port = True  # clients now know this URL; keep it on restart
                return self
            except RedisStartError as exc:
                self._state.terminate(signal.SIGKILL)
                # Lost a race for the port: pick another one, unless it was fixed by
                # the caller or the server already ran on it (clients know the URL).
                if "Address already in use" not in str(exc) or self._fixed_port or attempt == 2:
                    raise
                self._state.cleanup()
                self.port = free_port(cluster=self._cluster_node)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """SIGTERM (then SIGKILL after 5 s) and remove the temp dir."""
        self._state.cleanup()

    def kill(self) -> None:
        """SIGKILL the server, keeping port and data dir for a later start()."""
        self._state.terminate(signal.SIGKILL)

    def restart(self, timeout: float = START_TIMEOUT) -> Self:
        """Graceful stop keeping port and data dir, then start again."""
        self._state.terminate(signal.SIGTERM)
        return self.start(timeout)

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()

    def client(self) -> redis.Redis:
        """A synchronous client for this server (caller closes it)."""
        return redis.Redis(host=HOST, port=self.port, socket_timeout=10.0, **self.client_kwargs)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _admin_client(node: RedisServer) -> redis.Redis:
    return redis.Redis(
        host=HOST, port=node.port, socket_timeout=2.0, decode_responses=True, **node.client_kwargs
    )


def _cluster_info(node: RedisServer) -> dict[str, str]:
    with _admin_client(node) as client:
        raw = client.execute_command("CLUSTER", "INFO")
    if isinstance(raw, dict):  # redis-py may already parse the reply
        return {str(k): str(v) for k, v in raw.items()}
    text = raw if isinstance(raw, str) else str(raw)
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def _known_ports(node: RedisServer) -> set[int]:
    """Ports of the nodes (handshakes included) that ``node`` knows."""
    with _admin_client(node) as client:
        text = str(client.execute_command("CLUSTER", "NODES"))
    ports: set[int] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 1 and ":" in fields[1]:
            ports.add(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
    return ports


class RedisCluster:
    """Three cluster-enabled ``redis-server`` nodes joined as a 3-master cluster, each
    master with ``replicas`` replicas of its own when asked (for failover tests).

    ``url`` is the first node's URL; cluster clients discover the others. With ``tls``
    the nodes speak TLS only, to clients and to each other (``tls-cluster``).
    """

    NODE_ARGS = (
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", "5000",
        "--repl-diskless-sync-delay", "0",  # replicas sync at once, not after 5 s
    )  # fmt: skip
    TLS_NODE_ARGS = ("--tls-cluster", "yes", "--tls-replication", "yes")

    def __init__(
        self,
        *,
        size: int = 3,
        replicas: int = 0,
        appendonly: bool = False,
        extra_args: Sequence[str] = (),
        tls: TlsFiles | None = None,
        tls_auth_clients: bool = False,
    ) -> None:
        self._cli = find_binary("redis-cli")
        self.replicas = replicas
        self.tls = tls
        node_args = (*self.NODE_ARGS, *(self.TLS_NODE_ARGS if tls else ()), *extra_args)
        self.nodes: list[RedisServer] = [
            RedisServer(
                cluster_node=True,
                appendonly=appendonly,
                extra_args=node_args,
                name=f"redis-cluster{i}",
                tls=tls,
                tls_auth_clients=tls_auth_clients,
            )
            for i in range(size * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def __repr__(self) -> str:
        return f"RedisCluster({', '.join(self.urls)})"

    def start(self, timeout: float = CLUSTER_TIMEOUT) -> Self:
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.start()
            self._create(deadline)
            self._wait_ok(deadline)
            self._wait_replicas_synced(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self, deadline: float) -> None:
        argv = [
            self._cli,
            *self._cli_tls_args(),
            "--cluster", "create",
            *(f"{HOST}:{node.port}" for node in self.nodes),
            "--cluster-replicas", str(self.replicas),
            "--cluster-yes",
        ]  # fmt: skip
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            try:
                meshed = False
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise RedisStartError(f"`redis-cli --cluster create` timed out: {self!r}")
                    meshed = meshed or self._complete_mesh()
                    time.sleep(0.02)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            if proc.returncode != 0:
                out.seek(0)
                raise RedisStartError(
                    f"`redis-cli --cluster create` failed ({proc.returncode}) for {self!r}:\n"
                    + out.read()[-4000:].decode(errors="replace")
                )

    def _cli_tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            "--tls",
            "--cacert", str(self.tls.ca),
            "--cert", str(self.tls.client_cert),
            "--key", str(self.tls.client_key),
        ]  # fmt: skip

    def _complete_mesh(self) -> bool:
        """Best-effort speed-up of redis-cli's join wait.

        redis-cli only MEETs every node with the first one and then polls once a
        second until gossip has spread the full topology, which takes 1-4 s.  Once
        it has sent its MEETs (all other nodes know node 0, so config epochs are
        set too), we MEET the remaining pairs directly.  Returns True when done.
        """
        first, others = self.nodes[0], self.nodes[1:]
        try:
            known = {node.port: _known_ports(node) for node in others}
            if not all(first.port in ports for ports in known.values()):
                return False
            for node in others:
                missing = [o for o in others if o is not node and o.port not in known[node.port]]
                with node.client() as client:
                    for other in missing:
                        client.execute_command("CLUSTER", "MEET", HOST, other.port)
        except redis.RedisError:
            return False
        return True

    def _wait_ok(self, deadline: float) -> None:
        want = {"cluster_state": "ok", "cluster_slots_assigned": str(CLUSTER_SLOTS)}
        want["cluster_known_nodes"] = str(len(self.nodes))
        pending = list(self.nodes)
        last: dict[str, str] = {}
        while pending:
            node = pending[0]
            last = _cluster_info(node)
            if all(last.get(k) == v for k, v in want.items()):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                state = {k: last.get(k) for k in want}
                raise RedisStartError(
                    f"{self!r}: node {node.url} not ready in time ({state}); "
                    f"log tail:\n{node._log_text()}"
                )
            time.sleep(0.02)

    def _wait_replicas_synced(self, deadline: float) -> None:
        """A replica promoted before its first sync would take over with no data."""
        for node in self.nodes:
            while self.role(node) == "slave":
                with node.client() as client:
                    info = client.info("replication")
                if info.get("master_link_status") == "up" and not info.get(
                    "master_sync_in_progress"
                ):
                    break
                if time.monotonic() > deadline:
                    raise RedisStartError(f"{node!r} did not sync with its primary in time")
                time.sleep(0.05)
        for node in self.nodes:  # a replica's first acknowledgement can take a second
            if self.replicas and self.role(node) == "master":
                self._acknowledged(node, deadline)

    def _acknowledged(self, primary: RedisServer, deadline: float) -> None:
        with primary.client() as client:
            key = next(
                f"probe{i}"
                for i in range(100_000)
                if self._serves(
                    primary, int(client.execute_command("CLUSTER", "KEYSLOT", f"probe{i}"))
                )
            )
            client.set(key, 1)
            while int(client.execute_command("WAIT", self.replicas, 1000)) < self.replicas:
                if time.monotonic() > deadline:
                    raise RedisStartError(f"{primary!r}: its replicas never acknowledged")
            client.delete(key)

    def stop(self) -> None:
        for node in self.nodes:  # signal all first: they shut down in parallel
            node._state.send(signal.SIGTERM)
        for node in self.nodes:
            node.stop()

    def flushall(self) -> None:
        """FLUSHALL on every master."""
        for node in self.nodes:
            if not self.replicas or self.role(node) == "master":
                node.flushall()

    def role(self, node: RedisServer) -> str:
        with node.client() as client:
            return str(client.info("replication")["role"])

    def primary_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot now."""
        with self.nodes[0].client() as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for node in self.nodes:
            if node.running and self.role(node) == "master" and self._serves(node, slot):
                return node
        raise LookupError(f"no master serves slot {slot}")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        for node in self.nodes:
            if node is not primary and node.running:
                with node.client() as client:
                    info = client.info("replication")
                if info["role"] == "slave" and int(info["master_port"]) == primary.port:
                    return node
        raise LookupError(f"no replica of {primary!r}")

    @staticmethod
    def _serves(node: RedisServer, slot: int) -> bool:
        with node.client() as client:
            for start, end, primary, *_replicas in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end and int(primary[1]) == node.port:
                    return True
        return False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
