"""The harness: a real redis-server, the node talking to it, one keep-alive connection,
the seeded snapshot every example starts from, and ``exchange`` (send one request, collect
what the oracle needs)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.client import Connection, Reply
from tests.fuzz.jsonbodies import dumps
from tests.fuzz.node import LogCapture, NodeThread
from tests.fuzz.oracle import Exchange
from tests.fuzz.requests import FuzzRequest
from tests.fuzz.routes import Route, requests
from tests.fuzz.seed import Known, seed
from tests.fuzz.state import Dataset
from tests.fuzz.tokens import mint


class Harness:
    def __init__(self, redis_url: str, logs: LogCapture) -> None:
        self.node = NodeThread(redis_url)
        self.dataset = Dataset(redis_url)
        self.logs = logs
        self.known: Known | None = None
        self._conn: Connection | None = None
        self._strategies: dict[str, st.SearchStrategy[FuzzRequest]] = {}
        self._listings: list[str] = []  # the seeded state's

    def start(self) -> None:
        self.node.start()
        self._conn = Connection(self.node.port)
        self.known = seed(self._conn)
        self.dataset.take_snapshot()
        self._listings, failed = self.listings()
        assert not failed, f"the seeded state cannot be listed: {failed}"
        self.logs.take()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self.node.stop()
        self.dataset.close()

    def requests(self, route: Route) -> st.SearchStrategy[FuzzRequest]:
        if route.name not in self._strategies:
            assert self.known is not None
            self._strategies[route.name] = requests(route, self.known)
        return self._strategies[route.name]

    def exchange(self, route: Route, request: FuzzRequest) -> Exchange:
        """Restore the snapshot, send ``request``, and gather what came of it."""
        assert self._conn is not None
        self.dataset.restore()
        before = self.dataset.digest()
        late = self.logs.take()  # logged since the last answer: judged with this one
        reply: Reply | None = None
        error: Exception | None = None
        try:
            reply = self._conn.request(
                request.method, request.target, request.all_headers(), request.body
            )
        except Exception as exc:  # no answer (reset, closed, timed out): the oracle judges
            error = exc
        exchange = Exchange(
            request, reply, error, late + self.logs.take(), before, self.dataset.digest(),
            route.read_only, route.reply_type,
        )  # fmt: skip
        if exchange.digest_after != before and (exchange.refused or route.read_only):
            exchange.changes = self.dataset.changes()  # the oracle fails: say what changed
            exchange.listings = self._listing_changes()
        elif reply is not None and 200 <= reply.status < 300 and not route.read_only:
            exchange.unreadable = self.listings()[1]  # what it wrote must list
        exchange.listing_records = self.logs.take()  # logged by the listings themselves
        return exchange

    def listings(self) -> tuple[list[str], list[str]]:
        """(one line per room, dispatch and SIP rule; the listing calls that failed with a
        5xx), read with ListRooms, ListDispatch (every listed and seeded room) and
        ListSIPDispatchRule in JSON, the encoding whose replies can fail to serialise."""
        assert self.known is not None
        lines: list[str] = []
        failed: list[str] = []
        rooms = self._list("livekit.RoomService/ListRooms", {}, {"video": {"roomList": True}},
                           "rooms", lines, failed)  # fmt: skip
        for name in dict.fromkeys([*self.known.rooms, *(r.get("name", "") for r in rooms)]):
            grant = {"video": {"roomAdmin": True, "room": name}}
            self._list("livekit.AgentDispatchService/ListDispatch", {"room": name}, grant,
                       "agent_dispatches", lines, failed)  # fmt: skip
        self._list("livekit.SIP/ListSIPDispatchRule", {}, {"sip": {"admin": True}}, "items",
                   lines, failed)  # fmt: skip
        return lines, failed

    def _list(
        self, route: str, body: dict[str, Any], claims: dict[str, Any], items: str,
        lines: list[str], failed: list[str],
    ) -> list[dict[str, Any]]:  # fmt: skip
        assert self._conn is not None
        headers = [
            ("Content-Type", "application/json"),
            ("Authorization", f"Bearer {mint(claims)}"),
        ]
        reply = self._conn.request("POST", f"/twirp/{route}", headers, dumps(body))
        if reply.status >= 500:  # a refusal (e.g. a listing over its size limit) is no harm
            failed.append(f"{route} {json.dumps(body)}: {reply!r}")
        if reply.status != 200:
            return []
        found: list[dict[str, Any]] = reply.json().get(items, [])
        lines += [f"{items} {json.dumps(item, sort_keys=True)[:500]}" for item in found]
        return found

    def _listing_changes(self) -> list[str]:
        now, failed = self.listings()
        gone = [f"- {line}" for line in self._listings if line not in now]
        return [*failed, *gone, *(f"+ {line}" for line in now if line not in self._listings)]
