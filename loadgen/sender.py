"""The open-loop sender: dispatch i leaves at t0 + i/rate, whatever earlier replies do.

A closed loop (send, wait, send) slows down exactly when the server does and so hides the
latency it should measure. Here the schedule never waits on replies: each send hands its
request to ``HttpClient.send`` and its reply is tallied by a callback. In-flight requests
are capped only as a safety valve, and a send that would exceed the cap is counted as an
error ("client_overload") rather than delayed.

The sender shares a core with the system it measures, so each send does as little as it
can: requests, tokens included, are encoded before the schedule starts and only stamped
with their send time when they leave; there is no task, future or coroutine per request,
and the schedule is a chain of loop callbacks rather than a coroutine that sleeps.
"""

from __future__ import annotations

import asyncio
import math
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

import orjson
from google.protobuf.message import DecodeError
from livekit.protocol.agent_dispatch import AgentDispatch

from loadgen.httpclient import HttpClient, HttpError, HttpTimeout, Outcome
from loadgen.options import DispatchOptions
from loadgen.payload import (
    CREATE_PATH,
    STAMP_PLACEHOLDER_NS,
    authorization,
    encode_metadata,
    request_body,
    room_name,
    split_at_stamp,
    stamp,
)
from loadgen.progress import Progress

REQUEST_TIMEOUT_S = 10.0
OK = "ok"
_YIELD_EVERY = 64  # when behind schedule, still let replies be handled this often


def planned_count(rate: float, duration: float) -> int:
    """How many sends the schedule holds: one every 1/rate seconds for ``duration``."""
    return max(0, math.ceil(rate * duration - 1e-9))


def send_time(t0: float, index: int, rate: float) -> float:
    """When send ``index`` is due: computed from t0, never from the previous send, so
    lateness of one send does not shift all later ones."""
    return t0 + index / rate


def classify(status: int, body: bytes) -> tuple[str, str | None]:
    """(code, dispatch id): "ok" and the new dispatch's id, else the Twirp error code."""
    if status == 200:
        dispatch = AgentDispatch()
        try:
            dispatch.ParseFromString(body)
        except DecodeError:
            return "bad_response", None
        return OK, str(dispatch.id)
    try:
        code = orjson.loads(body).get("code")
    except (orjson.JSONDecodeError, AttributeError):
        code = None
    return (code if isinstance(code, str) and code else f"http_{status}"), None


def failure_code(error: HttpError) -> str:
    """The code of a request that got no HTTP response."""
    return "timeout" if isinstance(error, HttpTimeout) else "connection_error"


@dataclass
class SendStats:
    """What the sender saw; plain data so the report can be built and tested without I/O."""

    planned: int
    attempted: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    accepted_ids: list[str] = field(default_factory=list)
    response_ns: list[int] = field(default_factory=list)
    lag_ns: list[int] = field(default_factory=list)
    first_send: float = 0.0
    last_send: float = 0.0
    cpu_s: float = 0.0

    def send_rate(self) -> float:
        """Achieved rate between the first and the last send."""
        span = self.last_send - self.first_send
        return (self.attempted - 1) / span if self.attempted > 1 and span > 0 else 0.0


class Sender(ABC):
    """The schedule: send ``i`` is started (``_send``) at t0 + i/rate; a subclass says what
    a send is and calls ``_finished`` once it is over. Must be created in the event loop."""

    def __init__(
        self, client: HttpClient, options: DispatchOptions, progress: Progress | None = None
    ) -> None:
        self._client = client
        self._options = options
        self._rate = options.rate
        self._progress = progress or Progress(options.rate)
        self._loop = asyncio.get_running_loop()
        self._over: asyncio.Future[None] = self._loop.create_future()
        self._t0 = 0.0
        self._next = 0  # the next send of the schedule
        self._in_flight = 0
        self.stats = SendStats(planned=planned_count(options.rate, options.duration))

    async def run(self, t0: float | None = None) -> SendStats:
        """Send the whole schedule, then wait for the replies still outstanding.

        ``t0``: when the first send is due (``time.perf_counter``); default 50 ms from now."""
        self._t0 = time.perf_counter() + 0.05 if t0 is None else t0
        self.stats.first_send = self._t0
        self._pace()
        await self._over
        return self.stats

    @abstractmethod
    def _send(self, index: int) -> None:
        """Start send ``index``; call ``_finished`` once it is over."""

    def _finished(self) -> None:
        """A send is over: answered, failed or timed out."""
        self._in_flight -= 1
        self._end_if_over()

    def _end_if_over(self) -> None:
        """The run is over once the schedule is sent and no send is still in flight."""
        if not self._in_flight and self._next == self.stats.planned and not self._over.done():
            self._over.set_result(None)

    # the schedule: a chain of loop callbacks, each sending whatever is due

    def _pace(self) -> None:
        """Send every send already due, then have the loop call back when the next one is
        (or, behind schedule, after handling what came in, every ``_YIELD_EVERY`` sends)."""
        while self._next < self.stats.planned:
            delay = send_time(self._t0, self._next, self._rate) - time.perf_counter()
            if delay > 0:
                self._loop.call_later(delay, self._resume)
                return
            if self._next % _YIELD_EVERY == 0:
                self._loop.call_soon(self._resume)
                return
            self._send_next()
        self._end_if_over()

    def _resume(self) -> None:
        """The wait is over: send the one waited for (uvloop's timers have a resolution of
        1 ms, so it may be a little early or late), then go on."""
        if self._over.done():  # the run failed or was cancelled: send no more
            return
        try:
            self._send_next()
            self._pace()
        except Exception as exc:
            if not self._over.done():
                self._over.set_exception(exc)

    def _send_next(self) -> None:
        index, stats = self._next, self.stats
        self._next = index + 1
        now = time.perf_counter()
        stats.lag_ns.append(int((now - send_time(self._t0, index, self._rate)) * 1e9))
        stats.last_send = now
        stats.attempted += 1
        self._progress.sent()
        if self._in_flight >= self._options.max_in_flight:
            stats.codes["client_overload"] += 1
            self._progress.error("client_overload")
            return
        self._in_flight += 1
        self._send(index)


@dataclass(frozen=True, slots=True)
class DispatchRequests:
    """The CreateDispatch requests of a schedule, encoded but for their send time: request
    ``i`` is ``heads[i]``, the send time's digits, then ``tail``."""

    heads: list[bytes]
    tail: bytes

    def stamped(self, index: int, sent_ns: int) -> bytes:
        return b"".join((self.heads[index], stamp(sent_ns), self.tail))


def prepare_dispatches(
    client: HttpClient, options: DispatchOptions, prefix: str
) -> DispatchRequests:
    """Every request of the schedule, each with its own room and token; a token is issued
    for when its dispatch is due, as if minted as it left."""
    start = time.time()
    heads: list[bytes] = []
    tail = b""
    for index in range(planned_count(options.rate, options.duration)):
        room = room_name(prefix, index)
        parts = dispatch_parts(
            options, room, STAMP_PLACEHOLDER_NS, issued_at=start + index / options.rate
        )
        # what follows the stamp (the end of the metadata) is the same for all
        head, tail = split_at_stamp(client.prepare(CREATE_PATH, *parts))
        heads.append(head)
    return DispatchRequests(heads, tail)


class DispatchSender(Sender):
    """Sends one prepared CreateDispatch per send and tallies the replies."""

    def __init__(
        self,
        client: HttpClient,
        options: DispatchOptions,
        requests: DispatchRequests,
        progress: Progress | None = None,
    ) -> None:
        super().__init__(client, options, progress)
        if len(requests.heads) != self.stats.planned:
            raise ValueError("one request per send of the schedule")
        self._requests = requests

    def _send(self, index: int) -> None:
        sent_ns = time.time_ns()  # just before the request is built, as the metadata says
        started = time.perf_counter_ns()
        request = self._requests.stamped(index, sent_ns)
        self._client.send(request, partial(self._answered, started))

    def _answered(self, started: int, outcome: Outcome) -> None:
        try:
            if isinstance(outcome, HttpError):
                self._count(failure_code(outcome), None)
            else:
                self._count(*classify(*outcome))
                self.stats.response_ns.append(time.perf_counter_ns() - started)
        finally:
            self._finished()

    def _count(self, code: str, dispatch_id: str | None) -> None:
        self.stats.codes[code] += 1
        if code == OK:
            self._progress.accepted()
        else:
            self._progress.error(code)
        if dispatch_id is not None:
            self.stats.accepted_ids.append(dispatch_id)


@dataclass(frozen=True, slots=True)
class Reply:
    code: str
    dispatch_id: str | None = None
    elapsed_ns: int | None = None  # None when no HTTP response came back


def dispatch_parts(
    options: DispatchOptions, room: str, sent_ns: int, *, issued_at: float | None = None
) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """Body and headers of one CreateDispatch, its token issued at ``issued_at`` (default
    now)."""
    body = request_body(options.agent_name, room, encode_metadata(sent_ns))
    token = authorization(options.api_key, options.api_secret, room, now=issued_at)
    return body, (("Authorization", token), ("Content-Type", "application/protobuf"))


async def post_dispatch(client: HttpClient, options: DispatchOptions, room: str) -> Reply:
    """One CreateDispatch call on its own; the send time goes into the metadata just before."""
    sent_ns = time.time_ns()
    started = time.perf_counter_ns()
    body, headers = dispatch_parts(options, room, sent_ns)
    try:
        status, payload = await client.post(CREATE_PATH, body, headers)
    except HttpError as exc:
        return Reply(failure_code(exc))
    code, dispatch_id = classify(status, payload)
    return Reply(code, dispatch_id, time.perf_counter_ns() - started)


def http_client(options: DispatchOptions) -> HttpClient:
    """Keep-alive connections to the API node, reused as a real API client would."""
    return HttpClient(options.url, max_connections=options.connections, timeout_s=REQUEST_TIMEOUT_S)


async def send_all(
    client: HttpClient,
    options: DispatchOptions,
    requests: DispatchRequests,
    progress: Progress | None = None,
) -> SendStats:
    """Run the schedule; CPU time covers sending and reply handling only."""
    sender = DispatchSender(client, options, requests, progress)
    cpu_before = time.process_time()
    stats = await sender.run()
    stats.cpu_s = time.process_time() - cpu_before
    return stats
