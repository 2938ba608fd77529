"""experiments.assignment: a stable hash decides a unit's arm."""

import hashlib

import pytest

from experiments.assignment import assign_arm, hash_fraction


def test_hash_fraction_is_sha256_of_experiment_and_unit():
    expected = int(hashlib.sha256(b"exp_01:c1").hexdigest()[:16], 16) / 2**64
    assert hash_fraction("exp_01", "c1") == expected
    assert hash_fraction("exp_01", "c1") == hash_fraction("exp_01", "c1")
    assert hash_fraction("exp_01", "c1") != hash_fraction("exp_02", "c1")
    assert 0 <= expected < 1


def test_a_unit_always_sees_the_same_arm():
    arms = {assign_arm("exp_x", f"u{i}", 0.3) for i in range(50) for _ in range(3)}
    assert arms == {"champion", "challenger"}
    for i in range(200):
        first = assign_arm("exp_x", f"u{i}", 0.3)
        assert all(assign_arm("exp_x", f"u{i}", 0.3) == first for _ in range(3))


@pytest.mark.parametrize("split", [0.1, 0.5])
def test_split_accuracy_on_100k_units(split):
    share = (
        sum(assign_arm("exp_split", f"customer-{i}", split) == "challenger" for i in range(100_000)) / 100_000
    )
    assert abs(share - split) < 0.01
