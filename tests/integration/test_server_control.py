"""Agent-server control, ours beyond LiveKit: listing servers, draining one, and dispatches
targeted at a server id, a version or labels. An API node, a scheduler and SDK agent
servers against a real Redis, called over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from livekit import api

from dispatcher.api.app import ApiNode
from dispatcher.api.auth import create_token
from dispatcher.api.targeting import encode_target
from dispatcher.scheduler.node import SchedulerNode
from dispatcher.store import keys
from dispatcher.wire import DispatchTarget
from tests import pools
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, api_url, eventually, start_api, start_scheduler
from workers import AgentServer, JobContext

SERVERS = "/twirp/dispatcher.AgentServers/"
CREATE = "/twirp/livekit.AgentDispatchService/CreateDispatch"
OPERATOR = {"video": {"roomAdmin": True, "roomList": True}}


def _one_shard(count: int) -> list[str]:
    """Server ids that share one pool shard: only the target, not the shard, tells them
    apart."""
    ids = (f"AW_same{n}" for n in range(10_000))
    return [i for i in ids if keys.shard_of(i, pools.SHARDS) == 0][:count]


def _token(claims: dict[str, Any]) -> str:
    return create_token(API_KEY, API_SECRET, claims)


@dataclass
class Control:
    url: str
    http: aiohttp.ClientSession
    scheduler: SchedulerNode
    redis_url: str
    lk: api.LiveKitAPI
    servers: list[AgentServer] = field(default_factory=list)
    ran: dict[str, list[str]] = field(default_factory=dict)  # server id -> job ids started
    finished: list[str] = field(default_factory=list)  # job ids whose entrypoint returned
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def post(
        self, path: str, body: Any, token: str | None = None, raw: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token or _token(OPERATOR)}"}
        if raw is not None:
            headers["Content-Type"] = "application/protobuf"
            data = raw
        else:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        async with self.http.post(self.url + path, data=data, headers=headers) as response:
            if response.content_type == "application/protobuf":
                return response.status, {"raw": await response.read()}
            return response.status, await response.json(content_type=None)

    async def server(
        self, agent: str, capacity: int = 4, server_id: str = "", **identity: Any
    ) -> AgentServer:
        """An SDK server whose jobs run until ``release`` is set; the scheduler sees it."""
        server = AgentServer(
            redis_url=self.redis_url,
            capacity=capacity,
            heartbeat_interval_s=0.2,
            heartbeat_ttl_ms=1000,
            **identity,
        )
        server.id = server_id or server.id
        ran = self.ran.setdefault(server.id, [])

        async def entry(ctx: JobContext) -> None:
            ran.append(ctx.job.id)
            await self.release.wait()
            self.finished.append(ctx.job.id)

        server.rtc_session(agent_name=agent)(entry)
        await server.start()
        self.servers.append(server)
        registry = self.scheduler.registry
        seen = registry.version + 2  # a refresh that began after its first heartbeat
        await eventually(lambda: registry.version >= seen, what="the scheduler to see it")
        return server

    async def dispatch(self, agent: str, room: str, target: dict[str, Any] | None = None) -> Any:
        body: dict[str, Any] = {"agentName": agent, "room": room}
        if target is not None:
            body["target"] = target
        token = _token({"video": {"roomAdmin": True, "room": room}})
        return await self.post(CREATE, body, token)

    async def jobs(self, room: str) -> list[api.Job]:
        dispatches = await self.lk.agent_dispatch.list_dispatch(room_name=room)
        return [job for d in dispatches for job in d.state.jobs]

    def where(self, job_ids: list[str]) -> set[str]:
        """The servers that started these jobs."""
        return {sid for sid, ran in self.ran.items() for job in ran if job in job_ids}


@pytest.fixture
async def control(redis_single_target: RedisTarget) -> AsyncIterator[Control]:
    async with _control(redis_single_target.url) as stack:
        yield stack


@contextlib.asynccontextmanager
async def _control(redis_url: str, **scheduler: Any) -> AsyncIterator[Control]:
    sched = await start_scheduler(redis_url, "s0", block_ms=50, **scheduler)
    node: ApiNode = await start_api(redis_url)
    url = api_url(node)
    lk = api.LiveKitAPI(url, API_KEY, API_SECRET)
    async with aiohttp.ClientSession() as http:
        stack = Control(url=url, http=http, scheduler=sched, redis_url=redis_url, lk=lk)
        try:
            yield stack
        finally:
            stack.release.set()
            await asyncio.gather(*(s.aclose() for s in stack.servers))
            await lk.aclose()
            await node.aclose()
            await sched.aclose()


async def _running_job_ids(control: Control, rooms: list[str]) -> list[str]:
    jobs = [job for room in rooms for job in await control.jobs(room)]
    return [job.id for job in jobs if job.state.status == api.JobStatus.JS_RUNNING]


async def _all_running(control: Control, rooms: list[str]) -> bool:
    return len(await _running_job_ids(control, rooms)) == len(rooms)


# --- targeting -------------------------------------------------------------------------


async def test_a_dispatch_targeted_at_a_label_runs_only_on_servers_with_that_label(
    redis_target: RedisTarget,
) -> None:
    async with _control(redis_target.url) as control:
        same = _one_shard(3)  # one eu server shares its shard with the others
        eu = [await control.server("tgt", server_id=same[0], labels={"region": "eu"})]
        eu.append(await control.server("tgt", labels={"region": "eu"}))
        await control.server("tgt", server_id=same[1], capacity=8, labels={"region": "us"})
        await control.server("tgt", server_id=same[2], capacity=8)
        rooms = [f"eu-{n}" for n in range(6)]
        for room in rooms:
            status, body = await control.dispatch("tgt", room, {"labels": {"region": "eu"}})
            assert status == 200, body
        await eventually(lambda: _all_running(control, rooms), what="every job running")
        ids = await _running_job_ids(control, rooms)
        assert control.where(ids) <= {s.id for s in eu}
        assert sum(len(control.ran[s.id]) for s in eu) == len(rooms)  # each started once


async def test_a_dispatch_targeted_at_a_server_id_runs_on_that_server(control: Control) -> None:
    servers = [await control.server("pick", server_id=i) for i in _one_shard(3)]
    chosen = servers[1]
    rooms = [f"id-{n}" for n in range(4)]
    for room in rooms:
        status, body = await control.dispatch("pick", room, {"serverId": chosen.id})
        assert status == 200, body
    await eventually(lambda: _all_running(control, rooms), what="every job running")
    assert control.where(await _running_job_ids(control, rooms)) == {chosen.id}


async def test_a_protobuf_request_carries_a_version_target_in_our_own_field(
    control: Control,
) -> None:
    old_id, new_id = _one_shard(2)
    old = await control.server("ver", server_id=old_id, version="1.0", capacity=8)
    new = await control.server("ver", server_id=new_id, version="2.0")
    rooms = [f"v-{n}" for n in range(4)]
    for room in rooms:
        request = api.CreateAgentDispatchRequest(agent_name="ver", room=room)
        raw = request.SerializeToString() + encode_target(DispatchTarget(version="2.0"))
        token = _token({"video": {"roomAdmin": True, "room": room}})
        status, body = await control.post(CREATE, None, token, raw=raw)
        assert status == 200, body
    await eventually(lambda: _all_running(control, rooms), what="every job running")
    assert control.where(await _running_job_ids(control, rooms)) == {new.id}
    assert control.ran[old.id] == []


async def test_livekit_clients_untargeted_dispatches_use_every_server(control: Control) -> None:
    servers = [await control.server("plain", capacity=2, labels={"a": "b"}) for _ in range(2)]
    rooms = [f"p-{n}" for n in range(4)]
    for room in rooms:  # the real livekit-api client: protobuf, no field of ours
        request = api.CreateAgentDispatchRequest(agent_name="plain", room=room)
        await control.lk.agent_dispatch.create_dispatch(request)
    await eventually(lambda: _all_running(control, rooms), what="every job running")
    assert control.where(await _running_job_ids(control, rooms)) == {s.id for s in servers}


async def test_a_target_no_live_server_matches_waits_with_a_reason_that_says_so(
    control: Control,
) -> None:
    await control.server("gpu", labels={"gpu": "t4"})
    status, _ = await control.dispatch("gpu", "wants-a100", {"labels": {"gpu": "a100"}})
    assert status == 200

    async def says_why() -> bool:
        job = (await control.jobs("wants-a100"))[0]
        return "no live server matches" in job.state.error

    await eventually(says_why, what="the pending reason")
    job = (await control.jobs("wants-a100"))[0]
    assert job.state.status == api.JobStatus.JS_PENDING
    assert "labels gpu=a100" in job.state.error
    a100 = await control.server("gpu", labels={"gpu": "a100"})
    await eventually(lambda: control.ran.get(a100.id) != [], what="the job to start on it")


async def test_a_target_that_never_matches_fails_like_no_capacity_naming_it(
    redis_single_target: RedisTarget,
) -> None:
    async with _control(redis_single_target.url, capacity_wait_s=1.0) as control:
        await control.server("late", version="1")
        status, _ = await control.dispatch("late", "never", {"version": "9"})
        assert status == 200

        async def failed() -> bool:
            jobs = await control.jobs("never")
            return bool(jobs) and jobs[0].state.status == api.JobStatus.JS_FAILED

        await eventually(failed, what="the job to fail")
        state = (await control.jobs("never"))[0].state
        assert "matching target version 9" in state.error
        assert "had a free slot within" in state.error


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"labels": {"": "x"}}, "a label key is empty"),
        ({}, "target names no server id, version or label"),
        ({"labels": {"a=b": "x"}}, "contains '='"),
        ({"serverID": "AW_x"}, "target:"),
        ({"version": "1\n"}, "control characters"),
        ("eu", "target must be an object"),
    ],
)
async def test_a_bad_target_is_invalid_argument_and_creates_nothing(
    control: Control, target: Any, message: str
) -> None:
    status, body = await control.dispatch("any", "bad-target", target)
    assert (status, body["code"]) == (400, "invalid_argument")
    assert message in body["msg"]
    assert await control.jobs("bad-target") == []


# --- listing and draining --------------------------------------------------------------


async def test_list_shows_each_server_and_filters_by_agent_status_and_labels(
    control: Control,
) -> None:
    eu = await control.server("lister", capacity=1, version="3.1", labels={"region": "eu"})
    us = await control.server("lister", capacity=2, labels={"region": "us", "tier": "x"})
    other = await control.server("someone-else")
    status, body = await control.dispatch("lister", "fill-eu", {"serverId": eu.id})
    assert status == 200
    await eventually(lambda: control.ran[eu.id] != [], what="the job running on eu")

    status, body = await control.post(SERVERS + "ListServers", {})
    assert status == 200, body
    listed = {s["id"]: s for s in body["servers"]}
    assert set(listed) == {eu.id, us.id, other.id}
    entry = listed[eu.id]
    assert entry["agentName"] == "lister" and entry["jobType"] == "room"
    assert (entry["version"], entry["labels"]) == ("3.1", {"region": "eu"})
    assert (entry["capacity"], entry["used"], entry["reserved"]) == (1, 1, 1)
    assert (entry["status"], entry["drained"]) == ("full", False)
    assert entry["lastHeartbeatAt"] > 0 and entry["host"] and entry["pid"]

    async def ids(query: dict[str, Any]) -> set[str]:
        status, body = await control.post(SERVERS + "ListServers", query)
        assert status == 200, body
        return {s["id"] for s in body["servers"]}

    assert await ids({"agentName": "lister"}) == {eu.id, us.id}
    assert await ids({"status": "full"}) == {eu.id}
    assert await ids({"status": "available", "agentName": "lister"}) == {us.id}
    assert await ids({"labels": {"region": "us"}}) == {us.id}
    assert await ids({"labels": {"region": "us", "tier": "y"}}) == set()
    assert await ids({"agentName": "nobody"}) == set()


async def test_draining_a_server_moves_new_jobs_elsewhere_and_lets_its_jobs_finish(
    control: Control,
) -> None:
    first = await control.server("drainee", capacity=4)
    before = [f"before-{n}" for n in range(2)]
    for room in before:
        await control.dispatch("drainee", room, {"serverId": first.id})
    await eventually(lambda: _all_running(control, before), what="jobs on the first server")
    second = await control.server("drainee", capacity=4)

    status, body = await control.post(SERVERS + "DrainServer", {"id": first.id})
    assert status == 200, body
    assert (body["server"]["id"], body["server"]["status"]) == (first.id, "draining")
    await eventually(lambda: first.not_ready() == "draining", what="the server to learn it")

    after = [f"after-{n}" for n in range(4)]
    for room in after:  # untargeted: placement must skip the drained server at once
        await control.lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="drainee", room=room)
        )
    await eventually(lambda: _all_running(control, after), what="new jobs running")
    assert control.where(await _running_job_ids(control, after)) == {second.id}

    status, body = await control.post(SERVERS + "ListServers", {"status": "draining"})
    assert [s["id"] for s in body["servers"]] == [first.id]
    assert body["servers"][0]["used"] == 2  # its jobs run on

    control.release.set()  # the jobs end on their own: none was cut short
    ids = [job.id for room in before for job in await control.jobs(room)]

    async def succeeded() -> bool:
        jobs = [job for room in before for job in await control.jobs(room)]
        return all(job.state.status == api.JobStatus.JS_SUCCESS for job in jobs)

    await eventually(succeeded, what="the drained server's jobs to succeed")
    assert sorted(control.ran[first.id]) == sorted(ids)
    assert sorted(job for job in control.finished if job in ids) == sorted(ids)
    started = [job for ran in control.ran.values() for job in ran]
    assert len(started) == len(set(started)) == len(before) + len(after)


async def test_a_targeted_dispatch_at_a_drained_server_waits(control: Control) -> None:
    server = await control.server("held")
    status, _ = await control.post(SERVERS + "DrainServer", {"id": server.id})
    assert status == 200
    await control.dispatch("held", "held-room", {"serverId": server.id})

    async def says_why() -> bool:
        jobs = await control.jobs("held-room")
        return bool(jobs) and "no live server matches" in jobs[0].state.error

    await eventually(says_why, what="the pending reason")
    assert control.ran[server.id] == []


async def test_draining_an_unknown_id_is_not_found(control: Control) -> None:
    await control.server("known")
    status, body = await control.post(SERVERS + "DrainServer", {"id": "AW_nobody"})
    assert (status, body["code"]) == (404, "not_found")
    assert "AW_nobody" in body["msg"]


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        ("DrainServer", {}, "id is required"),
        ("ListServers", {"status": "busy"}, "status 'busy' is not one of"),
        ("ListServers", {"labels": {"": "x"}}, "a label key is empty"),
    ],
)
async def test_bad_control_requests_are_invalid_argument(
    control: Control, method: str, body: dict[str, Any], message: str
) -> None:
    status, reply = await control.post(SERVERS + method, body)
    assert (status, reply["code"]) == (400, "invalid_argument")
    assert message in reply["msg"]


@pytest.mark.parametrize(
    ("claims", "code", "message"),
    [
        (None, "unauthenticated", "no access token"),
        ({"video": {"agent": True}}, "unauthenticated", "roomAdmin and roomList grant"),
        ({"video": {"roomAdmin": True}}, "unauthenticated", "lacks the roomList grant"),
        ({"video": {"roomAdmin": True, "roomList": True, "room": "r"}}, "unauthenticated", "r"),
    ],
)
async def test_control_needs_an_operator_token(
    control: Control, claims: dict[str, Any] | None, code: str, message: str
) -> None:
    for method, body in (("ListServers", {}), ("DrainServer", {"id": "AW_x"})):
        headers = {"Content-Type": "application/json"}
        if claims is not None:
            headers["Authorization"] = f"Bearer {_token(claims)}"
        async with control.http.post(
            control.url + SERVERS + method, json=body, headers=headers
        ) as response:
            reply = await response.json(content_type=None)
        assert reply["code"] == code, reply
        assert message in reply["msg"]
