"""The input checks of POST /models/{id}/predict on their fast paths give exactly the answers
of the per-row checks they replaced: PredictSerializer's RowsField against DRF's
ListField(child=DictField()), and runs.artifacts.rows_frame against the per-row loop and the
list-of-dicts frame it used to build (kept below as the reference)."""

import math

import numpy as np
import pandas as pd
import pytest
from rest_framework import serializers

from mlworkspace.errors import InvalidInput, flatten
from models_registry.serializers import PredictSerializer
from recipes.serializers import StrictSerializer
from runs import artifacts
from runs.data import model_input
from runs.tests.factories import trained_model

API = "/api/ml-development"


class DRFPredictSerializer(StrictSerializer):
    """PredictSerializer as it was: every value of every row validated by DRF."""

    rows = serializers.ListField(child=serializers.DictField(), allow_empty=False)


def answer(serializer_class, data):
    s = serializer_class(data=data)
    if s.is_valid():
        return "valid", s.validated_data["rows"]
    return "invalid", flatten(s.errors)


@pytest.mark.parametrize(
    "data",
    [
        {"rows": [{"a": 1, "b": "x"}, {"a": None, "c": [1, {"d": 2}]}]},
        {"rows": [{}]},
        {"rows": []},
        {"rows": None},
        {},
        {"rows": "abc"},
        {"rows": {"a": 1}},
        {"rows": 5},
        {"rows": [{"a": 1}, 3, "x", None, [1], {"b": 2}]},
        {"rows": [[]]},
        {"rows": [{"a": 1}], "extra": 1},
    ],
)
def test_rows_field_answers_as_drf_did(data):
    assert answer(PredictSerializer, data) == answer(DRFPredictSerializer, data)


def test_rows_field_passes_a_list_of_objects_through():
    rows = [{"a": 1, "b": {"nested": [1, 2]}}, {"a": 2.5}]
    s = PredictSerializer(data={"rows": rows})
    assert s.is_valid()
    assert s.validated_data["rows"] == rows


def test_a_row_that_is_not_an_object_is_a_400_naming_it(api_client, baselines, user):
    from runs.tests.factories import register

    model = register(user)
    r = api_client.post(
        f"{API}/models/{model.id}/predict", {"rows": [{"a": 1}, 7, {"b": 2}, "x"]}, format="json"
    )
    assert r.status_code == 400
    assert r.json()["errors"] == [
        {"path": "/rows/1", "message": 'Expected a dictionary of items but got type "int".'},
        {"path": "/rows/3", "message": 'Expected a dictionary of items but got type "str".'},
    ]
    assert r.json()["detail"].startswith("/rows/1: Expected a dictionary")


# --- rows_frame ---------------------------------------------------------------------------


def reference_rows_frame(rows, schema):
    """rows_frame as it was: a Python loop over every cell, then a frame of dicts."""
    columns = schema["input_columns"]
    errors = []
    for index, row in enumerate(rows):
        for col in columns:
            if col["name"] not in row:
                errors.append({"path": f"/rows/{index}/{col['name']}", "message": "missing column"})
                continue
            value = row[col["name"]]
            if col["dtype"] in ("float", "int") and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                errors.append(
                    {
                        "path": f"/rows/{index}/{col['name']}",
                        "message": f"must be a number, got {value!r:.40}",
                    }
                )
        if len(errors) >= 50:
            break
    if errors:
        raise InvalidInput(f"{errors[0]['path']}: {errors[0]['message']}", errors)
    frame = model_input(pd.DataFrame([{c["name"]: row[c["name"]] for c in columns} for row in rows]), schema)
    for col in columns:
        if col["dtype"] in ("date", "datetime"):
            bad = frame[col["name"]].isna()
            if bad.any():
                index = int(bad.to_numpy().nonzero()[0][0])
                raise InvalidInput(
                    f"/rows/{index}/{col['name']}: not a date",
                    [{"path": f"/rows/{index}/{col['name']}", "message": "not a date"}],
                )
    return frame


def outcome(function, rows, schema):
    try:
        return function(rows, schema)
    except InvalidInput as exc:
        return (exc.detail, exc.errors)
    except Exception as exc:  # the same failure, whatever it is
        return type(exc)


def assert_same(rows, schema):
    new, old = outcome(artifacts.rows_frame, rows, schema), outcome(reference_rows_frame, rows, schema)
    if isinstance(old, pd.DataFrame):
        assert isinstance(new, pd.DataFrame), new
        pd.testing.assert_frame_equal(new, old, check_exact=True)
    else:
        assert new == old


SCHEMA = {
    "input_columns": [
        {"name": "store", "dtype": "string"},
        {"name": "week", "dtype": "date"},
        {"name": "price", "dtype": "float"},
        {"name": "promo", "dtype": "int"},
        {"name": "flag", "dtype": "bool"},
    ]
}


def good_rows(n=30):
    return [
        {
            "store": f"s{i % 4}",
            "week": f"2024-01-{1 + i % 28:02d}",
            "price": 1.5 + i,
            "promo": i % 2,
            "flag": i % 3 == 0,
            "customer_id": f"c{i}",
        }
        for i in range(n)
    ]


def test_rows_frame_builds_the_same_frame():
    rows = good_rows()
    names = [c["name"] for c in SCHEMA["input_columns"]]
    assert artifacts._table(rows, names, ["price", "promo"]) is not None  # the fast path is taken
    frame = artifacts.rows_frame(rows, SCHEMA)
    assert list(frame.columns) == ["store", "week", "price", "promo", "flag"]
    assert str(frame["price"].dtype) == "float64" and str(frame["promo"].dtype) == "int64"
    assert frame["week"].dtype.kind == "M" and frame["flag"].dtype == bool
    assert_same(rows, SCHEMA)


CELLS = [
    1,
    2.5,
    0,
    -3,
    math.nan,
    None,
    "a",
    "",
    "2024-01-01",
    "not a date",
    True,
    False,
    [1, 2],
    {"k": 1},
    2**70,
    2**63,
    1e308,
    np.float64(2.5),
    np.int64(4),
]


@pytest.mark.parametrize("column", ["store", "week", "price", "promo", "flag"])
@pytest.mark.parametrize("cell", CELLS, ids=repr)
def test_rows_frame_answers_as_before_for_any_value(column, cell):
    rows = good_rows(6)
    rows[2][column] = cell
    assert_same(rows, SCHEMA)
    for row in rows:  # the whole column of that value
        row[column] = cell
    assert_same(rows, SCHEMA)


def test_rows_frame_names_missing_columns_and_non_numbers_as_before():
    rows = good_rows(40)
    del rows[3]["price"]
    rows[5]["promo"] = "2"
    rows[5]["price"] = True
    del rows[9]["store"]
    for i in range(12, 40):
        rows[i]["price"] = None
        rows[i]["promo"] = [1]
    with pytest.raises(InvalidInput) as caught:
        artifacts.rows_frame(rows, SCHEMA)
    errors = caught.value.errors
    assert errors[:4] == [
        {"path": "/rows/3/price", "message": "missing column"},
        {"path": "/rows/5/price", "message": "must be a number, got True"},
        {"path": "/rows/5/promo", "message": "must be a number, got '2'"},
        {"path": "/rows/9/store", "message": "missing column"},
    ]
    assert len(errors) == 50 and errors[-1]["path"] == "/rows/34/promo"  # 4 + 2 per row from row 12
    assert_same(rows, SCHEMA)


@pytest.mark.parametrize(
    "schema",
    [
        {"input_columns": [{"name": "price", "dtype": "float"}]},
        {"input_columns": [{"name": "week", "dtype": "date"}]},
        {"input_columns": []},
    ],
)
def test_rows_frame_with_fewer_than_two_columns(schema):
    assert_same(good_rows(5), schema)
    bad = good_rows(5)
    bad[1]["price"] = "x"
    bad[2]["week"] = "x"
    assert_same(bad, schema)


def test_rows_frame_of_rows_that_are_not_objects():
    assert_same(
        [{"store": "s", "week": "2024-01-01", "price": 1.0, "promo": 1, "flag": True}, [1, 2]], SCHEMA
    )
    assert_same([], SCHEMA)


@pytest.mark.django_db
def test_predict_answers_as_before_on_a_trained_model(baselines, user):
    from runs.families import pricing

    model = trained_model(user)
    _, schema = artifacts.load_model(model)
    frame = pricing.generate(200, 9).drop(columns=["units"]).head(50)
    frame["week"] = frame["week"].astype(str)
    rows = frame.to_dict(orient="records")
    assert_same(rows, schema)
    fitted, _ = artifacts.load_model(model)
    family = artifacts.get_family("pricing")
    assert artifacts.predict_rows(model, rows) == artifacts.json_safe(
        list(family.predict(fitted, reference_rows_frame(rows, schema)))
    )


@pytest.mark.django_db
def test_a_large_batch_is_predicted_in_threads_with_the_same_answer(baselines, user, settings, monkeypatch):
    from runs.families import pricing

    model = trained_model(user)
    frame = pricing.generate(200, 9).drop(columns=["units"]).head(60)
    frame["week"] = frame["week"].astype(str)
    rows = frame.to_dict(orient="records")
    settings.PREDICT_THREADS = 1
    one_call = artifacts.predict_rows(model, rows)
    calls: list[int] = []
    real = pricing.predict

    def counting(fitted, chunk):
        calls.append(len(chunk))
        return real(fitted, chunk)

    monkeypatch.setattr(pricing, "predict", counting)
    monkeypatch.setattr(artifacts, "PREDICT_PARALLEL_MIN_ROWS", 20)
    settings.PREDICT_THREADS = 2
    assert artifacts.predict_rows(model, rows) == one_call
    assert len(calls) >= 2 and sum(calls) == 60  # chunks end where a store's product begins
    calls.clear()
    assert artifacts.predict_rows(model, rows[:39]) == one_call[:39]  # under 2 × 20 rows: one call
    assert calls == [39]
