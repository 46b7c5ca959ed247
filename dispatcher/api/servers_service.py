"""``dispatcher.AgentServers`` (ours, beyond LiveKit): an operator lists the agent servers
of every pool and drains one. JSON in, JSON out (camelCase); errors are Twirp errors.

Both calls need an operator's token (``Authorizer.operator``: ``roomAdmin`` and
``roomList`` for no room). Servers are read from their pool shards as they heartbeat
them, so SDK servers and LiveKit workers attached through an API node's ``/agent`` are
listed and drained alike.

* ``ListServers {agentName?, status?, labels?}``: the live servers (heartbeat not
  expired), filtered by agent name, status (``available``, ``full``, ``draining``) and
  labels (every one given must match), sorted by agent name and id.
* ``DrainServer {id}``: from this call on placement skips the server (``drain_server.lua``
  marks it in its shard, which ``reserve.lua`` checks), and the server learns it from its
  inbox: it takes no new job and lets its running ones finish. ``not_found`` for an id no
  pool knows.
"""

from __future__ import annotations

from typing import Any

import msgspec

from dispatcher import targets
from dispatcher.api.access import Authorizer
from dispatcher.api.http import Request, Response
from dispatcher.api.twirp import TwirpError, TwirpService, check_json_depth, request_body
from dispatcher.api.validation import require
from dispatcher.errors import InvalidArgument, NotFound
from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import Client
from dispatcher.wire import (
    Drain,
    JobType,
    ServerInfo,
    ServerStatus,
    pool_agent,
    server_info_decoder,
)

SERVICE = "dispatcher.AgentServers"
STATUSES = ("available", "full", "draining")
_MAX_BODY = 64 * 1024


class ListServersRequest(msgspec.Struct, kw_only=True, rename="camel"):
    agent_name: str | None = None  # None: every agent ("" is the automatic agent)
    status: str = ""
    labels: dict[str, str] = {}


class DrainServerRequest(msgspec.Struct, kw_only=True, rename="camel"):
    id: str = ""


class ServerEntry(msgspec.Struct, kw_only=True, rename="camel"):
    id: str
    agent_name: str
    job_type: str  # room, publisher, participant
    version: str
    labels: dict[str, str]
    capacity: int
    used: int  # slots of jobs running (reservations the server confirmed)
    reserved: int  # slots held, confirmed or not
    load: float
    status: str  # available, full, draining
    drained: bool  # by an operator (DrainServer)
    last_heartbeat_at: int  # unix ns, on Redis's clock
    host: str
    pid: int


class ListServersReply(msgspec.Struct, rename="camel"):
    servers: list[ServerEntry]


class DrainServerReply(msgspec.Struct, rename="camel"):
    server: ServerEntry | None  # None when it left between the drain and the listing


_json = msgspec.json.Encoder()
_list_decoder = msgspec.json.Decoder(ListServersRequest)
_drain_decoder = msgspec.json.Decoder(DrainServerRequest)


class ServersService:
    def __init__(self, client: Client, authorizer: Authorizer, pool_shards: int) -> None:
        self._client = client
        self._auth = authorizer
        self._shards = pool_shards

    def twirp(self) -> TwirpService:
        service = TwirpService(SERVICE)
        service.add_raw("ListServers", self.list_servers)
        service.add_raw("DrainServer", self.drain_server)
        return service

    async def list_servers(self, _: None, request: Request) -> Response:
        self._auth.operator(request)
        req = _read(request, _list_decoder)
        if req.status not in ("", *STATUSES):
            raise InvalidArgument(f"status {req.status!r} is not one of {', '.join(STATUSES)}")
        if problem := targets.labels_problem(req.labels):
            raise InvalidArgument(problem)
        pools = [p for p in await self._pools() if _agent_matches(p, req.agent_name)]
        servers = [s for s in await self._servers(pools) if _matches(s, req)]
        servers.sort(key=lambda s: (s.agent_name, s.job_type, s.id))
        return _reply(ListServersReply(servers=servers))

    async def drain_server(self, _: None, request: Request) -> Response:
        self._auth.operator(request)
        server_id = _read(request, _drain_decoder).id
        require(server_id, "id")
        pools = await self._pools()
        message = Drain(reason="drained by an operator")
        batch = scripts.Batch()
        for pool in pools:
            shard = keys.server_shard(pool, server_id, self._shards)
            batch.script(scripts.drain_server, *calls.drain_server(shard, server_id, message))
        drained = [
            p for p, found in zip(pools, await batch.run(self._client), strict=True) if found
        ]
        if not drained:
            raise NotFound(f"no agent server {server_id!r} (it left, or never was)")
        listed = [s for s in await self._servers(drained) if s.id == server_id]
        return _reply(DrainServerReply(server=listed[0] if listed else None))

    async def _pools(self) -> list[str]:
        members: list[bytes] = await self._client.fast.execute("SMEMBERS", keys.POOLS)
        return sorted(m.decode() for m in members)

    async def _servers(self, pools: list[str]) -> list[ServerEntry]:
        """Every live server of these pools: one ``list_servers.lua`` call per shard."""
        batch = scripts.Batch()
        shards = [
            keys.shard_keys(pool, k, self._shards) for pool in pools for k in range(self._shards)
        ]
        for shard in shards:
            batch.script(scripts.list_servers, *calls.list_servers(shard))
        servers = []
        for shard, (_, rows) in zip(shards, await batch.run(self._client), strict=True):
            servers += [_entry(shard.pool, rows[i : i + 10]) for i in range(0, len(rows), 10)]
        return servers


def _read(request: Request, decoder: msgspec.json.Decoder[Any]) -> Any:
    body = request_body(request, _MAX_BODY)
    check_json_depth(body, "request")
    try:
        return decoder.decode(body if body.strip() else b"{}")
    except msgspec.DecodeError as exc:  # ValidationError included
        raise TwirpError.malformed(f"the request could not be decoded: {exc}") from None


def _reply(body: msgspec.Struct) -> Response:
    return Response(200, _json.encode(body), "application/json")


def _agent_matches(pool: str, agent_name: str | None) -> bool:
    return agent_name is None or pool_agent(pool) == agent_name


def _matches(server: ServerEntry, req: ListServersRequest) -> bool:
    if req.status and server.status != req.status:
        return False
    return all(server.labels.get(k) == v for k, v in req.labels.items())


def _entry(pool: str, row: list[Any]) -> ServerEntry:
    """One row of ``list_servers.lua``: id, expiry, cap, load, status, drain, ttl, info,
    reserved, running."""
    server_id = row[0].decode()
    expiry, cap, load, status, drain, ttl, raw_info = row[1:8]
    reserved, running = int(row[8]), int(row[9])
    try:
        info = server_info_decoder.decode(raw_info)
    except msgspec.DecodeError:  # written by something other than the SDK: what is known
        info = ServerInfo(id=server_id, agent_name=pool_agent(pool))
    capacity = int(cap or 0)
    drained = bool(drain)
    if drained or int(status or 0) == ServerStatus.DRAINING:
        state = "draining"
    elif reserved >= capacity or int(status or 0) == ServerStatus.FULL:
        state = "full"
    else:
        state = "available"
    return ServerEntry(
        id=server_id,
        agent_name=info.agent_name,
        job_type=_job_type(info.job_type),
        version=info.version,
        labels=info.labels,
        capacity=capacity,
        used=running,
        reserved=reserved,
        load=float(load or 0),
        status=state,
        drained=drained,
        last_heartbeat_at=(int(float(expiry)) - int(ttl or 0)) * 1_000_000,
        host=info.host,
        pid=info.pid,
    )


def _job_type(number: int) -> str:
    try:
        return JobType(number).name.lower()
    except ValueError:
        return str(number)
