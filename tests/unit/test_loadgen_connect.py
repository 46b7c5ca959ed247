"""Pure tests of ``loadgen connect``: the seeded join plan, its tokens, the report."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import orjson
import pytest

from dispatcher.api.auth import TokenVerifier
from dispatcher.api.participant_service import parse_room_config
from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from loadgen.connect_report import (
    CONNECT_REPORT_KEYS,
    build_connect_report,
    connect_outcome,
    format_connect,
)
from loadgen.join_plan import JOINABLE_AFTER_S, JoinPlan, JoinShape, PlannedJoin, plan_joins
from loadgen.join_progress import JoinProgress
from loadgen.join_sender import JoinStats
from loadgen.join_tokens import mint_tokens
from loadgen.payload import decode_sent_ns
from loadgen.results import JobResult
from loadgen.run import StepData
from loadgen.sender import OK
from tests.unit.test_loadgen import OPTIONS as DISPATCH_OPTIONS

RATE = 1000.0
SHAPE = JoinShape(new_room_share=0.2, room_size=4, leave_share=0.25)


def plan(seed: int | None = 7, count: int = 4000, shape: JoinShape = SHAPE) -> JoinPlan:
    return plan_joins("lg-test", count, RATE, shape, seed)


def everyone(joins: JoinPlan) -> list[PlannedJoin]:
    return [*joins.openers, *joins.joins]


# --- the plan -----------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_plan() -> None:
    assert plan(seed=7) == plan(seed=7)
    assert plan(seed=7) != plan(seed=8)


def test_every_join_has_its_own_identity() -> None:
    joins = everyone(plan())
    assert len({j.identity for j in joins}) == len(joins)


def test_the_new_room_share_is_kept_from_the_start() -> None:
    joins = plan(count=20_000, shape=JoinShape(new_room_share=0.1, room_size=1000)).joins
    for part in (joins[:1000], joins):  # the first second as well: no rush of creations
        assert sum(j.creates_room for j in part) / len(part) == pytest.approx(0.1, abs=0.03)


def test_openers_create_the_rooms_the_first_joins_join() -> None:
    joins = plan()
    assert joins.openers and all(j.creates_room and not j.leaves for j in joins.openers)
    opened = {j.room for j in joins.openers}
    early = joins.joins[: int(JOINABLE_AFTER_S * RATE)]
    assert {j.room for j in early if not j.creates_room} <= opened


def test_each_room_is_created_once_and_joined_only_once_open() -> None:
    joins = plan()
    created_at = {j.room: -JOINABLE_AFTER_S * RATE for j in joins.openers}
    for index, join in enumerate(joins.joins):
        if join.creates_room:
            assert join.room not in created_at
            created_at[join.room] = index
        else:
            assert index - created_at[join.room] >= JOINABLE_AFTER_S * RATE


def test_no_room_gets_more_joins_than_the_room_size() -> None:
    per_room = Counter(j.room for j in everyone(plan()))
    assert max(per_room.values()) == SHAPE.room_size


def test_rooms_of_one_are_never_joined() -> None:
    joins = plan(shape=JoinShape(new_room_share=0.1, room_size=1))
    assert not joins.openers and all(j.creates_room for j in joins.joins)


def test_the_leave_share_is_kept() -> None:
    joins = plan(count=20_000).joins
    assert sum(j.leaves for j in joins) / len(joins) == pytest.approx(0.25, abs=0.01)
    assert not any(j.leaves for j in plan(shape=JoinShape(leave_share=0.0)).joins)


@pytest.mark.parametrize(
    "bad",
    [{"new_room_share": 0.0}, {"new_room_share": 1.5}, {"room_size": 0}, {"leave_share": -0.1}],
)
def test_the_shape_refuses_impossible_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        JoinShape(**bad)


# --- tokens -------------------------------------------------------------------------------


def test_tokens_verify_and_grant_joining_exactly_the_planned_room() -> None:
    joins = plan(count=50).joins
    minted = mint_tokens(joins, DEV_API_KEY, DEV_API_SECRET, "agent-x", first_send_ns=0, rate=RATE)
    verifier = TokenVerifier({DEV_API_KEY: DEV_API_SECRET})
    for join, token in zip(joins, minted.tokens, strict=True):
        claims = verifier.verify(token)
        assert claims.sub == join.identity
        assert claims.video.room_join and claims.video.room == join.room
        assert (claims.room_config is not None) == join.creates_room


def test_a_creating_token_carries_the_agent_and_its_join_s_send_time() -> None:
    joins = plan(count=50).joins
    first_send_ns = 1_700_000_000_000_000_000
    minted = mint_tokens(
        joins, DEV_API_KEY, DEV_API_SECRET, "agent-x", first_send_ns=first_send_ns, rate=RATE
    )
    verifier = TokenVerifier({DEV_API_KEY: DEV_API_SECRET})
    tokens = enumerate(zip(joins, minted.tokens, strict=True))
    creators = [(index, token) for index, (join, token) in tokens if join.creates_room]
    assert creators
    for index, token in creators:
        raw = verifier.verify(token).room_config
        assert raw is not None
        config = parse_room_config(bytes(raw))
        assert [a.agent_name for a in config.agents] == ["agent-x"]
        assert decode_sent_ns(config.agents[0].metadata) == first_send_ns + index * 1_000_000


# --- report -------------------------------------------------------------------------------

OPTIONS = dataclasses.replace(DISPATCH_OPTIONS, rate=4, duration=1, agents=1)


def connect_step() -> StepData:
    stats = JoinStats(planned=4, attempted=4, shape=SHAPE, tracked_agent="a")
    stats.codes.update({OK: 3, "unauthenticated": 1})
    stats.response_ns = [1_000_000, 2_000_000, 3_000_000]
    stats.join_sent_ns = [100, 200, 300]
    stats.rooms_planned = stats.rooms_created = stats.dispatches = 1
    stats.rooms_joined = {"r0"}
    stats.accepted_ids = ["AD_1"]
    stats.dispatch_sent_ns = {"AD_1": 100}
    stats.leave_codes.update({OK: 1})
    stats.first_send, stats.last_send = 0.0, 0.75
    start = 100 + 5_000_000  # the entrypoint starts 5 ms after the join was sent
    result = JobResult("AJ_1", "AD_1", 4_000_000, start - 50, 0, sent_ns=50)
    return StepData(OPTIONS, stats, [result], started_in_grace=1, window_start_ns=0)


def test_the_report_has_the_documented_keys_and_is_json() -> None:
    report = build_connect_report(connect_step(), "run1")
    assert tuple(report) == CONNECT_REPORT_KEYS
    assert orjson.loads(orjson.dumps(report)) == report


def test_the_report_counts_joins_rooms_and_dispatch_time_from_the_join() -> None:
    report = build_connect_report(connect_step(), "run1")
    assert report["accepted"] == 3 and report["connections_per_s"] == 3.0
    assert report["errors"] == {"unauthenticated": 1} and report["error_total"] == 1
    assert (report["rooms_created"], report["rooms_joined"], report["dispatches"]) == (1, 1, 1)
    assert report["lost"] == 0 and report["duplicates"] == 0 and report["leaves"] == 1
    assert report["join_to_entrypoint_ms"]["max"] == 5.0
    assert report["join_ms"]["count"] == 3
    assert set(report["config"]) >= {"new_room_share", "room_size", "leave_share", "connections"}


def test_the_knee_search_judges_join_latency_and_every_error() -> None:
    outcome = connect_outcome(build_connect_report(connect_step(), "run1"))
    assert outcome.p99_ms == 3.0 and outcome.errors == 1 and outcome.achieved_rate == 3.0


def test_the_table_renders_the_join_rows() -> None:
    text = format_connect(build_connect_report(connect_step(), "run1"))
    assert "3.0 connections/s" in text
    assert "join (client round trip)" in text and "join -> agent entrypoint" in text


def test_progress_counts_joins_apart_from_job_starts() -> None:
    progress = JoinProgress(100)
    progress.sent(3)
    progress.answered(2_000_000)
    progress.error("unauthenticated")
    progress.completed(50_000_000)  # a job start fed by the session
    line = progress.line()
    assert "joined 1" in line and "job starts 1" in line and "in flight 1" in line
    assert "join p99 2.0 ms" in line and "unauthenticated=1" in line
