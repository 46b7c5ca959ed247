"""Each script's call (dispatcher.store.calls) against the script's own header: every key
and argument sits where the header names it, and there are exactly as many as it names."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.store import calls, keys, scripts
from dispatcher.wire import (
    Assignment,
    DispatchCreated,
    DispatchDeleted,
    DispatchRecord,
    DispatchTarget,
    Drain,
    JobAttempt,
    JobRecord,
    JobSpec,
    ParticipantLeft,
    ParticipantPublished,
    ParticipantRecord,
    RoomDeleted,
    RoomLife,
    RoomMetadataUpdated,
    RoomRecord,
    encode,
)
from tests.script_headers import laid_out, scripts_with_headers

K = keys.partition_keys(7)
SHARD = keys.shard_keys("agent-a", 2, 4)
ROOM = RoomRecord(name="room-1", sid="RM_1", created_at=5)
DISPATCH = DispatchRecord(id="AD_1", agent_name="agent-a", room="room-1", created_at=6)
PERSON = ParticipantRecord(sid="PA_1", identity="ann")


def spec(job_id: str = "AJ_1", room: str = "room-1", **fields: Any) -> JobSpec:
    return JobSpec(
        job_id=job_id, dispatch_id="AD_1", attempt=1, partition=7, room=room, room_sid="RM_1",
        agent_name="agent-a", **fields,
    )  # fmt: skip


def job(job_id: str, room: str, phase: Any = "running") -> JobRecord:
    return JobRecord(spec=spec(job_id, room), phase=phase, current=JobAttempt(job_id=job_id))


def test_every_script_with_a_header_has_a_call_and_is_loaded_at_start() -> None:
    loaded = {script.name for script in scripts.ALL}
    for name in scripts_with_headers():
        assert callable(getattr(calls, name, None)), f"no calls.{name}"
        assert name in loaded, f"{name} is not in scripts.ALL"


# --- scheduler membership, leases, commit ---------------------------------------------------


def test_membership_heartbeats_or_leaves() -> None:
    assert laid_out("membership", calls.membership("s1", 9000)) == (
        {"schedulers": keys.SCHEDULERS},
        {"node_id": "s1", "ttl_ms": 9000, "leaving (0/1)": 0},
    )
    assert laid_out("membership", calls.membership("s1", 0, leaving=True))[1]["leaving (0/1)"] == 1


def test_lease_acquires_renews_and_releases() -> None:
    lease_keys = {"lease": K.lease, "fence": K.fence}
    assert laid_out("lease", calls.lease(K, "s1", 6000)) == (
        lease_keys,
        {"node_id": "s1", "ttl_ms": 6000, "held_value_or_empty": ""},
    )
    assert laid_out("lease", calls.lease(K, "s1", 6000, "s1/4"))[1]["held_value_or_empty"] == "s1/4"
    assert laid_out("release_lease", calls.release_lease(K, "s1/4")) == (
        {"lease": K.lease},
        {"held_value": "s1/4"},
    )


def test_commit_lays_out_acks_records_lives_and_hooks() -> None:
    a, b, c = job("AJ_a", "r1"), job("AJ_b", "r2", "ended"), job("AJ_c", "r1")
    life = RoomLife(room=ROOM, present=2)
    call = calls.commit(K, "s1/4", [b"1-0", b"2-0"], {"a": a, "b": b, "c": c},
                        {"r1": life, "r2": None}, [b"hook"])  # fmt: skip
    call_keys, args = laid_out("commit", call)
    jobs_group = "(KEYS index of the room's job hash, room, job_key, record, active 0/1) x n_jobs"
    lives_group = '(room, life_record or "" to forget it) x n_lives'
    assert call_keys == {
        "lease": K.lease, "active": K.active, "events": K.events, "life": K.life,
        "hooks": K.hooks, "then the job hashes of the rooms touched": [
            K.room_jobs("r1"), K.room_jobs("r2"),
        ],
    }  # fmt: skip
    assert args == {
        "lease_value": "s1/4", "group": keys.CONSUMER_GROUP, "n_acks": 2,
        "ack_id...": [b"1-0", b"2-0"], "n_jobs": 3,
        jobs_group: [
            {"KEYS index of the room's job hash": 6, "room": "r1", "job_key": "a",
             "record": encode(a), "active 0/1": 1},
            {"KEYS index of the room's job hash": 7, "room": "r2", "job_key": "b",
             "record": encode(b), "active 0/1": 0},
            {"KEYS index of the room's job hash": 6, "room": "r1", "job_key": "c",
             "record": encode(c), "active 0/1": 1},
        ],
        "n_lives": 2,
        lives_group: [
            {"room": "r1", 'life_record or "" to forget it': encode(life)},
            {"room": "r2", 'life_record or "" to forget it': b""},
        ],
        "then one webhook event per argument to the end": [b"hook"],
    }  # fmt: skip


def test_close_room_is_fenced_by_the_lease() -> None:
    assert laid_out("close_room", calls.close_room(K, "s1/4", "r1", 600)) == (
        {
            "lease": K.lease, "events": K.events, "rooms": K.rooms,
            "room_dispatches": K.room("r1"), "room_info": K.room_info("r1"),
            "participants": K.participants("r1"), "room_jobs": K.room_jobs("r1"), "life": K.life,
        },
        {"lease_value": "s1/4", "group": keys.CONSUMER_GROUP, "room": "r1", "retention_s": 600},
    )  # fmt: skip


# --- dispatches and rooms -------------------------------------------------------------------

ROOM_KEYS = {
    "rooms": K.rooms,
    "room_dispatches": K.room("room-1"),
    "room_info": K.room_info("room-1"),
    "participants": K.participants("room-1"),
    "room_jobs": K.room_jobs("room-1"),
    "events": K.events,
}


@pytest.mark.parametrize("request_id", ["", "req-1"])
def test_create_dispatch_keys_its_idempotency_by_request_id(request_id: str) -> None:
    event = DispatchCreated(dispatch=DISPATCH, room_sid="RM_1", received_ns=6)
    call = calls.create_dispatch(
        K, DISPATCH, event, ROOM, request_id=request_id, idempotency_ttl_s=60,
        max_dispatches=10, max_bytes=4096,
    )  # fmt: skip
    idempotency = K.idempotency(request_id) if request_id else K.events
    assert laid_out("create_dispatch", call) == (
        {**ROOM_KEYS, "idempotency": idempotency},
        {
            "room": "room-1", "dispatch_id": "AD_1", "dispatch_record": encode(DISPATCH),
            "event": encode(event), "room_record": encode(ROOM),
            "idempotency_ttl_s": 60 if request_id else 0, "agent_name": "agent-a",
            "max_dispatches": 10, "max_bytes": 4096,
        },
    )  # fmt: skip


def test_list_and_delete_dispatch() -> None:
    assert laid_out("list_dispatches", calls.list_dispatches(K, "room-1", "AD_1", 4096)) == (
        {"room_dispatches": K.room("room-1"), "room_jobs": K.room_jobs("room-1")},
        {'dispatch_id or ""': "AD_1", "max_bytes": 4096},
    )
    deleted = DispatchRecord(id="AD_1", agent_name="agent-a", room="room-1", deleted_at=9)
    event = DispatchDeleted(room="room-1", dispatch_id="AD_1", deleted_at=9)
    assert laid_out("delete_dispatch", calls.delete_dispatch(K, b"read", deleted, event)) == (
        {"room_dispatches": K.room("room-1"), "events": K.events,
         "room_info": K.room_info("room-1")},
        {"dispatch_id": "AD_1", "expected_record": b"read", "deleted_record": encode(deleted),
         "event": encode(event), "agent_name": "agent-a"},
    )  # fmt: skip


def test_open_room_with_dispatches_and_a_participant() -> None:
    call = calls.open_room(
        K, ROOM, [DISPATCH], ensure=True, participant=PERSON, joined_event=b"joined",
        max_participants=3, max_dispatches=10,
    )  # fmt: skip
    created = DispatchCreated(dispatch=DISPATCH, room_sid="RM_1", received_ns=6)
    group = "(agent_name, dispatch_id, record, event) x n"
    assert laid_out("open_room", call) == (
        ROOM_KEYS,
        {
            "room": "room-1", "room_record": encode(ROOM), "ensure 0/1": 1, "n": 1,
            group: [{"agent_name": "agent-a", "dispatch_id": "AD_1", "record": encode(DISPATCH),
                     "event": encode(created)}],
            'identity or ""': "ann", "participant_record": encode(PERSON),
            "joined_event": b"joined", "max_participants": 3, "max_dispatches": 10,
        },
    )  # fmt: skip


def test_open_room_without_a_participant() -> None:
    call = calls.open_room(
        K, ROOM, [], ensure=False, participant=None, joined_event=b"",
        max_participants=0, max_dispatches=10,
    )  # fmt: skip
    _, args = laid_out("open_room", call)
    assert (args['identity or ""'], args["participant_record"], args["joined_event"]) == (
        "", b"", b""
    )  # fmt: skip


def test_a_participant_leaves_and_publishes() -> None:
    person_keys = {
        "participants": K.participants("room-1"), "room_info": K.room_info("room-1"),
        "events": K.events,
    }  # fmt: skip
    left = ParticipantLeft(room="room-1", identity="ann", at=9)
    assert laid_out("leave_room", calls.leave_room(K, left)) == (
        person_keys, {"identity": "ann", "left_event": encode(left)}
    )  # fmt: skip
    published = ParticipantPublished(room="room-1", identity="ann")
    assert laid_out("publish", calls.publish(K, published)) == (
        person_keys, {"identity": "ann", "published_event": encode(published)}
    )  # fmt: skip


def test_update_and_delete_room() -> None:
    updated = RoomRecord(name="room-1", sid="RM_1", created_at=5, metadata="m")
    event = RoomMetadataUpdated(room="room-1", metadata="m")
    assert laid_out("update_room", calls.update_room(K, b"read", updated, event)) == (
        {"rooms": K.rooms, "events": K.events},
        {"room": "room-1", "record read": b"read", "new record": encode(updated),
         "event": encode(event)},
    )  # fmt: skip
    deleted = RoomDeleted(room="room-1", sid="RM_1", at=9)
    call = calls.delete_room(K, deleted, 600, [(b"AD_1", b"read", DISPATCH)])
    group = "(dispatch_id, expected_record, deleted_record) x n"
    assert laid_out("delete_room", call) == (
        ROOM_KEYS,
        {"room": "room-1", "retention_s": 600, "event": encode(deleted), "n": 1,
         group: [{"dispatch_id": b"AD_1", "expected_record": b"read",
                  "deleted_record": encode(DISPATCH)}]},
    )  # fmt: skip


def test_list_rooms_and_their_sizes() -> None:
    assert laid_out("list_rooms", calls.list_rooms(K, ["a", "b"])) == (
        {"rooms": K.rooms},
        {"participants_key_prefix": K.participants(""), "room names...": ["a", "b"]},
    )
    assert laid_out("room_sizes", calls.room_sizes(K, 100)) == (
        {"rooms": K.rooms},
        {"max_count": 100, "room names...": []},
    )


# --- pool shards ----------------------------------------------------------------------------

SHARD_KEYS = {"shard jobs": SHARD.jobs}


def test_heartbeat_says_what_changed_or_nothing() -> None:
    said = calls.heartbeat(SHARD, "AW_1", 3000, (5, "0.40", 1, b"info"), ["AJ_1"])
    assert laid_out("heartbeat", said) == (
        SHARD_KEYS,
        {"shard prefix": SHARD.base, "server_id": "AW_1", "ttl_ms": 3000, "capacity": 5,
         "load": "0.40", "status": 1, "info": b"info", "running job ids...": ["AJ_1"]},
    )  # fmt: skip
    _, quiet = laid_out("heartbeat", calls.heartbeat(SHARD, "AW_1", 3000))
    assert [quiet[name] for name in ("capacity", "load", "status", "info")] == ["", "", "", ""]


def test_reserve_carries_the_assignment_target_and_exclusions() -> None:
    targeted = spec(target=DispatchTarget(server_id="AW_9"))
    call = calls.reserve(SHARD, targeted, 5000, 0.7, ["AW_2", "AW_3"])
    assert laid_out("reserve", call) == (
        SHARD_KEYS,
        {"shard prefix": SHARD.base, "job_id": "AJ_1", "reach_ms": 5000, "load_threshold": 0.7,
         "payload": encode(Assignment(job=targeted)), "target": "s=AW_9",
         "excluded server ids...": ["AW_2", "AW_3"]},
    )  # fmt: skip
    assert laid_out("reserve", calls.reserve(SHARD, spec(), 5000, 0.7))[1]["target"] == ""


@pytest.mark.parametrize("script", ["confirm", "release", "revoke"])
def test_a_reserved_slot_is_named_by_job_and_server(script: str) -> None:
    call = getattr(calls, script)(SHARD, "AW_1", "AJ_1")
    assert laid_out(script, call) == (
        SHARD_KEYS,
        {"shard prefix": SHARD.base, "job_id": "AJ_1", "server_id": "AW_1"},
    )


def test_release_lost_carries_the_evidence_bound() -> None:
    assert laid_out("release_lost", calls.release_lost(SHARD, "AW_1", "AJ_1", 123, 50)) == (
        SHARD_KEYS,
        {"shard prefix": SHARD.base, "job_id": "AJ_1", "server_id": "AW_1",
         "not_before_ms": 123, "margin_ms": 50},
    )  # fmt: skip


def test_shard_tick_reads_from_the_cursor_with_optional_upkeep() -> None:
    call = calls.shard_tick(SHARD, 77, 2, 256, 60_000, reap_count=16, reclaim_count=64)
    assert laid_out("shard_tick", call) == (
        SHARD_KEYS,
        {"shard prefix": SHARD.base, "cursor (Redis ms)": 77,
         "skip (entries at the cursor already seen)": 2, "count": 256, "reap_after_ms": 60_000,
         "reap_count": 16, "reclaim_count": 64},
    )  # fmt: skip
    _, args = laid_out("shard_tick", calls.shard_tick(SHARD, 0, 0, 256, 60_000))
    assert (args["reap_count"], args["reclaim_count"]) == (0, 0)


def test_servers_are_deregistered_drained_and_listed() -> None:
    assert laid_out("deregister", calls.deregister(SHARD, "AW_1")) == (
        SHARD_KEYS,
        {"shard prefix": SHARD.base, "server_id": "AW_1"},
    )
    drain = Drain(reason="operator")
    assert laid_out("drain_server", calls.drain_server(SHARD, "AW_1", drain)) == (
        SHARD_KEYS,
        {"shard prefix": SHARD.base, "server_id": "AW_1", "inbox message": encode(drain)},
    )
    assert laid_out("list_servers", calls.list_servers(SHARD)) == (
        SHARD_KEYS,
        {"shard prefix": SHARD.base},
    )
