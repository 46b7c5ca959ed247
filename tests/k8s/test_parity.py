"""Each role started the way the manifests start it: the image's entrypoint with the
container's args, and the environment its ConfigMap, Secret and env give it. Only what
a pod gets from its cluster differs: Redis is a local one, the pod name is set as the
StatefulSet would, and the ports are free local ones (pods have a network each). Then
the probes are hit, and one dispatch goes through to the demo agent server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from livekit import api

from dispatcher.health import LIVENESS, READINESS
from tests.e2e.procs import wait_http
from tests.k8s.manifests import ROOT, Container, containers, environment, render
from tests.redis_servers import RedisServer

OVERLAY = "overlays/dev"
# This sandbox refuses crun and the default ulimits; runc with explicit limits works.
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
LIMITS = ["--ulimit", "nofile=1024:20000", "--ulimit", "nproc=4096:4096"]
Launch = Callable[[Container, dict[str, str]], list[str]]


def entrypoint() -> list[str]:
    """The Dockerfile's ENTRYPOINT, with tini left out and commands from this venv."""
    text = (ROOT / "Dockerfile").read_text()
    found = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.MULTILINE)
    assert found is not None, "the Dockerfile has no exec-form ENTRYPOINT"
    command: list[str] = json.loads(found.group(1))
    assert command[:2] == ["/usr/bin/tini", "--"], "tini must be PID 1"
    return command[2:]


def process_argv(container: Container, env: dict[str, str]) -> list[str]:
    """The command and args the container runs, with this venv's executables."""
    command = container.spec.get("command") or ["/usr/bin/tini", "--", *entrypoint()]
    assert command[:2] == ["/usr/bin/tini", "--"], container.workload
    program = str(Path(sys.executable).with_name(command[2]))
    return [program, *command[3:], *container.spec["args"]]


def container_argv(container: Container, env: dict[str, str]) -> list[str]:
    """``podman run`` of the container's image, args, environment and security context
    (user, read-only root, no capabilities, no privilege escalation), on the host's
    network so that it reaches the local Redis."""
    pod, own = container.pod["securityContext"], container.spec["securityContext"]
    argv = [*PODMAN, "run", "--rm", "--network", "host", *LIMITS]
    argv += ["--user", f"{pod['runAsUser']}:{pod['runAsGroup']}"]
    if own["readOnlyRootFilesystem"]:
        argv += ["--read-only", "--read-only-tmpfs=false"]
    argv += [f"--cap-drop={cap}" for cap in own["capabilities"]["drop"]]
    if own["allowPrivilegeEscalation"] is False:
        argv += ["--security-opt", "no-new-privileges"]
    for name, value in env.items():
        argv += ["--env", f"{name}={value}"]
    if "command" in container.spec:
        argv += ["--entrypoint", json.dumps(container.spec["command"])]
    return [*argv, container.image, *container.spec["args"]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def role(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCHER_", "LIVEKIT_"))}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env={**base, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def local_env(
    container: Container, redis_url: str, objects: tuple[dict[str, object], ...]
) -> dict[str, str]:
    env = environment(container, objects)
    env["DISPATCHER_REDIS_URL"] = redis_url
    if "POD_NAME" in env:
        env["POD_NAME"] = f"{container.workload}-0"
    if container.role == "api":
        env["DISPATCHER_HOST"], env["DISPATCHER_PORT"] = "127.0.0.1", str(free_port())
    else:
        env["DISPATCHER_HEALTH_HOST"] = "127.0.0.1"
        env["DISPATCHER_HEALTH_PORT"] = str(free_port())
    if "DISPATCHER_METRICS_PORT" in env:
        env["DISPATCHER_METRICS_HOST"] = "127.0.0.1"
        env["DISPATCHER_METRICS_PORT"] = str(free_port())
    return env


def probe_base(env: dict[str, str]) -> str:
    port = env.get("DISPATCHER_PORT") or env["DISPATCHER_HEALTH_PORT"]
    return f"http://127.0.0.1:{port}"


def readiness(base: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(base + READINESS, timeout=2) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ready(base: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (status := readiness(base))[0] != 200:
        assert time.monotonic() < deadline, f"{base} not ready: {status}"
        time.sleep(0.1)


@pytest.fixture(scope="session")
def image() -> str:
    """The image, built here as scripts/build_image.sh builds it (later builds reuse the
    cached base and podman's layers), tagged as the manifests name it."""
    [tag] = {c.image for c in containers(render(OVERLAY)) if c.is_ours}
    subprocess.run([str(ROOT / "scripts/build_image.sh"), tag], check=True)
    return tag


@pytest.mark.parametrize("launch", [process_argv, container_argv], ids=["process", "container"])
def test_every_role_starts_as_rendered_answers_its_probes_and_runs_a_dispatch(
    launch: Launch, tmp_path: Path, redis_single: RedisServer, request: pytest.FixtureRequest
) -> None:
    if launch is container_argv:
        request.getfixturevalue("image")
    redis_single.flushall()
    objects = render(OVERLAY)
    ours = {c.role: c for c in containers(objects) if c.is_ours}
    assert set(ours) == {"api", "scheduler", "agent"}
    envs = {name: local_env(c, redis_single.url, objects) for name, c in ours.items()}
    with (
        role(launch(ours["api"], envs["api"]), envs["api"], tmp_path / "api.log") as api_proc,
        role(launch(ours["scheduler"], envs["scheduler"]), envs["scheduler"],
             tmp_path / "scheduler.log") as sched,
        role(launch(ours["agent"], envs["agent"]), envs["agent"], tmp_path / "agent.log") as agent,
    ):  # fmt: skip
        for name, env in envs.items():
            base = probe_base(env)
            wait_http(base + LIVENESS, timeout_s=60)
            wait_ready(base)
            assert readiness(base) == (200, "ready"), name
            wait_http(f"http://127.0.0.1:{env['DISPATCHER_METRICS_PORT']}/metrics")
        asyncio.run(_dispatch_to_the_demo_agent(probe_base(envs["api"]), envs["api"]))
        for proc, c in (
            (agent, ours["agent"]),
            (sched, ours["scheduler"]),
            (api_proc, ours["api"]),
        ):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(c.pod["terminationGracePeriodSeconds"]) == 0, c.workload
    assert "parity" in (tmp_path / "agent.log").read_text()


def _one(ours: list[Container], name: str) -> Container:
    [container] = [c for c in ours if c.role == name]
    return container


async def _dispatch_to_the_demo_agent(url: str, env: dict[str, str]) -> None:
    """Dispatch to ``test-agent``, wait until its job runs, then delete the dispatch (so the
    demo agent, whose jobs never end by themselves, drains at once)."""
    async with api.LiveKitAPI(url, env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"]) as lk:
        request = api.CreateAgentDispatchRequest(agent_name="test-agent", room="parity")
        created = await lk.agent_dispatch.create_dispatch(request)
        deadline = time.monotonic() + 20
        while True:
            [dispatch] = await lk.agent_dispatch.list_dispatch(room_name="parity")
            jobs = list(dispatch.state.jobs)
            if jobs and jobs[-1].state.status == api.JobStatus.JS_RUNNING:
                break
            assert time.monotonic() < deadline, dispatch
            await asyncio.sleep(0.1)
        await lk.agent_dispatch.delete_dispatch(created.id, "parity")
