"""A CreateDispatch's target (ours, beyond LiveKit): an optional field that LiveKit's
clients never send, so they work unchanged.

* JSON: a member ``"target": {"serverId": ..., "version": ..., "labels": {...}}`` next to
  LiveKit's fields (``server_id`` is accepted too, as protojson does).
* Protobuf: field ``TARGET_FIELD`` of the request, a ``dispatcher.DispatchTarget``
  message (below). LiveKit's message declares fields 1-6; a decoder keeps a field it does
  not know as an unknown field, which is where this one is read from.

An untargeted request pays one look at its unknown fields (protobuf) or one substring
search (JSON); only a request that carries a target is decoded again.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from dispatcher import targets
from dispatcher.api.http import Request
from dispatcher.api.twirp import TwirpError
from dispatcher.errors import InvalidArgument
from dispatcher.wire import DispatchTarget

# Far past LiveKit's numbers, below protobuf's reserved 19000-19999.
TARGET_FIELD = 10_001
_JSON_MEMBER = b'"target"'


def _message_classes() -> tuple[type[Message], type[Message]]:
    """``dispatcher.DispatchTarget`` {server_id = 1; version = 2; map labels = 3} and a
    message holding it at ``TARGET_FIELD``, built from a descriptor (no generated code)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="dispatcher/dispatch_target.proto", package="dispatcher", syntax="proto3"
    )
    field = descriptor_pb2.FieldDescriptorProto
    target = proto.message_type.add(name="DispatchTarget")
    target.field.add(name="server_id", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    target.field.add(name="version", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    entry = target.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    target.field.add(
        name="labels",
        number=3,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".dispatcher.DispatchTarget.LabelsEntry",
    )
    holder = proto.message_type.add(name="DispatchTargetField")
    holder.field.add(
        name="target",
        number=TARGET_FIELD,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=".dispatcher.DispatchTarget",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("dispatcher.DispatchTarget")),
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("dispatcher.DispatchTargetField")
        ),
    )


TargetMessage, TargetField = _message_classes()


def read_target(message: Message, request: Request) -> DispatchTarget | None:
    """The request's target, checked; None when it has none."""
    if len(UnknownFieldSet(message)):
        return _from_protobuf(request.body)
    if _JSON_MEMBER in request.body and _is_json(request):
        return _from_json(request.body)
    return None


def _is_json(request: Request) -> bool:
    media_type = request.headers.get("Content-Type", "").partition(";")[0]
    return media_type.strip().lower() == "application/json"


def encode_target(target: DispatchTarget) -> bytes:
    """The target as the protobuf bytes to append to a CreateAgentDispatchRequest."""
    holder: Any = TargetField()
    holder.target.server_id = target.server_id
    holder.target.version = target.version
    holder.target.labels.update(target.labels)
    return bytes(holder.SerializeToString())


def _from_protobuf(body: bytes) -> DispatchTarget | None:
    holder: Any = TargetField()
    try:
        holder.ParseFromString(body)
    except DecodeError as exc:
        raise TwirpError.malformed(f"the request's target could not be decoded: {exc}") from None
    if not holder.HasField("target"):
        return None  # another field this node does not know: ignored, as before
    return _checked(holder.target)


def _from_json(body: bytes) -> DispatchTarget | None:
    try:  # the router has bounded and parsed this body already: it is a JSON object
        value = json.loads(body).get("target")
    except (ValueError, AttributeError):
        return None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument("target must be an object")
    message: Any = TargetMessage()
    try:
        json_format.ParseDict(value, message)
    except json_format.ParseError as exc:
        raise InvalidArgument(f"target: {exc}") from None
    return _checked(message)


def _checked(message: Any) -> DispatchTarget:
    """A decoded ``dispatcher.DispatchTarget`` message as ours, if it is a valid target."""
    target = DispatchTarget(
        server_id=message.server_id, version=message.version, labels=dict(message.labels)
    )
    if problem := targets.target_problem(target):
        raise InvalidArgument(problem)
    return target
