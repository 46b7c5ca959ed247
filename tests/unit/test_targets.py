"""Dispatch targets: their words, their argument to ``reserve.lua``, their checks, how a
scheduler's view picks shards for them, and an SDK server's version and labels."""

from __future__ import annotations

import random

import pytest

from dispatcher import targets
from dispatcher.scheduler import jobs
from dispatcher.scheduler.poolview import FleetView
from dispatcher.scheduler.targeted import Misses
from dispatcher.wire import DispatchCreated, DispatchRecord, DispatchTarget, RoomRecord
from workers import AgentServer

EU = DispatchTarget(labels={"region": "eu", "gpu": "a100"})


def test_a_targets_tags_and_reserve_argument() -> None:
    target = DispatchTarget(server_id="AW_1", version="2.0", labels={"region": "eu"})
    assert targets.tags(target) == {"v=2.0", "l:region=eu"}
    assert targets.reserve_argument(target) == "s=AW_1\x1fl:region=eu\x1fv=2.0"
    assert targets.reserve_argument(None) == ""


def test_a_target_in_words() -> None:
    target = DispatchTarget(server_id="AW_1", version="2.0", labels={"b": "2", "a": "1"})
    assert targets.describe(target) == "server AW_1, version 2.0, labels a=1,b=2"


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        (DispatchTarget(), "target names no server id, version or label"),
        (DispatchTarget(labels={"": "x"}), "a label key is empty"),
        (DispatchTarget(labels={"a=b": "x"}), "contains '='"),
        (DispatchTarget(labels={"a": "x\x1f"}), "control characters"),
        (DispatchTarget(version="v" * 200), "exceeds 128 bytes"),
        (DispatchTarget(labels={f"k{n}": "v" for n in range(33)}), "more than 32"),
    ],
)
def test_bad_targets_say_what_is_wrong(target: DispatchTarget, problem: str) -> None:
    found = targets.target_problem(target)
    assert found is not None and problem in found


def test_labels_from_a_setting() -> None:
    assert targets.parse_labels("zone=a, gpu=a100,") == {"zone": "a", "gpu": "a100"}
    assert targets.parse_labels("") == {}
    with pytest.raises(ValueError, match="not a key=value"):
        targets.parse_labels("zone")


def test_an_sdk_server_takes_its_version_and_labels_from_settings_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISPATCHER_AGENT_LABELS", "zone=a")
    monkeypatch.setenv("DISPATCHER_AGENT_VERSION", "7")
    server = AgentServer()
    assert (server.version, server.labels) == ("7", {"zone": "a"})
    given = AgentServer(version="8", labels={"zone": "b"})
    assert (given.version, given.labels) == ("8", {"zone": "b"})
    assert targets.server_identity("", {}, "7", "zone=a") == ("", {})  # a gateway worker's
    with pytest.raises(ValueError, match="label key is empty"):
        AgentServer(labels={"": "x"})
    monkeypatch.setenv("DISPATCHER_AGENT_LABELS", "zone")
    with pytest.raises(ValueError, match="DISPATCHER_AGENT_LABELS: 'zone' is not a key=value"):
        AgentServer()


EU_TAGS = {"l:region=eu", "l:gpu=a100", "v=1"}


def _view() -> FleetView:
    view = FleetView(shards=4)
    for shard, (free, tags) in enumerate(
        [(5, set()), (3, {"l:region=eu", "l:gpu=a100"}), (9, {"l:region=eu"}), (2, EU_TAGS)]
    ):
        view.apply_tick("pool", shard, free, 1, [])
        view.apply_tags("pool", shard, 1, frozenset(tags))
    return view


def test_a_targeted_job_is_only_placed_in_shards_carrying_its_tags() -> None:
    view, rng = _view(), random.Random(1)
    wanted = targets.tags(EU)
    chosen = {view.choose_shard("pool", rng, wanted) for _ in range(50)}
    assert chosen == {1}  # of the two carrying its tags, the freer (2 has more, not all)
    assert view.choose_shard("pool", rng, wanted, avoid={1, 3}) is None
    assert view.choose_shard("pool", rng, wanted, avoid={1}) == 3
    assert view.has_tags("pool", wanted)
    assert not view.has_tags("pool", frozenset({"l:region=us"}))


def test_misses_last_one_registry_version() -> None:
    misses = Misses()
    misses.note("AJ_1", 4, 2, False)
    assert misses.of("AJ_1", 4) == {2: False}
    assert misses.of("AJ_1", 5) == {}  # a refresh: every shard may be asked again


def test_a_targeted_jobs_pending_reason_and_failure_name_the_target() -> None:
    room = RoomRecord(name="r", sid="RM_1", created_at=0)
    dispatch = DispatchRecord(id="AD_1", agent_name="a", room="r", target=EU)
    event = DispatchCreated(dispatch=dispatch, room_sid="RM_1", received_ns=0)
    record = jobs.created(event, 0, 0, room).record
    assert record.spec.target == EU
    waiting = jobs.waiting_for_capacity(record, target_matched=False)
    assert waiting.current.error == (
        "waiting for an agent server of agent 'a' matching target labels gpu=a100,region=eu: "
        "no live server matches"
    )
    assert jobs.waiting_for_capacity(waiting, target_matched=False) is waiting  # written once
    failed = jobs.on_timer(waiting, 10**9 * 600).record
    assert failed.current.error.startswith(
        "no agent server of agent 'a' matching target labels gpu=a100,region=eu had a free slot"
    )
