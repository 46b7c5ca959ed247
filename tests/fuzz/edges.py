"""Edge cases every run sends to every route, whatever Hypothesis draws: each kind of input
that has broken a token verifier or a JSON decoder before (padding, stray bits, nesting
thousands deep, lone surrogates echoed in errors, enums out of range)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import room as room_pb
from livekit.protocol import sip as sip_pb

from tests.fuzz.jsonbodies import Deep, dumps
from tests.fuzz.requests import FuzzRequest
from tests.fuzz.routes import ROUTES, Route
from tests.fuzz.tokens import HS256_HEADER, Credentials, lifetime, mint, sign

_AGENT = {"agent_name": "edge-agent"}
_DIRECT = sip_pb.SIPDispatchRule(
    dispatch_rule_direct=sip_pb.SIPDispatchRuleDirect(room_name="edge-sip")
)
#: A request each route accepts, or refuses for a reason of its own (not found).
BASE: dict[str, Message] = {
    "CreateDispatch": dispatch_pb.CreateAgentDispatchRequest(room="fuzz-room", agent_name="a"),
    "ListDispatch": dispatch_pb.ListAgentDispatchRequest(room="fuzz-room"),
    "DeleteDispatch": dispatch_pb.DeleteAgentDispatchRequest(room="fuzz-room", dispatch_id="AD_x"),
    "CreateRoom": room_pb.CreateRoomRequest(name="edge-room"),
    "ListRooms": room_pb.ListRoomsRequest(),
    "DeleteRoom": room_pb.DeleteRoomRequest(room="edge-absent"),
    "CreateSIPDispatchRule": sip_pb.CreateSIPDispatchRuleRequest(rule=_DIRECT, name="edge"),
    "ListSIPDispatchRule": sip_pb.ListSIPDispatchRuleRequest(),
    "UpdateSIPDispatchRule": sip_pb.UpdateSIPDispatchRuleRequest(
        sip_dispatch_rule_id="SDR_x", replace=sip_pb.SIPDispatchRuleInfo(rule=_DIRECT)
    ),
    "DeleteSIPDispatchRule": sip_pb.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id="SDR_x"),
}
_CALL = {"call_id": "edge-call", "from_number": "+15550001", "to_number": "+15559999"}
_JOINER = {"sub": "edge", "video": {"roomJoin": True, "room": "edge-room"}}
_DEEP = Deep(3_000)
_DAY = 86_400  # edges are built at collection: their tokens outlive a long run
_LIFE = lifetime(ttl_s=_DAY)


@dataclass(frozen=True)
class Edge:
    route: Route
    request: FuzzRequest

    def __str__(self) -> str:
        return f"{self.route.name}: {self.request.body_kind}, {self.request.credentials.mode}"


def edges() -> list[Edge]:
    every = [edge for route in ROUTES for edge in _token_edges(route) + _body_edges(route)]
    return every + _stored_edges()


def _base(route: Route) -> tuple[bytes, str, dict[str, Any]]:
    """(body, content type, claims) of the route's ordinary request."""
    if route.method in BASE:
        message = BASE[route.method]
        return message.SerializeToString(), "application/protobuf", route.grant(message)
    if route.method == "Call":
        return dumps(_CALL), "application/json", route.grant(None)
    return b"", "", _JOINER


def _request(route: Route, body: bytes, kind: str, media: str, creds: Credentials) -> Edge:
    headers = (("Content-Type", media),) if media else ()
    return Edge(route, FuzzRequest(route.name, "POST", "", headers, body, kind, creds))


def _token_edges(route: Route) -> list[Edge]:
    body, media, claims = _base(route)
    token = mint(claims, _DAY)
    head, payload, signature = token.split(".")
    last = signature[-1]
    stray = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = stray[stray.index(last) ^ 1]  # same 4 data bits, one stray bit set (43 chars)
    deep_header = dumps({**HS256_HEADER, "x": _DEEP})
    tokens = {
        "padded (=)": (token + "=", True),
        "padded (==)": (token + "==", True),
        "non-canonical signature": (f"{head}.{payload}.{signature[:-1]}{twin}", True),
        "alg none": (sign(b"{}", header=b'{"alg":"none"}').rsplit(".", 1)[0] + ".", True),
        "deep header": (sign(dumps({**claims, **_LIFE}), header=deep_header), False),
        "deep claim": (sign(dumps({**claims, "x": _DEEP, **_LIFE})), False),
        "deep video grant": (sign(dumps({**claims, "video": _DEEP, **_LIFE})), True),
    }
    if route is ROUTES[0]:  # the HTTP server refuses it before routing: one route is enough
        tokens["head over 64 KiB"] = ("A" * 70_000, True)
    return [
        _request(route, body, "ordinary", media, Credentials(f"Bearer {text}", None, mode, reject))
        for mode, (text, reject) in tokens.items()
    ]


def _body_edges(route: Route) -> list[Edge]:
    _, _, claims = _base(route)
    creds = Credentials(f"Bearer {mint(claims, _DAY)}", None, "valid", False)
    bodies: dict[str, bytes] = {"deep unknown field": dumps({"x": _DEEP}),
                                "deep document": _DEEP.render().encode()}  # fmt: skip
    if route.method in BASE:
        message = BASE[route.method]
        document = json_format.MessageToDict(message)
        for name in [f.name for f in message.DESCRIPTOR.fields][:4]:
            bodies[f"lone surrogate in {name}"] = dumps({**document, name: "\ud800"})
        bodies |= _enum_edges(route)
    elif route.method != "Call":
        return [_join_edge(route, name, config) for name, config in _ROOM_CONFIGS.items()]
    media = "application/json"
    return [_request(route, body, kind, media, creds) for kind, body in bodies.items()]


_POLICIES: list[Any] = [2, -1, "JRP_BAD", "\ud800"]
_ROOM_CONFIGS: dict[str, Any] = {
    **{f"roomConfig agent restartPolicy {p!r}": {"agents": [{"agentName": "a",
       "restartPolicy": p}]} for p in _POLICIES},
    "roomConfig nested deep": {"agents": [_DEEP]},
    "roomConfig not an object": [_DEEP],
}  # fmt: skip


def _enum_edges(route: Route) -> dict[str, bytes]:
    """Out-of-range restart policies where the request carries one."""
    bodies: dict[str, bytes] = {}
    for policy in _POLICIES:
        agent = {**_AGENT, "restart_policy": policy}
        if route.method == "CreateDispatch":
            body = {"room": "fuzz-room", **agent}
        elif route.method == "CreateRoom":
            body = {"name": "edge-room", "agents": [agent]}
        elif route.method == "CreateSIPDispatchRule":
            body = {"rule": {"dispatch_rule_direct": {"room_name": "r"}},
                    "room_config": {"agents": [agent]}}  # fmt: skip
        else:
            continue
        bodies[f"restart_policy {policy!r}"] = dumps(body)
    return bodies


def _join_edge(route: Route, kind: str, config: Any) -> Edge:
    creds = Credentials(f"Bearer {sign(dumps({**_JOINER, 'roomConfig': config, **_LIFE}))}",
                        None, kind, False)  # fmt: skip
    return _request(route, b"", kind, "", creds)


def _stored_edges() -> list[Edge]:
    """Values protobuf can carry and protojson cannot print (a Duration out of its range):
    a rule accepted with one must not make the JSON listing fail afterwards."""
    route = next(r for r in ROUTES if r.method == "CreateSIPDispatchRule")
    creds = Credentials(f"Bearer {mint(route.grant(None), _DAY)}", None, "valid", False)
    found = []
    for name, seconds, nanos in [("nanos", 0, -(2**31)), ("seconds", 2**62, 0)]:
        rule = sip_pb.SIPDispatchRuleInfo(rule=_DIRECT, trunk_ids=[f"TR_{name}"])
        rule.media.media_timeout.seconds, rule.media.media_timeout.nanos = seconds, nanos
        body = sip_pb.CreateSIPDispatchRuleRequest(dispatch_rule=rule).SerializeToString()
        found.append(_request(route, body, f"media_timeout {name} out of range",
                              "application/protobuf", creds))  # fmt: skip
    return found
