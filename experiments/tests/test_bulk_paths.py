"""The bulk paths of a batch predict give what the per-row ones gave: the arms
(challenger_mask vs assign_arm), the stored numbers (finite_all vs finite), the
units (unit_values vs unit_value), the 400s naming the row, and the exposures stored when a
unit comes twice in one request."""

import math

import numpy as np
import pytest

from experiments.assignment import assign_arm, challenger_mask
from experiments.models import Exposure
from experiments.services.values import finite, finite_all, unit_value, unit_values

from .conftest import API, start


@pytest.mark.parametrize("split", [0.1, 0.5, 0.9, 1e-12])
def test_challenger_mask_gives_the_arms_of_assign_arm(split):
    units = [f"customer-{i}" for i in range(5000)] + ["é", "x" * 200, "0", "a:b", " "]
    expected = [assign_arm("exp_01abc", unit, split) for unit in units]
    assert challenger_mask("exp_01abc", units, split).tolist() == [a == "challenger" for a in expected]
    if split >= 0.1:
        assert set(expected) == {"champion", "challenger"}  # both arms are compared


def test_challenger_mask_of_no_units():
    assert challenger_mask("exp_x", [], 0.5).tolist() == []


def test_the_uint64_to_float_rounding_matches_python():
    # assign_arm divides a Python int by 2**64; challenger_mask converts a uint64 array to
    # float64 first. Both round to nearest: the same fractions at the edges of the range too.
    rng = np.random.default_rng(3)
    values = [2**64 - 1, 2**64 - 1024, 2**64 - 1025, 2**64 - 2048, 2**53 + 1, 2**63 + 1025, 0, 1]
    values += [int(v) for v in rng.integers(0, 2**64, size=20_000, dtype=np.uint64)]
    as_numpy = np.array(values, dtype=np.uint64).astype(np.float64) / float(1 << 64)
    assert as_numpy.tolist() == [v / float(1 << 64) for v in values]


@pytest.mark.parametrize(
    "values",
    [
        [1.5, 2.0, -3.25],
        [1.5, math.nan, 2.0],
        [1.5, math.inf],
        [None, None],
        ["send_offer", None],
        [1, 2.5, True, None, "x", 10**400, -(10**400), np.float64(2.5), np.int64(3)],
        [True, False],
        [],
    ],
)
def test_finite_all_is_finite_of_each(values):
    assert finite_all(values) == [finite(v) for v in values]
    assert [type(v) for v in finite_all(values)] == [type(finite(v)) for v in values]


@pytest.mark.parametrize(
    "values, ok",
    [
        (["c1", "c2", "c1"], True),
        ([1, 2, 30], True),
        (["c1", 2], True),
        (["c1", ""], False),
        (["c1", "x" * 201], False),
        (["x" * 200], True),
        (["c1", "c\x002"], False),  # PostgreSQL's text holds no NUL: a 400, never a 500
        (["c1", None], False),
        ([True, 1], False),
        ([1.0], False),
        ([["c1"]], False),
    ],
)
def test_unit_values_is_unit_value_of_each(values, ok):
    expected = [unit_value(v) for v in values]
    assert (None not in expected) is ok
    assert unit_values(values) == (expected if ok else None)


@pytest.mark.django_db
def test_a_bad_unit_is_a_400_naming_the_first_bad_rows(api_client, paper_champion, paper_twin):
    start(api_client, paper_champion, paper_twin)
    rows = [{"customer_id": f"c{i}"} for i in range(60)]
    rows[4]["customer_id"] = "c\x004"
    del rows[7]["customer_id"]
    for i in range(10, 60):
        rows[i]["customer_id"] = True
    r = api_client.post(f"{API}/models/{paper_champion.pk}/predict", {"rows": rows}, format="json")
    assert r.status_code == 400
    errors = r.json()["errors"]
    assert len(errors) == 50  # at most 50 per answer
    assert errors[0] == {
        "path": "/rows/4/customer_id",
        "message": "must be a non-empty string (at most 200 characters, no NUL) or an integer",
    }
    assert errors[1] == {
        "path": "/rows/7/customer_id",
        "message": "missing: the running experiment assigns arms by customer_id",
    }
    assert errors[2]["path"] == "/rows/10/customer_id" and errors[-1]["path"] == "/rows/57/customer_id"
    assert r.json()["detail"] == f"{errors[0]['path']}: {errors[0]['message']}"
    assert not Exposure.objects.exists()


@pytest.mark.django_db
def test_a_unit_twice_in_one_request_stores_its_last_rows_answers(api_client, champion, challenger, rows):
    exp = start(api_client, champion, challenger, mode="shadow", split=...).json()["id"]
    batch = [dict(r) for r in rows[:6]]
    batch[5]["customer_id"] = "c1"  # c1 again, with another row's inputs
    batch[3]["customer_id"] = 3  # an integer unit is stored as its text
    body = api_client.post(f"{API}/models/{champion.pk}/predict", {"rows": batch}, format="json").json()
    theirs = api_client.post(f"{API}/models/{challenger.pk}/predict", {"rows": batch}, format="json").json()
    assert theirs["predictions"] == body["predictions"]  # the champion answers either way
    stored = {e.unit: e for e in Exposure.objects.filter(experiment_id=exp)}
    assert sorted(stored) == ["3", "c0", "c1", "c2", "c4"]
    assert stored["c1"].champion_prediction == pytest.approx(body["predictions"][5])
    assert stored["c1"].champion_prediction != pytest.approx(body["predictions"][1])
    assert stored["3"].champion_prediction == pytest.approx(body["predictions"][3])
    assert all(e.challenger_prediction is not None and e.arm == "champion" for e in stored.values())


@pytest.mark.django_db
def test_ab_exposures_keep_their_first_arm_and_time(api_client, champion, challenger, rows):
    exp = start(api_client, champion, challenger, split=0.5).json()["id"]
    batch = [dict(r) for r in rows[:12]] + [dict(rows[0])]  # c0 twice
    first = api_client.post(f"{API}/models/{champion.pk}/predict", {"rows": batch}, format="json").json()
    assert first["arms"][0] == first["arms"][-1] == assign_arm(exp, "c0", 0.5)
    stored = dict(Exposure.objects.filter(experiment_id=exp).values_list("unit", "arm"))
    assert stored == {f"c{i}": assign_arm(exp, f"c{i}", 0.5) for i in range(12)}
    seen = dict(Exposure.objects.values_list("unit", "first_seen_at"))
    api_client.post(f"{API}/models/{champion.pk}/predict", {"rows": rows[:20]}, format="json")
    again = dict(Exposure.objects.values_list("unit", "first_seen_at"))
    assert len(again) == 20 and all(again[u] == t for u, t in seen.items())
