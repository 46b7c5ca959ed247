"""rank_candidates: which agent servers a job is offered to, and in which order."""

from __future__ import annotations

import random
from collections import Counter

from dispatcher.scheduler.placement import ServerView, rank_candidates
from dispatcher.wire import ServerStatus

NOW_MS = 1_000_000
THRESHOLD = 0.7


def server(
    id: str,
    *,
    capacity: int = 10,
    used: int = 0,
    load: float = 0.0,
    status: ServerStatus = ServerStatus.AVAILABLE,
    expires_at: int = NOW_MS + 3000,
) -> ServerView:
    return ServerView(
        id=id, capacity=capacity, load=load, status=status, expires_at=expires_at, used=used
    )


def rank(
    servers: list[ServerView],
    *,
    exclude: tuple[str, ...] = (),
    limit: int = 4,
    seed: int = 0,
) -> list[str]:
    return rank_candidates(
        servers, NOW_MS, THRESHOLD, exclude=exclude, limit=limit, rng=random.Random(seed)
    )


# --- the server view -------------------------------------------------------------------------


def test_free_slots_are_capacity_minus_used() -> None:
    assert server("a", capacity=5, used=2).free == 3


def test_server_is_alive_until_its_heartbeat_expires() -> None:
    assert server("a", expires_at=NOW_MS + 1).alive(NOW_MS)
    assert not server("a", expires_at=NOW_MS).alive(NOW_MS)


# --- eligibility -----------------------------------------------------------------------------


def test_no_servers_gives_no_candidates() -> None:
    assert rank([]) == []


def test_single_eligible_server_is_returned_alone() -> None:
    assert rank([server("a")]) == ["a"]


def test_expired_server_is_not_ranked() -> None:
    servers = [server("dead", expires_at=NOW_MS), server("ok")]

    assert rank(servers) == ["ok"]


def test_draining_servers_are_not_ranked() -> None:
    servers = [server("draining", status=ServerStatus.DRAINING), server("ok")]

    assert rank(servers) == ["ok"]


def test_a_server_that_said_full_but_has_a_free_slot_is_ranked() -> None:
    """FULL is the server's own count as of its last heartbeat; a slot freed since then
    must not wait for the next one."""
    servers = [server("was-full", status=ServerStatus.FULL, capacity=2, used=1)]

    assert rank(servers) == ["was-full"]


def test_server_without_free_slots_is_not_ranked() -> None:
    servers = [server("busy", capacity=2, used=2), server("ok")]

    assert rank(servers) == ["ok"]


def test_server_over_capacity_is_not_ranked() -> None:
    servers = [server("over", capacity=2, used=3), server("ok")]

    assert rank(servers) == ["ok"]


def test_server_at_or_over_the_load_threshold_is_not_ranked() -> None:
    servers = [server("at", load=THRESHOLD), server("over", load=0.95), server("ok", load=0.69)]

    assert rank(servers) == ["ok"]


def test_excluded_servers_are_skipped() -> None:
    servers = [server("a"), server("b"), server("c")]

    assert sorted(rank(servers, exclude=("a", "c"))) == ["b"]


def test_no_candidates_when_every_server_is_excluded() -> None:
    assert rank([server("a"), server("b")], exclude=("a", "b")) == []


def test_only_eligible_servers_are_ranked_among_many() -> None:
    servers = [
        server("ok1"),
        server("dead", expires_at=NOW_MS - 1),
        server("ok2", used=9),
        server("draining", status=ServerStatus.DRAINING),
        server("loaded", load=0.9),
        server("ok3", load=0.1),
        server("full", capacity=1, used=1),
        server("excluded"),
    ]

    for seed in range(50):
        ranked = rank(servers, exclude=("excluded",), seed=seed)
        assert sorted(ranked) == ["ok1", "ok2", "ok3"]


# --- ordering --------------------------------------------------------------------------------


def test_of_two_servers_the_one_with_more_free_slots_comes_first() -> None:
    servers = [server("roomy", used=1), server("tight", used=8)]

    for seed in range(50):
        assert rank(servers, seed=seed) == ["roomy", "tight"]


def test_of_two_servers_with_equal_free_slots_the_less_loaded_comes_first() -> None:
    servers = [server("busy", load=0.5), server("idle", load=0.1)]

    for seed in range(50):
        assert rank(servers, seed=seed) == ["idle", "busy"]


def test_the_better_of_the_two_sampled_servers_comes_first() -> None:
    servers = [server(f"s{i}", used=i) for i in range(8)]  # s0 has the most free slots
    by_id = {s.id: s for s in servers}

    for seed in range(200):
        first, second = random.Random(seed).sample(servers, 2)
        ranked = rank(servers, seed=seed, limit=len(servers))

        assert set(ranked[:2]) == {first.id, second.id}
        assert by_id[ranked[0]].free > by_id[ranked[1]].free


def test_every_eligible_server_is_ranked_once_when_the_limit_allows() -> None:
    servers = [server(f"s{i}") for i in range(6)]

    ranked = rank(servers, limit=10, seed=3)

    assert sorted(ranked) == [f"s{i}" for i in range(6)]


def test_ranking_is_reproducible_with_the_same_seed() -> None:
    servers = [server(f"s{i}", used=i % 3) for i in range(10)]

    assert rank(servers, seed=11) == rank(servers, seed=11)


def test_ranking_works_without_an_explicit_random_source() -> None:
    servers = [server("a", used=5), server("b", used=0)]

    assert rank_candidates(servers, NOW_MS, THRESHOLD) == ["b", "a"]


# --- spreading -------------------------------------------------------------------------------


def test_equal_servers_are_all_picked_first_across_many_draws() -> None:
    servers = [server(f"s{i}") for i in range(10)]
    rng = random.Random(1234)

    picks = Counter(rank_candidates(servers, NOW_MS, THRESHOLD, rng=rng)[0] for _ in range(1000))

    assert set(picks) == {s.id for s in servers}


def test_equal_servers_do_not_herd_onto_one() -> None:
    servers = [server(f"s{i}") for i in range(10)]

    picks = Counter(rank(servers, seed=seed)[0] for seed in range(1000))

    assert max(picks.values()) < 200  # a fair share is 100


def test_the_emptiest_server_is_not_picked_every_time() -> None:
    servers = [server("empty", used=0), *(server(f"s{i}", used=5) for i in range(9))]

    picks = Counter(rank(servers, seed=seed)[0] for seed in range(1000))

    assert 0 < picks["empty"] < 500  # two random choices: only when it is one of the two


# --- limit -----------------------------------------------------------------------------------


def test_at_most_limit_candidates_are_returned() -> None:
    servers = [server(f"s{i}") for i in range(10)]

    for limit in (1, 2, 3, 7):
        ranked = rank(servers, limit=limit)
        assert len(ranked) == limit
        assert len(set(ranked)) == limit


def test_default_limit_is_four() -> None:
    servers = [server(f"s{i}") for i in range(10)]

    assert len(rank_candidates(servers, NOW_MS, THRESHOLD, rng=random.Random(0))) == 4


def test_fewer_eligible_servers_than_the_limit_returns_them_all() -> None:
    servers = [server("a"), server("b"), server("c", load=0.99)]

    assert sorted(rank(servers, limit=4)) == ["a", "b"]
