"""What every answer must satisfy, whatever was sent:

(a) never a 5xx, except a clean Twirp ``unavailable``; every non-2xx answer is a Twirp
    error: ``Content-Type: application/json``, an object with string ``code`` and ``msg``,
    a known code whose status is the one the answer has;
(b) nothing logged at ERROR or above, and no traceback at any level: a client mistake is
    not a bug of the node;
(c) a refused request changes nothing in Redis (whole-dataset digest, and the listings);
    a read-only call changes nothing even when it succeeds;
(d) a token the node must refuse never gets a 2xx;
(e) a 2xx answer decodes as the call's reply message in the encoding asked for;
(f) after an accepted write, ListRooms, ListDispatch and ListSIPDispatchRule still answer
    (in JSON): nothing accepted may poison later reads.

Each violation raises an ``OracleFailure`` subclass named after what went wrong and where
(the logged exception's type and innermost frame of ours), so Hypothesis shrinks and
reports each distinct failure separately instead of stopping at the first.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from dispatcher.api.twirp import STATUS_BY_CODE
from tests.fuzz.client import Reply
from tests.fuzz.requests import FuzzRequest
from tests.fuzz.tokens import describe


class OracleFailure(AssertionError):
    """The node answered a request in a way it must not."""


_FAILURE_TYPES: dict[str, type[OracleFailure]] = {}


def fail(signature: str, message: str) -> NoReturn:
    """Raise the failure class of ``signature`` (one class per distinct signature)."""
    cls = _FAILURE_TYPES.get(signature)
    if cls is None:
        cls = type(f"OracleFailure[{signature}]", (OracleFailure,), {})
        _FAILURE_TYPES[signature] = cls
    raise cls(message)


@dataclass
class Exchange:
    """One request with what came of it."""

    request: FuzzRequest
    reply: Reply | None
    error: BaseException | None  # the connection failed: no reply at all
    records: list[logging.LogRecord]
    digest_before: str
    digest_after: str
    read_only: bool
    reply_type: type[Message] | None
    changes: list[str] = field(default_factory=list)  # keys, when the digest moved
    listings: list[str] = field(default_factory=list)  # listing lines that differ
    unreadable: list[str] = field(default_factory=list)  # listings failing after a write
    listing_records: list[logging.LogRecord] = field(default_factory=list)  # logged by those

    def outcome(self) -> str:
        """``200`` or ``<status> <code>``, for statistics."""
        if self.reply is None:
            return "no answer"
        if 200 <= self.reply.status < 300:
            return str(self.reply.status)
        return f"{self.reply.status} {_code(self.reply)}"

    @property
    def refused(self) -> bool:
        return self.reply is not None and not 200 <= self.reply.status < 300


def check(exchange: Exchange) -> None:
    _check_answered(exchange)
    _check_logs(exchange)
    reply = exchange.reply
    assert reply is not None
    if not 200 <= reply.status < 300:
        _check_twirp_error(exchange, reply)
    elif exchange.request.credentials.must_reject:
        fail(f"token accepted ({exchange.request.credentials.mode})", _report(exchange))
    _check_dataset(exchange)
    if 200 <= reply.status < 300:
        _check_reply_body(exchange, reply)
    if exchange.unreadable:
        route = exchange.unreadable[0].split(" ", 1)[0]
        fail(f"accepted write breaks {route}", _report(exchange))


def _check_answered(exchange: Exchange) -> None:
    if exchange.reply is None:
        fail(f"no answer ({type(exchange.error).__name__})", _report(exchange))


def _check_logs(exchange: Exchange) -> None:
    for record in exchange.records:
        if record.exc_info and record.exc_info[1] is not None:
            fail(f"logged {_origin(record.exc_info[1])}", _report(exchange))
    for record in exchange.records:
        if record.levelno >= logging.ERROR:
            fail(f"logged ERROR {record.name}: {record.msg}", _report(exchange))


def _origin(exc: BaseException) -> str:
    """``Type at dir/file.py:line`` of the innermost frame in our code, else the innermost."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/dispatcher/" in f.filename] or frames
    if not ours:
        return type(exc).__name__
    path = "/".join(Path(ours[-1].filename).parts[-2:])
    return f"{type(exc).__name__} at {path}:{ours[-1].lineno}"


def _check_twirp_error(exchange: Exchange, reply: Reply) -> None:
    problem = _twirp_problem(reply, head_only=exchange.request.method == "HEAD")
    if problem is not None:
        fail(f"not a Twirp error: {problem} (HTTP {reply.status})", _report(exchange))
    code = reply.json()["code"] if reply.body else "?"
    if reply.status >= 500 and code != "unavailable":
        fail(f"HTTP {reply.status} {code}", _report(exchange))


def _twirp_problem(reply: Reply, *, head_only: bool) -> str | None:
    if reply.content_type != "application/json":
        return f"Content-Type {reply.content_type!r}"
    if head_only:  # the answer to HEAD has no body to judge
        return None
    try:
        body: Any = reply.json()
    except ValueError:
        return "body is not JSON"
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("code", "msg")):
        return "no string code and msg"
    if STATUS_BY_CODE.get(body["code"]) != reply.status:
        return f"code {body['code']!r} does not go with the status"
    return None


def _check_dataset(exchange: Exchange) -> None:
    if exchange.digest_before == exchange.digest_after:
        return
    if exchange.refused:
        code = _code(exchange.reply)
        fail(f"refused with {code} but changed Redis", _report(exchange))
    if exchange.read_only:
        fail("read-only call changed Redis", _report(exchange))


def _code(reply: Reply | None) -> str:
    try:
        return str(reply.json()["code"]) if reply is not None else "?"
    except (ValueError, KeyError, TypeError):
        return "?"


def _check_reply_body(exchange: Exchange, reply: Reply) -> None:
    reply_type = exchange.reply_type
    if reply_type is None or exchange.request.method == "HEAD":
        return
    try:
        if reply.content_type == "application/json":
            json_format.Parse(reply.body, reply_type(), ignore_unknown_fields=True)
        else:
            reply_type.FromString(reply.body)
    except (json_format.ParseError, DecodeError, ValueError) as exc:
        fail(f"2xx body does not decode ({type(exc).__name__})", _report(exchange))


def _report(exchange: Exchange) -> str:
    """Everything needed to reproduce and understand the failure, clipped to a readable size."""
    lines = [
        f"route: {exchange.request.route}",
        f"request: {exchange.request!r}",
        f"credentials: {describe(exchange.request.credentials)}",
        f"reply: {exchange.reply!r}" if exchange.reply else f"no reply: {exchange.error!r}",
    ]
    if exchange.changes:
        lines.append("Redis changed: " + "; ".join(exchange.changes[:20]))
        lines += ["listings:", *exchange.listings[:20]]
    if exchange.unreadable:
        lines += ["listings failing after the call:", *exchange.unreadable[:5]]
    for record in exchange.records + exchange.listing_records:
        text = f"log {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))[-4000:]
        lines.append(text[:6000])
    return "\n".join(lines)
