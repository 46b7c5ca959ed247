"""Rendezvous hashing of partitions onto scheduler nodes."""

from __future__ import annotations

from dispatcher.scheduler.ownership import owned_by, owner

PARTITIONS = 64


def assignment(members: list[str]) -> dict[int, str]:
    """partition -> owner, as each member computes its own share."""
    result: dict[int, str] = {}
    for member in members:
        others = [m for m in members if m != member]
        for partition in owned_by(member, others, PARTITIONS):
            assert partition not in result, f"partition {partition} has two owners"
            result[partition] = member
    return result


def test_owner_of_no_members_is_none() -> None:
    assert owner(0, []) is None


def test_sole_member_owns_every_partition() -> None:
    assert owned_by("n1", ["n1"], PARTITIONS) == set(range(PARTITIONS))


def test_owner_is_one_of_the_members() -> None:
    members = ["n1", "n2", "n3"]

    assert all(owner(p, members) in members for p in range(PARTITIONS))


def test_owner_does_not_depend_on_member_order() -> None:
    members = ["n1", "n2", "n3", "n4"]

    for p in range(PARTITIONS):
        assert owner(p, members) == owner(p, list(reversed(members)))


def test_owned_by_counts_the_node_itself_as_a_member() -> None:
    assert owned_by("n1", [], PARTITIONS) == set(range(PARTITIONS))
    assert owned_by("n1", ["n2"], PARTITIONS) == owned_by("n1", ["n1", "n2"], PARTITIONS)


def test_owned_by_ignores_duplicate_members() -> None:
    assert owned_by("n1", ["n2", "n2", "n1"], PARTITIONS) == owned_by("n1", ["n2"], PARTITIONS)


def test_owned_by_agrees_with_owner() -> None:
    members = ["n1", "n2", "n3"]

    mine = owned_by("n2", members, PARTITIONS)

    assert mine == {p for p in range(PARTITIONS) if owner(p, members) == "n2"}


def test_every_partition_has_exactly_one_owner() -> None:
    for members in (["n1"], ["n1", "n2"], ["n1", "n2", "n3"], [f"node-{i}" for i in range(7)]):
        assert set(assignment(members)) == set(range(PARTITIONS))


def test_two_members_split_partitions_roughly_evenly() -> None:
    split = assignment(["n1", "n2"])

    for member in ("n1", "n2"):
        share = sum(1 for owner_ in split.values() if owner_ == member)
        assert 24 <= share <= 40  # 32 +- 25%


def test_adding_a_third_member_moves_about_a_third_of_the_partitions() -> None:
    before = assignment(["n1", "n2"])
    after = assignment(["n1", "n2", "n3"])

    moved = [p for p in range(PARTITIONS) if before[p] != after[p]]

    assert 15 <= len(moved) <= 30


def test_adding_a_member_only_moves_partitions_to_it() -> None:
    before = assignment(["n1", "n2"])
    after = assignment(["n1", "n2", "n3"])

    assert {after[p] for p in range(PARTITIONS) if before[p] != after[p]} == {"n3"}


def test_removing_a_member_only_moves_its_own_partitions() -> None:
    before = assignment(["n1", "n2", "n3"])
    after = assignment(["n1", "n3"])

    assert {before[p] for p in range(PARTITIONS) if before[p] != after[p]} == {"n2"}
