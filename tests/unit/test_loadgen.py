"""Pure tests of loadgen: percentiles, schedule, metadata, report shape, lost accounting."""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from livekit.protocol.agent_dispatch import AgentDispatch, CreateAgentDispatchRequest

from dispatcher.api.auth import TokenVerifier
from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from loadgen.fleet import AgentSummary
from loadgen.httpclient import HttpClient
from loadgen.httpparse import HttpError, ResponseParser
from loadgen.options import DispatchOptions
from loadgen.payload import (
    CREATE_PATH,
    STAMP_PLACEHOLDER_NS,
    authorization,
    decode_sent_ns,
    encode_metadata,
    request_body,
    room_name,
    room_prefix,
    split_at_stamp,
    stamp,
)
from loadgen.report import (
    REPORT_KEYS,
    build_report,
    format_table,
    lost_dispatches,
    result_accounting,
)
from loadgen.results import JobResult, decode_batch, encode_batch
from loadgen.run import StepData
from loadgen.sender import (
    SendStats,
    classify,
    dispatch_parts,
    planned_count,
    prepare_dispatches,
    send_time,
)

OPTIONS = DispatchOptions(
    url="http://127.0.0.1:7880",
    api_key=DEV_API_KEY,
    api_secret=DEV_API_SECRET,
    redis_url="redis://127.0.0.1:6379",
    rate=500,
    duration=30,
    agents=2,
    capacity=400,
    hold=0.5,
    agent_name="loadgen-agent",
    seed=7,
)


def result(dispatch_id: str, user_ms: float = 2.0, attempt: int = 0) -> JobResult:
    return JobResult(
        job_id=f"AJ_{dispatch_id}",
        dispatch_id=dispatch_id,
        server_ns=int(user_ms * 1e6) - 100_000,
        user_ns=int(user_ms * 1e6),
        attempt=attempt,
    )


# --- schedule -----------------------------------------------------------------------------


def test_send_time_is_t0_plus_i_over_rate() -> None:
    t0, rate = 1000.0, 500.0
    times = [send_time(t0, i, rate) for i in range(5)]
    assert times == pytest.approx([1000.0, 1000.002, 1000.004, 1000.006, 1000.008])
    assert send_time(t0, 15_000, rate) == pytest.approx(t0 + 30.0)  # no accumulated drift


def test_planned_count() -> None:
    assert planned_count(500, 30) == 15_000
    assert planned_count(3, 0.5) == 2
    assert planned_count(0.1, 1) == 1


# --- payload ------------------------------------------------------------------------------


def test_sent_ns_round_trips_through_metadata() -> None:
    sent = 1_767_225_600_123_456_789
    assert decode_sent_ns(encode_metadata(sent)) == sent


def test_sent_ns_survives_the_protobuf_request() -> None:
    body = request_body("loadgen-agent", "room-1", encode_metadata(42))
    request = CreateAgentDispatchRequest()
    request.ParseFromString(body)
    assert (request.agent_name, request.room) == ("loadgen-agent", "room-1")
    assert decode_sent_ns(request.metadata) == 42


@pytest.mark.parametrize("metadata", ["", "{}", "not json", '{"sent_ns": "12"}', "[1]"])
def test_decode_sent_ns_rejects_foreign_metadata(metadata: str) -> None:
    with pytest.raises(ValueError):
        decode_sent_ns(metadata)


def test_room_names_are_seeded_and_unique() -> None:
    assert room_prefix(7) == room_prefix(7)
    assert room_prefix(7) != room_prefix(8)
    names = {room_name(room_prefix(7), i) for i in range(1000)}
    assert len(names) == 1000


def test_authorization_grants_room_admin_for_that_room() -> None:
    header = authorization(DEV_API_KEY, DEV_API_SECRET, "room-9")
    assert header.startswith("Bearer ")
    claims = TokenVerifier({DEV_API_KEY: DEV_API_SECRET}).verify(header.removeprefix("Bearer "))
    assert claims.video.room_admin
    assert claims.video.room == "room-9"


def test_authorization_is_issued_when_asked() -> None:
    header = authorization(DEV_API_KEY, DEV_API_SECRET, "room-9", now=1_767_225_600.7)
    claims = TokenVerifier({DEV_API_KEY: DEV_API_SECRET}).verify(
        header.removeprefix("Bearer "), now=1_767_225_700
    )
    assert claims.nbf == 1_767_225_600


def test_a_request_cut_at_its_stamp_rejoins_with_any_send_time() -> None:
    client = HttpClient(OPTIONS.url)
    head, tail = split_at_stamp(
        client.prepare(CREATE_PATH, *dispatch_parts(OPTIONS, "room-1", STAMP_PLACEHOLDER_NS))
    )
    sent = 1_767_225_600_123_456_789
    body = b"".join((head, stamp(sent), tail)).split(b"\r\n\r\n", 1)[1]
    request = CreateAgentDispatchRequest()
    request.ParseFromString(body)
    assert decode_sent_ns(request.metadata) == sent
    assert request.room == "room-1"


@pytest.mark.parametrize("sent_ns", [42, 10**19])
def test_stamp_refuses_send_times_of_another_length(sent_ns: int) -> None:
    with pytest.raises(ValueError, match="digits"):
        stamp(sent_ns)


def test_prepared_dispatches_are_the_requests_built_at_send_time() -> None:
    client = HttpClient(OPTIONS.url)
    options = dataclasses.replace(OPTIONS, rate=4, duration=1)
    verifier = TokenVerifier({DEV_API_KEY: DEV_API_SECRET})
    before = time.time()
    prepared = prepare_dispatches(client, options, "lg-x")
    after = time.time()
    sent = 1_767_225_600_123_456_789
    assert len(prepared.heads) == 4
    for index, due in enumerate(index / options.rate for index in range(4)):
        request = prepared.stamped(index, sent)
        token = re.search(rb"Authorization: Bearer (\S+)\r\n", request)
        assert token is not None
        issued = verifier.verify(token[1].decode(), now=after + 60).nbf
        assert int(before + due) <= issued <= after + due  # issued for when it is due
        parts = dispatch_parts(options, f"lg-x-{index}", sent, issued_at=issued)
        assert request == client.prepare(CREATE_PATH, *parts)


# --- replies and results --------------------------------------------------------------------


def test_classify_replies() -> None:
    ok = AgentDispatch(id="AD_abc", room="r", agent_name="a").SerializeToString()
    assert classify(200, ok) == ("ok", "AD_abc")
    error = orjson.dumps({"code": "resource_exhausted", "msg": "slow down"})
    assert classify(429, error) == ("resource_exhausted", None)
    assert classify(502, b"<html>bad gateway</html>") == ("http_502", None)


def test_a_repeated_response_head_parses_as_the_first() -> None:
    parser = ResponseParser()
    keep = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    close = b"HTTP/1.1 503 Unavailable\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"
    seen = []
    for response in (keep, keep, close, keep):
        assert parser.feed(response)
        seen.append((parser.status, parser.body, parser.keep_alive))
        parser.reset()
    assert seen == [(200, b"ok", True), (200, b"ok", True), (503, b"x", False), (200, b"ok", True)]
    with pytest.raises(HttpError, match="malformed"):
        parser.feed(b"HTTP/1.1 200 OK\r\nbad line\r\n\r\n")


def test_result_batch_round_trip() -> None:
    batch = [result("AD_1"), result("AD_2", attempt=1)]
    assert decode_batch(encode_batch(batch)) == batch


# --- accounting and report ----------------------------------------------------------------


def test_lost_is_accepted_minus_results() -> None:
    assert lost_dispatches(["AD_1", "AD_2", "AD_3"], ["AD_2"]) == {"AD_1", "AD_3"}
    assert lost_dispatches(["AD_1"], ["AD_1", "AD_9"]) == set()


def test_result_accounting_counts_duplicates_unmatched_and_retries() -> None:
    results = [result("AD_1"), result("AD_1", attempt=1), result("AD_2"), result("AD_9")]
    assert result_accounting(["AD_1", "AD_2", "AD_3"], results) == {
        "results": 4,
        "lost": 1,
        "duplicates": 1,
        "unmatched": 1,
        "retried": 1,
    }


def make_report() -> dict[str, Any]:
    stats = SendStats(planned=4, attempted=4, first_send=10.0, last_send=10.006)
    stats.codes = Counter({"ok": 3, "resource_exhausted": 1})
    stats.accepted_ids = ["AD_1", "AD_2", "AD_3"]
    stats.response_ns = [1_000_000, 2_000_000, 3_000_000, 4_000_000]
    stats.lag_ns = [0, 10_000, 20_000, 30_000]
    stats.cpu_s = 0.002
    results = [result("AD_1", 1.0), result("AD_2", 3.0)]
    agents = [
        AgentSummary(
            "AW_1", capacity=400, max_running=401, jobs=1, bad_metadata=0, loop_errors=2, cpu_s=0.1
        ),
        AgentSummary("AW_2", capacity=400, max_running=12, jobs=1, bad_metadata=1, loop_errors=0),
    ]
    step = StepData(
        options=OPTIONS,
        stats=stats,
        results=results,
        started_in_grace=2,
        window_start_ns=0,
        redis_usec=300,
        redis_cpu_s=0.00015,
        process_cpu_s={"dispatcher": 0.003},
    )
    return build_report(step, "run1", agents)


def test_report_has_the_documented_keys_and_is_json() -> None:
    report = make_report()
    assert tuple(report) == REPORT_KEYS
    assert orjson.loads(orjson.dumps(report)) == report
    assert "api_secret" not in orjson.dumps(report).decode()


def test_report_figures() -> None:
    report = make_report()
    assert report["accepted"] == 3
    assert report["errors"] == {"resource_exhausted": 1}
    assert report["error_total"] == 1
    assert report["lost"] == 1
    assert report["over_capacity"] == 1
    assert report["agent_errors"] == 3
    assert report["send_rate"] == pytest.approx(500.0)
    assert report["cpu"] == {
        "loadgen_us_per_request": 500.0,
        "redis_cpu_us_per_dispatch": 50.0,
        "redis_command_us_per_dispatch": 100.0,
        "agents_us_per_job": 50000.0,
        "dispatcher_process_us_per_dispatch": 1000.0,
    }
    assert report["backlog_bounded"] is False  # one of three accepted jobs never started
    user = report["user_dispatch_ms"]
    assert user["count"] == 2
    assert user["p50"] == pytest.approx(1.0, rel=1e-3)  # HDR: within 0.1 %
    assert user["max"] == pytest.approx(3.0, rel=1e-3)


def test_table_renders_every_latency_row() -> None:
    table = format_table(make_report())
    for label in ("user dispatch time", "server share", "API response", "sender lag"):
        assert label in table
    assert "lost 1" in table
