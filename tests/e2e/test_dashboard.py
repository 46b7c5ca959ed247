"""The dashboard in a real headless Chromium: sign in, watch a dispatch made during the test
appear, and keep a screenshot."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from livekit import api

from dispatcher.api.app import ApiNode
from tests.e2e.browser import Page, headless_page
from tests.redis_servers import RedisTarget
from tests.stack import (
    API_KEY,
    API_SECRET,
    api_url,
    start_agent,
    start_api,
    start_scheduler,
)
from workers import JobContext

# Set to a path to keep the screenshot there too (docs/img/dashboard.png is made so).
SCREENSHOT_COPY = os.environ.get("DASHBOARD_SCREENSHOT", "")


@asynccontextmanager
async def deployment(url: str, release: asyncio.Event) -> AsyncIterator[ApiNode]:
    """Two schedulers, an API node, a pool whose jobs run until ``release`` and one whose
    jobs fail."""

    async def hold(ctx: JobContext) -> None:
        await release.wait()

    async def fail(ctx: JobContext) -> None:
        raise RuntimeError("model endpoint unreachable")

    async with AsyncExitStack() as stack:
        for name in ("sched-a", "sched-b"):
            scheduler = await start_scheduler(url, name, partitions=16)
            stack.push_async_callback(scheduler.aclose)
            stack.push_async_callback(scheduler.drain)
        node = await start_api(url, partitions=16)
        stack.push_async_callback(node.aclose)
        for agent_name, entry, capacity in (("support-agent", hold, 4), ("flaky-agent", fail, 2)):
            for _ in range(2):
                server = await start_agent(url, agent_name, entry, capacity=capacity)
                stack.push_async_callback(server.aclose)
        stack.callback(release.set)
        yield node


async def dispatch(lk: api.LiveKitAPI, agent_name: str, room: str) -> None:
    request = api.CreateAgentDispatchRequest(agent_name=agent_name, room=room)
    await lk.agent_dispatch.create_dispatch(request)


async def sign_in(page: Page, base: str, secret: str) -> None:
    await page.goto(f"{base}/dashboard")
    await page.wait_for("!!document.getElementById('secret')", "the sign-in form")
    await page.evaluate(
        f"document.getElementById('key').value = {API_KEY!r};"
        f"document.getElementById('secret').value = {secret!r};"
        "document.getElementById('sign-in').click(); true"
    )
    await page.wait_for("document.readyState === 'complete' && !!document.body", "the reply")


async def number(page: Page, element_id: str) -> int:
    return int(await page.evaluate(f"document.getElementById({element_id!r}).textContent") or 0)


async def test_the_dashboard_shows_a_dispatch_made_while_it_is_open(
    redis_single_target: RedisTarget, tmp_path: Path
) -> None:
    release = asyncio.Event()
    async with deployment(redis_single_target.url, release) as node:
        base = api_url(node)
        lk = api.LiveKitAPI(base, API_KEY, API_SECRET)
        try:
            for n in range(3):
                await dispatch(lk, "support-agent", f"support-{n}")
            await dispatch(lk, "flaky-agent", "flaky-room")
            await dispatch(lk, "billing-agent", "no-server-room")  # no server: it waits
            async with headless_page(tmp_path / "profile") as page:
                await sign_in(page, base, "not-the-secret")
                await page.wait_for(
                    "document.querySelector('.error')?.textContent.includes('Wrong')",
                    "the form to say the secret was wrong",
                )
                await sign_in(page, base, API_SECRET)
                await page.wait_for(
                    "+document.getElementById('created-total')?.textContent >= 1"
                    " && document.querySelectorAll('.pool').length === 2",
                    "the dashboard's first snapshot",
                )
                before = await number(page, "created-total")
                await dispatch(lk, "support-agent", "made-during-the-test")
                await page.wait_for(
                    f"+document.getElementById('created-total').textContent > {before}"
                    " && document.getElementById('running').textContent === '4'",
                    "the new dispatch to show (created and running)",
                )
                fill = await page.evaluate(
                    "[...document.querySelectorAll('.pool-fill')].map(e => e.textContent)"
                )
                assert "4 / 8 slots" in fill  # the pool's servers, as they really are
                await page.wait_for(
                    "document.querySelector('#failures tbody')?.textContent"
                    ".includes('model endpoint unreachable')",
                    "the failed job in recent failures",
                )
                for n in range(3):  # a few more seconds of history for the charts
                    await dispatch(lk, "support-agent", f"later-{n}")
                    await page.wait_for(
                        "document.querySelector('#rate-chart polyline')"
                        f"?.getAttribute('points').split(' ').length > {2 * n + 1}",
                        "the rate chart to grow",
                    )
                shot = tmp_path / "dashboard.png"
                await page.screenshot(shot)
                assert page.errors == []
        finally:
            await lk.aclose()
    assert shot.read_bytes().startswith(b"\x89PNG")
    if SCREENSHOT_COPY:
        shutil.copy(shot, SCREENSHOT_COPY)
