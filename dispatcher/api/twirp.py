"""A small Twirp server layer on the API node's HTTP server (wire contract §3).

One ``TwirpRouter`` owns the prefix ``/twirp/`` of an ``HttpApp`` and dispatches by dict
lookup to the ``TwirpService`` objects registered into it, so several services share one
app next to ordinary routes such as ``/healthz``::

    service = TwirpService("livekit.AgentDispatchService")
    service.add("CreateDispatch", CreateAgentDispatchRequest, create_dispatch)
    service.install(app)  # creates or reuses the app's router

Handlers are ``async (request_message, Request) -> response_message``; they raise the
domain errors of ``dispatcher.errors`` (``InvalidArgument``, ``NotFound``, ...) for expected
failures, which ``CODE_BY_ERROR`` turns into Twirp codes, or ``TwirpError`` for failures of
the Twirp protocol itself. Any other exception becomes ``internal`` (logged).
Requests are answered in the encoding they arrived in (protobuf or protojson).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from dispatcher.api.http import HttpApp, Request, Response
from dispatcher.api.nesting import MAX_DEPTH, too_deep
from dispatcher.errors import (
    Aborted,
    AuthError,
    DispatcherError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    StoreUnavailable,
    describe,
)
from dispatcher.store.client import is_unavailable

__all__ = [
    "CODE_BY_ERROR",
    "MAX_BODY_SIZE",
    "TWIRP_ROUTER",
    "TwirpError",
    "TwirpRouter",
    "TwirpService",
    "check_json_depth",
    "error_response",
    "message_response",
    "read_message",
    "request_body",
    "twirp_error",
]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

#: Default request body limit (the reference's ``limit.max_api_request_body_size`` is
#: 10 MiB; parsing a body of that size can hold the event loop for seconds).
MAX_BODY_SIZE = 1024 * 1024

PROTOBUF = "application/protobuf"
JSON = "application/json"

#: Twirp error code → HTTP status (wire contract §3.2).
STATUS_BY_CODE: dict[str, int] = {
    "invalid_argument": 400,
    "malformed": 400,
    "out_of_range": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "bad_route": 404,
    "canceled": 408,
    "deadline_exceeded": 408,
    "already_exists": 409,
    "aborted": 409,
    "failed_precondition": 412,
    "resource_exhausted": 429,
    "internal": 500,
    "unknown": 500,
    "dataloss": 500,
    "unimplemented": 501,
    "unavailable": 503,
}


#: Domain error → Twirp code: the one place the two meet. An error takes the code of the
#: first of its classes (in method resolution order) listed here.
CODE_BY_ERROR: dict[type[DispatcherError], str] = {
    InvalidArgument: "invalid_argument",
    NotFound: "not_found",
    FailedPrecondition: "failed_precondition",
    PermissionDenied: "permission_denied",
    ResourceExhausted: "resource_exhausted",
    Aborted: "aborted",
    AuthError: "unauthenticated",
}


class TwirpError(Exception):
    """A Twirp error: ``code`` from the Twirp table, ``msg`` for humans, optional ``meta``.

    Outside the ``DispatcherError`` hierarchy on purpose: it is the answer on the wire, not
    a cause; code below the Twirp layer raises domain errors and ``twirp_error`` maps them.
    """

    def __init__(self, code: str, msg: str, meta: dict[str, str] | None = None) -> None:
        status = STATUS_BY_CODE.get(code)
        if status is None:
            raise ValueError(f"unknown Twirp error code {code!r}")
        super().__init__(code, msg)
        self.code = code
        self.msg = msg
        self.meta: dict[str, str] = dict(meta) if meta else {}
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.msg}"

    @classmethod
    def invalid_argument(cls, msg: str) -> TwirpError:
        return cls("invalid_argument", msg)

    @classmethod
    def malformed(cls, msg: str) -> TwirpError:
        return cls("malformed", msg)

    @classmethod
    def not_found(cls, msg: str) -> TwirpError:
        return cls("not_found", msg)

    @classmethod
    def unauthenticated(cls, msg: str) -> TwirpError:
        return cls("unauthenticated", msg)

    @classmethod
    def permission_denied(cls, msg: str) -> TwirpError:
        return cls("permission_denied", msg)

    @classmethod
    def unavailable(cls, msg: str) -> TwirpError:
        return cls("unavailable", msg)

    @classmethod
    def internal(cls, msg: str) -> TwirpError:
        return cls("internal", msg)

    @classmethod
    def bad_route(cls, msg: str, method: str, path: str) -> TwirpError:
        return cls("bad_route", msg, {"twirp_invalid_route": f"{method} {path}"})


def twirp_error(exc: DispatcherError) -> TwirpError | None:
    """The answer for a domain error (its message as ``msg``), or None when it has no code
    of its own (``StoreUnavailable``, a bug)."""
    for cls in type(exc).__mro__:
        code = CODE_BY_ERROR.get(cls)
        if code is not None:
            return TwirpError(code, str(exc))
    return None


# -- responses ---------------------------------------------------------------------------


def error_response(err: TwirpError) -> Response:
    """The Twirp JSON error body, with ``Content-Type: application/json`` exactly."""
    body: dict[str, Any] = {"code": err.code, "msg": err.msg}
    if err.meta:
        body["meta"] = err.meta
    return _response(err.status, JSON, _dump_error(body))


def message_response(message: Message, is_json: bool) -> Response:
    """200 with ``message`` as protobuf bytes, or as reference-style protojson."""
    if not is_json:
        return _response(200, PROTOBUF, message.SerializeToString())
    # Same as MessageToJson(preserving_proto_field_name=True,
    # always_print_fields_with_no_presence=True) but compact, like the Go reference.
    as_dict = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return _response(200, JSON, _dump_json(as_dict))


def _response(status: int, content_type: str, body: bytes) -> Response:
    # Exactly "application/json", no "; charset=utf-8": Node's client compares it verbatim.
    return Response(status, body, content_type)


def _dump_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _dump_error(value: Any) -> bytes:
    # ASCII with escapes: a message may echo what the client sent, lone surrogates included,
    # which UTF-8 cannot carry.
    return json.dumps(value, separators=(",", ":")).encode()


def check_json_depth(body: bytes, what: str) -> None:
    """Refuse JSON nested deeper than any of our messages before a decoder recurses into it."""
    if too_deep(body):
        raise TwirpError.malformed(
            f"the {what} could not be decoded: nested more than {MAX_DEPTH} levels deep"
        )


# -- requests ----------------------------------------------------------------------------


def read_message(
    request: Request, message_type: type[M], *, max_body_size: int = MAX_BODY_SIZE
) -> tuple[M, bool]:
    """Decode the request body as ``message_type``; returns ``(message, is_json)``."""
    is_json = _is_json(request)
    body = request_body(request, max_body_size)
    message = message_type()
    if is_json:
        _parse_json(body, message)
    else:
        try:
            message.ParseFromString(body)  # an empty body is the all-default message
        except DecodeError as exc:
            raise TwirpError.malformed(f"the protobuf request could not be decoded: {exc}") from exc
    return message, is_json


def _is_json(request: Request) -> bool:
    raw = request.headers.get("Content-Type", "")
    media_type = raw.partition(";")[0].strip().lower()
    if media_type == PROTOBUF:
        return False
    if media_type == JSON:
        return True
    raise TwirpError.bad_route(
        f"unexpected Content-Type: {json.dumps(raw)}", request.method, request.path
    )


def request_body(request: Request, limit: int) -> bytes:
    """The body, or the Twirp error for one over ``limit`` (the server drops bodies over
    its own limit, which the router sets to the same value)."""
    if request.body_too_large or len(request.body) > limit:
        raise TwirpError.invalid_argument(f"request body exceeds {limit} bytes")
    return request.body


def _parse_json(body: bytes, message: Message) -> None:
    # json_format.Parse accepts any top-level JSON value ("[]" and '"x"' parse as an empty
    # message), so insist on an object first; this also rejects the empty body, as Go does.
    text = body.lstrip()
    if not text.startswith(b"{"):
        what = "not a JSON object" if text else "empty body"
        raise TwirpError.malformed(f"the json request could not be decoded: {what}")
    check_json_depth(body, "json request")
    try:
        value = json.loads(body, object_pairs_hook=_unique_keys)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise TwirpError.malformed(f"the json request could not be decoded: {exc}") from None
    # json_format converts each member in Python, some µs apiece: bound them before it does
    if (members := count_members(value)) > MAX_JSON_MEMBERS:
        raise TwirpError.invalid_argument(
            f"the json request has {members} members, more than {MAX_JSON_MEMBERS}"
        )
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
    except Exception as exc:  # as json_format.Parse: whatever the conversion raises (a lone
        # surrogate as an enum name raises SystemError from upb) means the input is bad
        raise TwirpError.malformed(f"the json request could not be decoded: {exc}") from exc


#: Object members and array items a JSON request may hold: 20,000 took json_format about
#: 80 ms to convert, and no request within the field limits needs more.
MAX_JSON_MEMBERS = 20_000


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):  # as json_format.Parse: a repeated key is an error
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key}")
            seen.add(key)
    return value


def count_members(value: Any) -> int:
    """Members of every object and items of every array in a decoded JSON value (its
    depth is already bounded)."""
    if isinstance(value, dict):
        return len(value) + sum(count_members(v) for v in value.values())
    if isinstance(value, list):
        return len(value) + sum(count_members(v) for v in value)
    return 0


# -- routing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Method:
    request_type: type[Message] | None  # None: a raw method that reads the request itself
    handler: Callable[[Any, Request], Awaitable[Any]]


class TwirpService:
    """The methods of one Twirp service, e.g. ``livekit.AgentDispatchService``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.methods: dict[str, _Method] = {}

    def add(
        self,
        method: str,
        request_type: type[M],
        handler: Callable[[M, Request], Awaitable[Message]],
    ) -> None:
        """Serve ``POST /twirp/<service>/<method>`` with ``handler``."""
        if method in self.methods:
            raise ValueError(f"{self.name}/{method} is already registered")
        self.methods[method] = _Method(request_type, handler)

    def add_raw(self, method: str, handler: Callable[[None, Request], Awaitable[Response]]) -> None:
        """Serve a method whose handler reads the request and builds the response itself
        (our own JSON services); errors still go out as Twirp errors."""
        if method in self.methods:
            raise ValueError(f"{self.name}/{method} is already registered")
        self.methods[method] = _Method(None, handler)

    def install(self, app: HttpApp) -> TwirpRouter:
        """Register into the app's router, creating and installing it if needed."""
        router: TwirpRouter | None = app.state.get(TWIRP_ROUTER)
        if router is None:
            router = TwirpRouter()
            router.install(app)
        router.add_service(self)
        return router


class TwirpRouter:
    """Owns the Twirp prefix of an app and dispatches to registered services."""

    def __init__(self, *, prefix: str = "/twirp", max_body_size: int = MAX_BODY_SIZE) -> None:
        self.prefix = prefix.rstrip("/") + "/"
        self.max_body_size = max_body_size
        self._services: dict[str, TwirpService] = {}
        self._outage = _OutageLog()

    def add_service(self, service: TwirpService) -> None:
        if service.name in self._services:
            raise ValueError(f"Twirp service {service.name} is already registered")
        # The service object is kept, not copied: methods added later are served too.
        self._services[service.name] = service

    def service(self, name: str) -> TwirpService | None:
        return self._services.get(name)

    def install(self, app: HttpApp) -> None:
        """Serve the app's Twirp prefix and remember this router on it."""
        if TWIRP_ROUTER in app.state:
            raise RuntimeError("the app already has a Twirp router")
        app.state[TWIRP_ROUTER] = self
        app.max_body_size = self.max_body_size
        app.prefix(self.prefix, self.handle, refuse)

    async def handle(self, request: Request) -> Response:
        try:
            method = self._route(request)
            if method.request_type is None:
                response: Response = await method.handler(None, request)
                return response
            message, is_json = read_message(
                request, method.request_type, max_body_size=self.max_body_size
            )
            reply = await method.handler(message, request)
            return message_response(reply, is_json)
        except TwirpError as err:
            return error_response(err)
        except Exception as exc:
            return self._failure(request, exc)

    def _failure(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, DispatcherError) and (answer := twirp_error(exc)) is not None:
            return error_response(answer)
        if is_unavailable(exc):  # nothing was accepted: the caller may retry the call
            self._outage.note(request.path, exc)
            why = f"{_UNAVAILABLE} ({exc})" if isinstance(exc, StoreUnavailable) else _UNAVAILABLE
            return error_response(TwirpError.unavailable(why))
        # Unexpected failures are bugs: log them, but leak no details to the caller.
        logger.error("Twirp handler for %s failed", request.path, exc_info=exc)
        return error_response(TwirpError.internal("internal error"))

    def _route(self, request: Request) -> _Method:
        if request.method != "POST":
            raise TwirpError.bad_route(
                f'unsupported method "{request.method}" (only POST is allowed)',
                request.method,
                request.path,
            )
        tail = request.path[len(self.prefix) :]
        service_name, _, method_name = tail.rpartition("/")
        service = self._services.get(service_name)
        method = service.methods.get(method_name) if service is not None else None
        if method is None:
            raise TwirpError.bad_route(
                f"no handler for path {json.dumps(request.path)}", request.method, request.path
            )
        return method


_UNAVAILABLE = "the dispatch store (Redis) is unavailable; retry the call"

# The HTTP server's own refusals of a Twirp request, as Twirp errors.
_CODE_BY_REFUSAL = {408: "deadline_exceeded", 503: "unavailable"}


def refuse(status: int, message: str) -> Response:
    """A request the HTTP server refused (malformed, head too large, too slow) as the
    Twirp error a Twirp client can read."""
    return error_response(TwirpError(_CODE_BY_REFUSAL.get(status, "malformed"), message))


class _OutageLog:
    """One warning per ``every_s`` while calls fail for want of Redis, with how many calls
    failed since the last one: an outage at thousands of calls a second is one line a few
    seconds, not one line a call."""

    def __init__(self, every_s: float = 5.0) -> None:
        self._every_s = every_s
        self._last = float("-inf")
        self._held = 0

    def note(self, path: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last < self._every_s:
            self._held += 1
            return
        more = f" ({self._held} more calls failed since the last line)" if self._held else ""
        logger.warning("%s: Redis unavailable (%s)%s", path, describe(exc), more)
        self._last, self._held = now, 0


#: Where ``TwirpService.install`` finds (or leaves) the app's router.
TWIRP_ROUTER = "twirp_router"
