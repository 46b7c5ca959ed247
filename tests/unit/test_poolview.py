"""FleetView: a role's view of the pool shards, kept from what changed. Pure."""

from __future__ import annotations

import random
from collections import Counter

from dispatcher.scheduler.poolview import Expired, FleetView

POOL = "agent"


def view(*frees: int) -> FleetView:
    fleet = FleetView(len(frees))
    for shard, free in enumerate(frees):
        fleet.apply_tick(POOL, shard, free, servers=1, expired=[])
    return fleet


def test_no_shard_is_chosen_for_an_unknown_pool_or_a_full_one() -> None:
    assert FleetView(4).choose_shard(POOL) is None
    assert view(0, 0, 0).choose_shard(POOL) is None


def test_the_only_shard_with_room_is_chosen() -> None:
    assert view(0, 0, 5, 0).choose_shard(POOL) == 2


def test_two_random_choices_prefer_the_freer_shard_without_herding() -> None:
    fleet = view(1, 2, 3, 4)
    rng = random.Random(7)
    picks = Counter(fleet.choose_shard(POOL, rng) for _ in range(4000))
    # Of two shards drawn at random the freer wins: the freest most often, yet every shard
    # but the least free is used, so many schedulers spread their placements.
    assert picks[3] > picks[2] > picks[1] > 0
    assert picks[0] == 0


def test_local_reservations_and_releases_move_a_shards_free_count() -> None:
    fleet = view(1, 0)
    fleet.note_reserved(POOL, 0)
    assert fleet.choose_shard(POOL) is None
    fleet.note_released(POOL, 1)
    assert fleet.choose_shard(POOL) == 1
    fleet.note_full(POOL, 1)
    assert fleet.free(POOL) == 0
    fleet.note_reserved(POOL, 1)
    assert fleet.free(POOL) == 0  # never below zero


def test_a_tick_replaces_the_local_count_with_the_shards_own() -> None:
    fleet = view(3)
    fleet.note_reserved(POOL, 0)
    fleet.apply_tick(POOL, 0, 7, servers=2, expired=[])
    assert fleet.free(POOL) == 7
    assert fleet.has_servers(POOL) and not fleet.has_servers("other")


def test_expired_servers_become_suspects_and_the_cursor_moves_past_them() -> None:
    fleet = FleetView(1)
    fleet.apply_tick(POOL, 0, 0, 3, [("a", 100, 3000), ("b", 200, 3000)])
    state = fleet.shard_states(POOL)[0]
    assert (state.cursor, state.skip) == (200, 1)
    assert fleet.expired == {(POOL, "a"): Expired(100, 3000), (POOL, "b"): Expired(200, 3000)}


def test_entries_sharing_the_cursors_millisecond_are_counted_not_skipped() -> None:
    fleet = FleetView(1)
    fleet.apply_tick(POOL, 0, 0, 3, [("a", 100, 0), ("b", 100, 0)])
    state = fleet.shard_states(POOL)[0]
    assert (state.cursor, state.skip) == (100, 2)
    fleet.apply_tick(POOL, 0, 0, 3, [("c", 100, 0)])  # a full page all at one millisecond
    assert (state.cursor, state.skip) == (100, 3)
    fleet.apply_tick(POOL, 0, 0, 3, [("d", 150, 0)])
    assert (state.cursor, state.skip) == (150, 1)
    fleet.apply_tick(POOL, 0, 0, 3, [])
    assert (state.cursor, state.skip) == (150, 1)


def test_a_server_seen_alive_again_or_long_gone_is_no_longer_a_suspect() -> None:
    fleet = FleetView(1)
    fleet.apply_tick(POOL, 0, 0, 2, [("a", 100, 0), ("b", 5000, 0)])
    fleet.note_alive((POOL, "b"))
    assert list(fleet.expired) == [(POOL, "a")]
    fleet.note_absent((POOL, "gone"), now_ms=9000)
    fleet.forget_expired_before(1000)
    assert list(fleet.expired) == [(POOL, "gone")]
