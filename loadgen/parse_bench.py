"""The response parser loadgen uses (``loadgen.httpparse``, over httptools' llhttp) against
the one written by hand that it replaced, on the replies loadgen sees.

    python -m loadgen.parse_bench --responses 60000 --repeats 7

The replies are Twirp replies as the API node writes them (``dispatcher.api.httpwire``),
one after another on a keep-alive connection: ``dispatch``, CreateDispatch replies whose
heads are all the same bytes (the hand-written parser's best case: it parses a head
once); ``join``, Join replies (JSON) whose length varies with the participant; ``mixed``,
dispatch replies with one in ten a Twirp error (``resource_exhausted``), as under
overload. loadgen's client never pipelines (one request in flight per connection), so on
loopback a read holds one whole reply (``whole``); ``split`` cuts each reply in two reads.
Both parsers are used as the client uses them (feed, read status, body and keep-alive,
reset) and must agree on every reply before they are timed. The hand-written parser is
read from git (``--baseline``, a commit that has it). Prints one JSON object: ns per
reply, best of the repeats, the two parsers alternating so that drift on a busy host
favours neither.
"""

from __future__ import annotations

import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import click
import orjson
from livekit.protocol.agent_dispatch import AgentDispatch

from dispatcher.api.httpwire import response_head
from loadgen import httpparse

ROOT: Final = Path(__file__).parents[1]
#: The last commit that changed the hand-written parser.
BASELINE: Final = "fb9ba2bbe7c1e7d858ba8d53b0e9c838fe24354c"
STREAMS: Final = ("dispatch", "join", "mixed")
PATTERNS: Final = ("whole", "split")


class Parser(Protocol):
    status: int
    keep_alive: bool

    @property
    def body(self) -> bytes: ...
    def feed(self, data: bytes) -> bool: ...
    def reset(self) -> None: ...


def handwritten_parser(commit: str) -> Callable[[], Parser]:
    """The parser written by hand, as ``loadgen/httpparse.py`` was at ``commit``."""
    source = subprocess.run(
        ["git", "show", f"{commit}:loadgen/httpparse.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("handwritten_httpparse")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{commit}:loadgen/httpparse.py", "exec"), module.__dict__)
    parser: Callable[[], Parser] = module.ResponseParser
    return parser


def dispatch_reply(n: int) -> bytes:
    body = AgentDispatch(
        id=f"AD_p3Hn6YwK{n % 10_000:04d}",
        agent_name="bench-agent",
        room=f"lg-7f3a-{n:06d}",
        metadata='{"sent_ns":1795500230000000000}',
    ).SerializeToString()
    return response_head(200, "application/protobuf", len(body), True) + body


def join_reply(n: int) -> bytes:
    body = orjson.dumps(
        {
            "room": {"sid": "RM_4kTd8eWq2ZbN", "name": f"lg-7f3a-{n:06d}", "created": n % 2 == 0},
            "participant": {"sid": "PA_9sLm2VxQ7cRt", "identity": f"caller-{n}"},
            "token_agents": "dispatched" if n % 2 == 0 else "none",
            "dispatches": [{"id": "AD_p3Hn6YwK1uGe", "agent_name": "bench-agent"}] * (n % 2),
        }
    )
    return response_head(200, "application/json", len(body), True) + body


def error_reply(n: int) -> bytes:
    body = orjson.dumps({"code": "resource_exhausted", "msg": f"room 'lg-7f3a-{n:06d}' is full"})
    return response_head(429, "application/json", len(body), True) + body


def stream_of(kind: str, responses: int, pattern: str) -> list[list[bytes]]:
    """Each reply as the reads that bring it."""
    replies = []
    for n in range(responses):
        if kind == "join":
            raw = join_reply(n)
        elif kind == "mixed" and n % 10 == 9:
            raw = error_reply(n)
        else:
            raw = dispatch_reply(n)
        cut = len(raw) * 2 // 3
        replies.append([raw] if pattern == "whole" else [raw[:cut], raw[cut:]])
    return replies


def parse_all(parser: Parser, stream: Sequence[list[bytes]]) -> list[tuple[int, bytes, bool]]:
    seen = []
    for pieces in stream:
        for piece in pieces:
            parser.feed(piece)
        seen.append((parser.status, parser.body, parser.keep_alive))
        parser.reset()
    return seen


def ns_per_reply(parser: Parser, stream: Sequence[list[bytes]]) -> float:
    started = time.perf_counter_ns()
    for pieces in stream:
        for piece in pieces:
            parser.feed(piece)
        _ = (parser.status, parser.body, parser.keep_alive)
        parser.reset()
    return (time.perf_counter_ns() - started) / len(stream)


def measure(
    parsers: dict[str, Callable[[], Parser]], stream: Sequence[list[bytes]], repeats: int
) -> dict[str, Any]:
    outcomes = [parse_all(make(), stream) for make in parsers.values()]
    if any(outcome != outcomes[0] for outcome in outcomes):
        raise SystemExit("the parsers disagree on a reply")
    best = dict.fromkeys(parsers, float("inf"))
    for _ in range(repeats):
        for name, make in parsers.items():
            best[name] = min(best[name], ns_per_reply(make(), stream))
    return {
        **{name: round(value) for name, value in best.items()},
        "httptools_over_handwritten": round(best["httptools"] / best["handwritten"], 2),
    }


@click.command()
@click.option("--responses", type=int, default=60_000, show_default=True)
@click.option("--repeats", type=int, default=7, show_default=True)
@click.option("--baseline", default=BASELINE, show_default=True, help="Commit with the parser.")
def main(responses: int, repeats: int, baseline: str) -> None:
    """ns per reply for each parser, best of the repeats, per stream and way of arriving."""
    parsers = {"handwritten": handwritten_parser(baseline), "httptools": httpparse.ResponseParser}
    out: dict[str, Any] = {"responses": responses, "repeats": repeats, "baseline": baseline}
    for kind in STREAMS:
        for pattern in PATTERNS:
            stream = stream_of(kind, responses, pattern)
            out[f"{kind}/{pattern}"] = measure(parsers, stream, repeats)
    click.echo(orjson.dumps(out).decode())


if __name__ == "__main__":
    main()
