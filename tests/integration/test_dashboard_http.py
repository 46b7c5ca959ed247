"""The dashboard's sign-in and data routes at the HTTP level, against a real API node: wrong
credentials get the form again, data routes refuse a missing, tampered or expired cookie,
and every viewer of one node shares one snapshot a second."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from dispatcher.api.app import ApiNode
from dispatcher.api.dashboard import COOKIE, SESSION_S, Sessions
from dispatcher.store import keys
from tests.faultinject import Faults
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, api_url, start_api

DATA_ROUTES = ("/dashboard/snapshot", "/dashboard/events")


@pytest.fixture
async def node(redis_single_target: RedisTarget) -> AsyncIterator[ApiNode]:
    node = await start_api(redis_single_target.url)
    try:
        yield node
    finally:
        await node.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No cookie jar: each test says which cookie a request carries.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def sign_in(http: aiohttp.ClientSession, base: str, key: str, secret: str) -> tuple[int, str]:
    form = {"key": key, "secret": secret}
    async with http.post(f"{base}/dashboard/login", data=form, allow_redirects=False) as reply:
        return reply.status, reply.headers.get("Set-Cookie", "") or await reply.text()


async def status_of(http: aiohttp.ClientSession, url: str, cookie: str | None) -> int:
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
    async with http.get(url, headers=headers) as reply:
        return reply.status


@pytest.mark.parametrize(
    ("key", "secret"),
    [(API_KEY, "not-the-secret"), ("no-such-key", API_SECRET), ("", ""), (API_KEY, "")],
)
async def test_wrong_credentials_get_the_form_again_with_an_error(
    node: ApiNode, http: aiohttp.ClientSession, key: str, secret: str
) -> None:
    status, body = await sign_in(http, api_url(node), key, secret)
    assert status == 401
    assert "Wrong API key or secret." in body and 'name="secret"' in body


async def test_a_sign_in_sets_a_signed_session_cookie_the_data_routes_accept(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    base = api_url(node)
    status, set_cookie = await sign_in(http, base, API_KEY, API_SECRET)
    assert status == 303
    attributes = [a.strip() for a in set_cookie.split(";")]
    assert {"HttpOnly", "SameSite=Strict", "Path=/dashboard", f"Max-Age={SESSION_S}"} <= set(
        attributes
    )
    cookie = attributes[0].removeprefix(f"{COOKIE}=")
    async with http.get(f"{base}/dashboard/snapshot", headers=_cookie(cookie)) as reply:
        assert reply.status == 200
        assert (await reply.json())["snapshot"]["partitionCount"] == node.settings.partitions
    async with http.get(f"{base}/dashboard", headers=_cookie(cookie)) as reply:
        assert "dashboard.js" in await reply.text()


async def test_data_routes_refuse_a_request_without_a_cookie(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    for route in DATA_ROUTES:
        assert await status_of(http, api_url(node) + route, None) == 401
    async with http.get(f"{api_url(node)}/dashboard") as reply:
        page = await reply.text()
    assert 'name="secret"' in page and "dashboard.js" not in page  # the form, not the page


async def test_data_routes_refuse_a_tampered_or_expired_cookie(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    sessions = Sessions({API_KEY: API_SECRET})
    good = sessions.cookie_for(API_KEY, time.time())
    name, expiry, signature = good.split(".")
    other_key = Sessions({"other": API_SECRET}).cookie_for("other", time.time())
    forged = Sessions({API_KEY: "a-secret-the-node-does-not-have-000"})
    refused = {
        "signature changed": f"{name}.{expiry}.{signature[:-2]}AA",
        "expiry moved on": f"{name}.{int(expiry) + 3600}.{signature}",
        "signed with another secret": forged.cookie_for(API_KEY, time.time()),
        "a key the node does not know": other_key,
        "expired": sessions.cookie_for(API_KEY, time.time() - 2 * SESSION_S),
        "not a cookie of ours": "garbage",
        "empty": "",
    }
    for route in DATA_ROUTES:
        assert await status_of(http, api_url(node) + route, good) == 200, route
        for why, cookie in refused.items():
            assert await status_of(http, api_url(node) + route, cookie) == 401, (route, why)


async def test_viewers_of_one_node_share_its_snapshots(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    cookie = Sessions({API_KEY: API_SECRET}).cookie_for(API_KEY, time.time())
    url = f"{api_url(node)}/dashboard/events"
    async with (
        http.get(url, headers=_cookie(cookie)) as first,
        http.get(url, headers=_cookie(cookie)) as second,
    ):
        assert first.headers["Content-Type"] == "text/event-stream"
        seen = await asyncio.gather(_snapshot_times(first, 3), _snapshot_times(second, 3))
    assert set(seen[0]) & set(seen[1])  # the same snapshots reached both
    assert len(set(seen[0])) == 3  # a new one each time


async def _snapshot_times(reply: aiohttp.ClientResponse, count: int) -> list[int]:
    """The Redis time of the first ``count`` snapshot events of a stream."""
    times: list[int] = []
    event = ""
    async for raw in reply.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "snapshot":
            times.append(json.loads(line.removeprefix("data: "))["snapshot"]["atMs"])
            if len(times) == count:
                break
    return times


def _cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


async def test_a_stopping_node_ends_its_viewers_streams(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    cookie = Sessions({API_KEY: API_SECRET}).cookie_for(API_KEY, time.time())
    async with http.get(f"{api_url(node)}/dashboard/events", headers=_cookie(cookie)) as reply:
        assert len(await _snapshot_times(reply, 1)) == 1
        await node.feed.aclose()
        # The stream ends (the read returns) rather than hang until the browser leaves.
        await asyncio.wait_for(reply.content.read(), timeout=10)
        assert reply.content.at_eof()


async def test_viewers_beyond_the_nodes_limit_are_turned_away(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    node.feed.max_viewers = 1
    cookie = Sessions({API_KEY: API_SECRET}).cookie_for(API_KEY, time.time())
    url = f"{api_url(node)}/dashboard/events"
    async with http.get(url, headers=_cookie(cookie)) as first:
        assert first.status == 200
        assert len(await _snapshot_times(first, 1)) == 1
        assert await status_of(http, url, cookie) == 503


async def test_viewers_are_told_when_redis_cannot_be_read_and_see_it_again_after(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    cookie = Sessions({API_KEY: API_SECRET}).cookie_for(API_KEY, time.time())
    faults = Faults(node.client.fast)
    faults.fail_command("SMEMBERS", keys.POOLS)  # one read of every snapshot
    try:
        async with http.get(f"{api_url(node)}/dashboard/events", headers=_cookie(cookie)) as reply:
            messages = reply.content.__aiter__()
            assert await _next_message(messages) == {"error": "Redis is unavailable"}
            faults.clear()
            while "snapshot" not in (message := await _next_message(messages)):
                assert message == {"error": "Redis is unavailable"}
    finally:
        faults.clear()


async def _next_message(lines: AsyncIterator[bytes]) -> dict[str, object]:
    """The data of the stream's next snapshot event (the history event skipped)."""
    event = ""
    async for raw in lines:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "snapshot":
            parsed: dict[str, object] = json.loads(line.removeprefix("data: "))
            return parsed
    raise AssertionError("the stream ended")
