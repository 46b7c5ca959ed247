"""A real headless Chromium driven over the Chrome DevTools Protocol (a WebSocket), for the
dashboard's tests: navigate, evaluate JavaScript in the page, take a screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from dispatcher.localredis import free_port


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise AssertionError("chromium not found: run scripts/setup.sh (apt package chromium)")
    return found


class Page:
    """One tab: commands go out with an id and the reply with that id is theirs."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self.errors: list[str] = []  # exceptions the page's scripts threw

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self._socket.recv())
            if message.get("method") == "Runtime.exceptionThrown":
                details = message["params"]["exceptionDetails"]
                self.errors.append(details.get("exception", {}).get("description") or str(details))
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'", f"{url} to load")

    async def wait_for(self, expression: str, what: str, timeout_s: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        shown = await self.evaluate("location.href + ': ' + document.body?.innerText")
        raise AssertionError(f"timed out waiting for {what}; the page shows {shown[:1500]!r}")

    async def screenshot(self, path: Path) -> None:
        reply = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(reply["data"]))


@asynccontextmanager
async def headless_page(profile: Path, width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
    """A fresh Chromium (its own profile, so no cookie is shared) with one blank tab."""
    port = free_port()
    process = subprocess.Popen(
        [
            chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--disable-extensions", "--disable-background-networking",
            "--disable-dev-shm-usage",  # containers often have a small /dev/shm
            f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
            f"--window-size={width},{height}", "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        target = await asyncio.to_thread(_page_target, port)
        async with connect(target, max_size=None) as socket:
            page = Page(socket)
            await page.call("Page.enable")
            await page.call("Runtime.enable")
            yield page
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _page_target(port: int, timeout_s: float = 30.0) -> str:
    """The blank tab's DevTools WebSocket, once the browser answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=1) as reply:
                for target in json.load(reply):
                    if target.get("type") == "page":
                        return str(target["webSocketDebuggerUrl"])
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"chromium's DevTools did not answer on port {port}")
