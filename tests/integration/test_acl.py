"""Least privilege in Redis: the dispatcher's processes need only the commands of ``RULE`` on
the ``dsp:`` keys. With Redis's default user behind a password, a dispatch runs end to end
with the API node, the scheduler and the agent server all logged in as that user, on one
node and on a 3-master cluster, and Redis refuses nothing they send (its ACL LOG stays
empty); the same user is refused what the dispatcher never needs. ``ROLE_RULES`` narrow it
per role (an agent server touches only pools and appends to partition streams), and a
dispatch runs with each role logged in as its own user too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from livekit import api
from redis.exceptions import ResponseError

from dispatcher.observe.snapshot import collect
from dispatcher.store import keys
from dispatcher.store.client import connect
from dispatcher.store.fastlane import FastLane
from tests.redis_servers import HOST, RedisCluster, RedisServer
from tests.stack import (
    API_KEY,
    API_SECRET,
    api_url,
    eventually,
    start_agent,
    start_api,
    start_scheduler,
)
from workers import JobContext

PASSWORD = "dispatcher-pass"
ADMIN_PASSWORD = "admin-pass"
AGENT = "acl-agent"

# `user dispatcher <RULE...>` in an ACL file or redis.conf.
RULE = (
    "on", f">{PASSWORD}", "resetchannels", "~dsp:*", "-@all",
    # connecting: redis-py asks INFO cluster; its cluster client reads COMMAND and
    # CLUSTER SLOTS, and both lanes follow ASK redirections with ASKING
    "+info|cluster", "+command", "+cluster|slots", "+asking",
    # scripts loaded by SHA; WAIT for DISPATCHER_REPLICA_ACKS; PING for /readyz
    "+script|load", "+evalsha", "+wait", "+ping",
    # the plain calls and those of the scripts (a script's calls are checked too)
    "+get", "+set", "+del", "+incr", "+incrby", "+expire", "+pexpire", "+time",
    "+hget", "+hgetall", "+hmget", "+hkeys", "+hvals", "+hlen", "+hexists", "+hstrlen",
    "+hset", "+hsetnx", "+hdel",
    "+sadd", "+smembers",
    "+zadd", "+zrange", "+zrem", "+zremrangebyscore", "+zrangebyscore", "+zrevrangebyscore",
    "+zscore", "+zcard",
    "+xadd", "+xread", "+xreadgroup", "+xack", "+xautoclaim", "+xpending", "+xtrim",
    "+xgroup|create", "+xinfo|stream", "+xinfo|groups",
)  # fmt: skip

# Connecting (one node or a cluster) and running the scripts, as in RULE.
_EVERY_ROLE = ("+info|cluster", "+command", "+cluster|slots", "+asking", "+script|load", "+evalsha")
# One user per role, each with only its own keys and calls.
ROLE_RULES: dict[str, tuple[str, ...]] = {
    "dsp-api": (
        "on", f">{PASSWORD}", "resetchannels", "~dsp:meta", "~dsp:{p*", "~dsp:{sip}:*",
        "-@all", *_EVERY_ROLE, "+wait", "+ping",
        "+get", "+set", "+del", "+expire",
        "+hget", "+hgetall", "+hkeys", "+hvals", "+hlen", "+hexists", "+hstrlen",
        "+hset", "+hsetnx", "+hdel", "+xadd",
    ),
    "dsp-scheduler": (
        "on", f">{PASSWORD}", "resetchannels",
        "~dsp:meta", "~dsp:schedulers", "~dsp:pools", "~dsp:{p*", "~dsp:{a:*", "~dsp:{stats}:*",
        "-@all", *_EVERY_ROLE,
        "+get", "+set", "+del", "+incr", "+incrby", "+expire", "+pexpire", "+time",
        "+hget", "+hgetall", "+hmget", "+hkeys", "+hvals", "+hlen", "+hset", "+hsetnx", "+hdel",
        "+smembers", "+zadd", "+zrange", "+zrem", "+zremrangebyscore", "+zrangebyscore",
        "+zrevrangebyscore", "+zscore", "+zcard",
        "+xadd", "+xreadgroup", "+xack", "+xautoclaim", "+xpending", "+xtrim",
        "+xgroup|create", "+xinfo|stream", "+xinfo|groups",
    ),
    "dsp-agent": (
        "on", f">{PASSWORD}", "resetchannels", "~dsp:meta", "~dsp:pools", "~dsp:{a:*",
        "-@all", *_EVERY_ROLE, "+wait",
        "+del", "+time", "+get", "+incrby", "+hget", "+hgetall", "+hmget", "+hkeys", "+hlen",
        "+hexists", "+hset", "+hsetnx", "+hdel", "+sadd", "+zadd", "+zrem", "+zscore", "+xread",
        "(~dsp:{p*}:events +xadd)",  # its reports, and nothing else of a partition
    ),
}  # fmt: skip

SCRIPT_REFUSED = r"user executing the script can't (run|access)"
# Sent by redis-py on connect and ignored when refused (Redis 7.2+ and 8.x know them).
_OPTIONAL = {"client|setinfo", "client|maint_notifications"}


def _users_args() -> list[str]:
    users = {"dispatcher": RULE, **ROLE_RULES}
    return [arg for user, rule in users.items() for arg in ("--user", user, *rule)]


@dataclass
class Deployment:
    """Redis with the users above and its default user behind ``ADMIN_PASSWORD``."""

    nodes: Sequence[RedisServer]

    def url(self, user: str = "dispatcher") -> str:
        return f"redis://{user}:{PASSWORD}@{HOST}:{self.nodes[0].port}"

    def admin(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(
            host=HOST, port=node.port, password=ADMIN_PASSWORD, decode_responses=True
        )

    def lock_default_user(self) -> None:
        """Clients with no credentials are refused from now on (cluster gossip needs none)."""
        for node in self.nodes:
            with node.client() as client:
                client.acl_setuser(
                    "default", enabled=True, reset_passwords=True, passwords=[f"+{ADMIN_PASSWORD}"]
                )

    def reset(self) -> None:
        """An empty keyspace and an empty ACL LOG."""
        for node in self.nodes:
            with self.admin(node) as admin:
                admin.flushall()
                admin.acl_log_reset()

    def refused(self) -> list[tuple[str, str]]:
        """(user, command or key) of every ACL LOG entry, ACL LOG then reset."""
        found: list[tuple[str, str]] = []
        for node in self.nodes:
            with self.admin(node) as admin:
                entries: list[dict[str, Any]] = admin.acl_log()
                admin.acl_log_reset()
            found += [(str(e["username"]), str(e["object"])) for e in entries]
        return [(user, what) for user, what in found if what not in _OPTIONAL]


@pytest.fixture(scope="module")
def acl_single() -> Iterator[Deployment]:
    with RedisServer(name="redis-acl", extra_args=_users_args()) as server:
        deployment = Deployment([server])
        deployment.lock_default_user()
        yield deployment


@pytest.fixture(scope="module")
def acl_cluster() -> Iterator[Deployment]:
    with RedisCluster(extra_args=_users_args()) as cluster:
        deployment = Deployment(cluster.nodes)
        deployment.lock_default_user()
        yield deployment


@pytest.fixture(params=["single", "cluster"])
def acl_redis(request: pytest.FixtureRequest) -> Deployment:
    deployment: Deployment = request.getfixturevalue(f"acl_{request.param}")
    deployment.reset()
    return deployment


async def _dispatch_runs_and_ends(api_redis: str, scheduler_redis: str, agent_redis: str) -> None:
    """One dispatch through the real API node, scheduler and agent server, each with its
    own Redis URL; returns once the job has ended successfully on that server."""
    ran = asyncio.Event()

    async def entry(ctx: JobContext) -> None:
        ran.set()

    scheduler = await start_scheduler(scheduler_redis, "acl-s")
    node = await start_api(api_redis)
    agent = await start_agent(agent_redis, AGENT, entry)
    lk = api.LiveKitAPI(api_url(node), API_KEY, API_SECRET)
    try:
        await eventually(lambda: len(scheduler.loops) == 64, what="ownership")
        request = api.CreateAgentDispatchRequest(agent_name=AGENT, room="acl-room")
        await lk.agent_dispatch.create_dispatch(request)

        async def ended() -> bool:
            dispatches = await lk.agent_dispatch.list_dispatch(room_name="acl-room")
            jobs = dispatches[0].state.jobs
            return bool(jobs) and jobs[-1].state.status == api.JobStatus.JS_SUCCESS

        await eventually(ended, what="the job to end")
        assert ran.is_set()
        dispatches = await lk.agent_dispatch.list_dispatch(room_name="acl-room")
        assert dispatches[0].state.jobs[-1].state.worker_id == agent.id
    finally:
        await lk.aclose()
        await node.aclose()
        await agent.aclose()
        await scheduler.aclose()


async def test_a_dispatch_runs_and_ends_with_every_process_as_the_dispatcher_user(
    acl_redis: Deployment,
) -> None:
    url = acl_redis.url()
    await _dispatch_runs_and_ends(url, url, url)
    assert acl_redis.refused() == []  # not even a call whose failure is handled


async def test_a_dispatch_runs_and_ends_with_each_role_as_its_own_user(
    acl_single: Deployment,
) -> None:
    acl_single.reset()
    await _dispatch_runs_and_ends(
        acl_single.url("dsp-api"), acl_single.url("dsp-scheduler"), acl_single.url("dsp-agent")
    )
    assert acl_single.refused() == []


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "*"),
        ("KEYS", "*"),
        ("CLIENT", "LIST"),
        ("INFO",),
        ("ACL", "SETUSER", "dispatcher", "+@all"),
        ("SCRIPT", "FLUSH"),
        ("SET", "not-ours", "1"),
    ],
)
async def test_the_dispatcher_user_is_refused_what_it_does_not_need(
    acl_single: Deployment, command: tuple[str, ...]
) -> None:
    lane = FastLane(acl_single.url(), cluster=False)
    try:
        with pytest.raises(ResponseError, match=r"^NOPERM"):
            await lane.execute(*command)
    finally:
        await lane.aclose()
    assert [user for user, _ in acl_single.refused()] == ["dispatcher"]  # and logged


async def test_a_script_is_held_to_the_rule_of_the_user_that_runs_it(
    acl_single: Deployment,
) -> None:
    client = await connect(acl_single.url())
    try:
        for body in ("return redis.call('FLUSHALL')", "return redis.call('GET', 'not-ours')"):
            sha = await client.fast.execute("SCRIPT", "LOAD", body)
            with pytest.raises(ResponseError, match=SCRIPT_REFUSED):
                await client.fast.evalsha(sha.decode(), [], [])
    finally:
        await client.aclose()


async def test_an_agent_server_user_cannot_touch_a_partition_beyond_its_stream(
    acl_single: Deployment,
) -> None:
    partition = keys.partition_keys(0)
    lane = FastLane(acl_single.url("dsp-agent"), cluster=False)
    try:
        for command in (("SET", partition.lease, "me/1"), ("HGETALL", partition.active)):
            with pytest.raises(ResponseError, match=r"^NOPERM"):
                await lane.execute(*command)
    finally:
        await lane.aclose()


async def test_without_credentials_redis_answers_nothing(acl_single: Deployment) -> None:
    lane = FastLane(f"redis://{HOST}:{acl_single.nodes[0].port}", cluster=False)
    try:
        with pytest.raises(ResponseError, match=r"^NOAUTH"):
            await lane.execute("PING")
    finally:
        await lane.aclose()


async def test_status_reads_a_deployment_as_the_dispatcher_user(acl_redis: Deployment) -> None:
    scheduler = await start_scheduler(acl_redis.url(), "acl-status")
    client = await connect(acl_redis.url())
    try:
        snapshot = await collect(client)
        assert [f.node_id for f in snapshot.figures] == ["acl-status"]
        assert all(p.owner == "acl-status" for p in snapshot.partitions)
    finally:
        await client.aclose()
        await scheduler.drain()
        await scheduler.aclose()
    assert acl_redis.refused() == []
