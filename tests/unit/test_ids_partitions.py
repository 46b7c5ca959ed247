"""Identifier formats (dispatcher.ids) and room-to-partition mapping (dispatcher.partitions)."""

from __future__ import annotations

import os

import pytest

from dispatcher import ids
from dispatcher.partitions import DEFAULT_PARTITIONS, partition_of, partition_tag


def assert_id(value: str, prefix: str) -> None:
    assert value.startswith(prefix)
    body = value.removeprefix(prefix)
    assert len(body) == 12
    assert set(body) <= set(ids.ALPHABET)


# --- ids -------------------------------------------------------------------------------------


def test_alphabet_is_base57_without_ambiguous_characters() -> None:
    assert len(ids.ALPHABET) == 57
    assert len(set(ids.ALPHABET)) == 57
    assert not set("01IOl") & set(ids.ALPHABET)


def test_dispatch_id_is_ad_prefix_and_twelve_alphabet_characters() -> None:
    assert_id(ids.dispatch_id(), "AD_")


def test_worker_id_is_aw_prefix_and_twelve_alphabet_characters() -> None:
    assert_id(ids.worker_id(), "AW_")


def test_job_id_is_aj_prefix_and_twelve_alphabet_characters() -> None:
    assert_id(ids.job_id("AD_abc", 0), "AJ_")


def test_room_sid_is_rm_prefix_and_twelve_alphabet_characters() -> None:
    assert_id(ids.room_sid("room", 123), "RM_")


def test_new_id_uses_the_given_prefix() -> None:
    assert_id(ids.new_id("XY_"), "XY_")


def test_random_ids_differ() -> None:
    assert len({ids.dispatch_id() for _ in range(1000)}) == 1000


def test_job_id_is_deterministic() -> None:
    assert ids.job_id("AD_abc", 2) == ids.job_id("AD_abc", 2)


def test_job_id_is_stable_across_versions() -> None:
    # Stored job ids are re-derived on replay: the encoding must never change.
    assert ids.job_id("AD_abc", 1) == "AJ_EFJYngUAchcy"


@pytest.mark.parametrize("number", [0, 1, 56, 57, 3248, 3249, 57**12 - 1, 2**72 - 1])
def test_encoding_is_twelve_base57_digits_least_significant_first(number: int) -> None:
    digits = [(number // 57**i) % 57 for i in range(12)]
    assert ids._encode(number) == "".join(ids.ALPHABET[d] for d in digits)


def test_forked_children_draw_different_ids() -> None:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports one id and leaves without running pytest's teardown
        os.write(write, ids.dispatch_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    os.close(write)
    from_child = os.read(read, 64).decode()
    os.close(read)
    assert_id(from_child, "AD_")
    assert from_child != ids.dispatch_id()


def test_job_id_differs_per_attempt() -> None:
    assert len({ids.job_id("AD_abc", attempt) for attempt in range(100)}) == 100


def test_job_id_differs_per_dispatch() -> None:
    assert ids.job_id("AD_abc", 0) != ids.job_id("AD_abd", 0)


def test_room_sid_is_deterministic_and_depends_on_room_and_time() -> None:
    assert ids.room_sid("room", 1) == ids.room_sid("room", 1)
    assert ids.room_sid("room", 1) != ids.room_sid("room", 2)
    assert ids.room_sid("room", 1) != ids.room_sid("other", 1)


def test_derived_id_keeps_parts_apart() -> None:
    assert ids.derived_id("X_", "ab", "c") != ids.derived_id("X_", "a", "bc")


# --- partitions ------------------------------------------------------------------------------


def test_default_partition_count_is_64() -> None:
    assert DEFAULT_PARTITIONS == 64


def test_partition_of_is_stable() -> None:
    assert partition_of("room-1", 64) == partition_of("room-1", 64)


def test_partition_of_does_not_depend_on_python_hash_seed() -> None:
    # zlib.crc32(b"room-1") == 3_203_663_878 everywhere; hash() would vary per process.
    assert partition_of("room-1", 64) == 3_203_663_878 % 64


@pytest.mark.parametrize("partitions", [1, 2, 7, 64, 1000])
def test_partition_of_is_in_range(partitions: int) -> None:
    for i in range(500):
        assert 0 <= partition_of(f"room-{i}", partitions) < partitions


def test_partition_of_spreads_rooms_over_every_partition() -> None:
    used = {partition_of(f"room-{i}", 64) for i in range(2000)}

    assert used == set(range(64))


def test_single_partition_holds_every_room() -> None:
    assert {partition_of(f"room-{i}", 1) for i in range(100)} == {0}


@pytest.mark.parametrize(
    ("partition", "tag"), [(0, "{p00}"), (7, "{p07}"), (42, "{p42}"), (123, "{p123}")]
)
def test_partition_tag_is_a_zero_padded_redis_hash_tag(partition: int, tag: str) -> None:
    assert partition_tag(partition) == tag
