"""Targeted placement: which servers a dispatch's target admits, in the words the pool
shards use. Pure: no I/O.

A server carries *tags* in its pool shard: ``v=<version>`` and ``l:<key>=<value>`` per
label, derived by ``heartbeat.lua`` from the server's ``ServerInfo`` (``pool_lib.lua``
keeps a set of servers per tag). A target is the tags a server must all carry, plus
optionally one server id; ``reserve.lua`` takes it as one argument, its parts joined by
the unit separator, which no label, version or id may contain.
"""

from __future__ import annotations

from collections.abc import Mapping

from dispatcher.wire import DispatchTarget

SEPARATOR = "\x1f"
MAX_LABELS = 32
MAX_LABEL_KEY_BYTES = 128
MAX_LABEL_VALUE_BYTES = 256
MAX_VERSION_BYTES = 128
MAX_SERVER_ID_BYTES = 256


def version_tag(version: str) -> str:
    return f"v={version}"


def label_tag(key: str, value: str) -> str:
    return f"l:{key}={value}"


def tags(target: DispatchTarget) -> frozenset[str]:
    """The tags a server must carry to take the target's jobs (the server id aside)."""
    wanted = {label_tag(k, v) for k, v in target.labels.items()}
    if target.version:
        wanted.add(version_tag(target.version))
    return frozenset(wanted)


def reserve_argument(target: DispatchTarget | None) -> str:
    """``reserve.lua``'s target argument: "" for an untargeted job, else ``s=<id>`` and the
    tags, joined by the separator."""
    if target is None:
        return ""
    parts = [f"s={target.server_id}"] if target.server_id else []
    return SEPARATOR.join([*parts, *sorted(tags(target))])


def describe(target: DispatchTarget) -> str:
    """A target in words, for pending reasons and errors: ``server AW_x, version 1.2,
    labels gpu=a100,region=eu``."""
    parts = []
    if target.server_id:
        parts.append(f"server {target.server_id}")
    if target.version:
        parts.append(f"version {target.version}")
    if target.labels:
        parts.append("labels " + ",".join(f"{k}={v}" for k, v in sorted(target.labels.items())))
    return ", ".join(parts)


def is_empty(target: DispatchTarget) -> bool:
    return not (target.server_id or target.version or target.labels)


def text_problem(value: str, what: str, max_bytes: int) -> str | None:
    """Why ``value`` cannot be a label key or value, version or server id (None: it can)."""
    if len(value.encode()) > max_bytes:
        return f"{what} exceeds {max_bytes} bytes"
    if not value.isprintable():
        return f"{what} must not contain control characters"
    return None


def labels_problem(labels: Mapping[str, str]) -> str | None:
    """Why ``labels`` cannot be a server's labels or a target's (None: they can)."""
    if len(labels) > MAX_LABELS:
        return f"{len(labels)} labels, more than {MAX_LABELS}"
    for key, value in labels.items():
        if not key:
            return "a label key is empty"
        if "=" in key:
            return f"label key {key!r} contains '='"
        problem = text_problem(key, f"label key {key!r}", MAX_LABEL_KEY_BYTES)
        problem = problem or text_problem(value, f"label {key!r}'s value", MAX_LABEL_VALUE_BYTES)
        if problem:
            return problem
    return None


def target_problem(target: DispatchTarget) -> str | None:
    """Why ``target`` cannot be placed on (None: it can)."""
    if is_empty(target):
        return "target names no server id, version or label"
    return (
        text_problem(target.server_id, "target server id", MAX_SERVER_ID_BYTES)
        or text_problem(target.version, "target version", MAX_VERSION_BYTES)
        or labels_problem(target.labels)
    )


def parse_selector(text: str) -> tuple[str, str]:
    """``key=value`` (the CLI's ``--label``); a ValueError says what is wrong."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise ValueError(f"{text!r} is not a key=value label")
    return key, value


def parse_labels(text: str) -> dict[str, str]:
    """``key=value,key2=value2`` (``DISPATCHER_AGENT_LABELS``); "" is no labels."""
    pairs = [parse_selector(item.strip()) for item in text.split(",") if item.strip()]
    return dict(pairs)


def server_identity(
    version: str | None, labels: Mapping[str, str] | None, setting_version: str, setting_labels: str
) -> tuple[str, dict[str, str]]:
    """An agent server's version and labels: as given, else from its settings
    (``DISPATCHER_AGENT_VERSION``, ``DISPATCHER_AGENT_LABELS``); a ValueError says what is
    wrong with them."""
    version = setting_version if version is None else version
    try:
        labels = dict(labels if labels is not None else parse_labels(setting_labels))
    except ValueError as exc:
        raise ValueError(f"DISPATCHER_AGENT_LABELS: {exc}") from None
    problem = text_problem(version, "version", MAX_VERSION_BYTES) or labels_problem(labels)
    if problem:
        raise ValueError(problem)
    return version, labels
