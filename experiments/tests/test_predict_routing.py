"""POST /models/{id}/predict while an experiment runs (issue #14 §5): A/B — each row served by
its unit's arm; shadow — the champion answers and the challenger's answers are stored. Real
trained models (the challenger on another world, so the two answer differently)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from experiments import services
from experiments.assignment import assign_arm
from experiments.models import Exposure
from mlworkspace.errors import InvalidInput
from runs import artifacts

from .conftest import API, start

pytestmark = pytest.mark.django_db


def predict(client, model, rows):
    return client.post(f"{API}/models/{model.pk}/predict", {"rows": rows}, format="json")


def direct(model, rows) -> list:
    return artifacts.predict_rows(model, rows)


def test_without_an_experiment_the_answer_is_unchanged(api_client, champion, rows):
    r = predict(api_client, champion, rows[:3])
    assert r.status_code == 200
    assert r.json() == {"model_id": champion.pk, "predictions": direct(champion, rows[:3])}


def test_ab_serves_each_row_by_its_units_arm(api_client, champion, challenger, rows):
    exp = start(api_client, champion, challenger, split=0.5).json()["id"]
    by_arm = {"champion": direct(champion, rows), "challenger": direct(challenger, rows)}
    assert by_arm["champion"] != by_arm["challenger"]  # the test can tell the arms apart
    expected_arms = [assign_arm(exp, f"c{i}", 0.5) for i in range(len(rows))]
    assert set(expected_arms) == {"champion", "challenger"}
    r = predict(api_client, champion, rows)
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["experiment_id"] == exp and body["mode"] == "ab" and body["model_id"] == champion.pk
    assert body["arms"] == expected_arms and "arm" not in body  # two arms in this request
    assert body["models"] == {"champion": champion.pk, "challenger": challenger.pk}
    assert body["predictions"] == [by_arm[arm][i] for i, arm in enumerate(expected_arms)]
    exposures = dict(Exposure.objects.filter(experiment_id=exp).values_list("unit", "arm"))
    assert exposures == {f"c{i}": arm for i, arm in enumerate(expected_arms)}
    first_seen = dict(Exposure.objects.values_list("unit", "first_seen_at"))
    # The same units through the challenger's endpoint: the same arms, the same answers, no
    # new exposures.
    again = predict(api_client, challenger, rows).json()
    assert again["arms"] == expected_arms and again["predictions"] == body["predictions"]
    assert dict(Exposure.objects.values_list("unit", "first_seen_at")) == first_seen
    # One unit: the arm of the request.
    one = predict(api_client, champion, [rows[7]]).json()
    assert one["arm"] == expected_arms[7] and one["arms"] == [expected_arms[7]]
    assert one["predictions"] == [by_arm[expected_arms[7]][7]]


def test_ab_errors_name_the_rows_of_the_request(api_client, champion, challenger, rows):
    exp = start(api_client, champion, challenger, split=0.5).json()["id"]
    arms = [assign_arm(exp, f"c{i}", 0.5) for i in range(len(rows))]
    missing = [dict(r) for r in rows]
    del missing[3]["customer_id"]
    r = predict(api_client, champion, missing)
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "/rows/3/customer_id"
    missing[3]["customer_id"] = None
    assert predict(api_client, champion, missing).json()["errors"][0]["path"] == "/rows/3/customer_id"
    for arm in ("champion", "challenger"):
        bad = [dict(r) for r in rows]
        j = max(i for i, a in enumerate(arms) if a == arm)  # not the first row of its arm
        bad[j]["price"] = "cheap"
        r = predict(api_client, champion, bad)
        assert r.status_code == 400
        assert r.json()["errors"][0]["path"] == f"/rows/{j}/price" and r.json()["detail"].startswith(
            f"/rows/{j}/price"
        )
    assert not Exposure.objects.exists()  # nothing recorded for a refused request


def test_shadow_answers_with_the_champion_and_stores_the_challengers_answers(
    api_client, champion, challenger, rows
):
    exp = start(api_client, champion, challenger, mode="shadow", split=..., horizon=5).json()["id"]
    mine, theirs = direct(champion, rows), direct(challenger, rows)
    for model in (champion, challenger):  # posted to either model, the champion answers
        body = predict(api_client, model, rows).json()
        assert body["predictions"] == mine and body["experiment_id"] == exp and body["mode"] == "shadow"
        assert body["arm"] == "champion" and body["arms"] == ["champion"] * len(rows)
    stored = {e.unit: e for e in Exposure.objects.filter(experiment_id=exp)}
    assert len(stored) == len(rows)
    for i in range(len(rows)):
        e = stored[f"c{i}"]
        assert e.arm == "champion" and e.last_seen_at is not None
        assert e.champion_prediction == pytest.approx(mine[i]) and e.challenger_prediction == pytest.approx(
            theirs[i]
        )
    # Outcomes: each model's absolute error, compared per unit.
    actual = [float(i % 7) * 10 for i in range(10)]
    outcomes = [{"unit": f"c{i}", "value": v} for i, v in enumerate(actual)]
    assert (
        api_client.post(
            f"{API}/experiments/{exp}/outcomes", {"outcomes": outcomes}, format="json"
        ).status_code
        == 200
    )
    stats = api_client.get(f"{API}/experiments/{exp}").json()["statistics"]
    analysis = stats["analysis"]
    assert analysis["scored"] == len(rows) and analysis["challenger_failed"] == 0
    differences = [t - m for m, t in zip(mine, theirs, strict=True)]
    assert analysis["agreement"]["n"] == len(rows)
    assert analysis["agreement"]["mean"] == pytest.approx(sum(differences) / len(rows))
    assert analysis["agreement"]["mean_abs"] == pytest.approx(sum(abs(d) for d in differences) / len(rows))
    champion_errors = [abs(mine[i] - v) for i, v in enumerate(actual)]
    challenger_errors = [abs(theirs[i] - v) for i, v in enumerate(actual)]
    errors = analysis["errors"]
    assert errors["n"] == 10 and analysis["final"] is True
    assert errors["champion"]["mean"] == pytest.approx(sum(champion_errors) / 10)
    assert errors["challenger"]["mean"] == pytest.approx(sum(challenger_errors) / 10)
    gap = [c - m for m, c in zip(champion_errors, challenger_errors, strict=True)]
    assert errors["difference"]["mean"] == pytest.approx(sum(gap) / 10)
    assert errors["difference"]["test"]["name"] == "paired t-test"


def test_a_failing_shadow_never_changes_the_champions_answer(
    api_client, champion, challenger, rows, monkeypatch
):
    exp = start(api_client, champion, challenger, mode="shadow", split=...).json()["id"]
    real = artifacts.predict_rows

    def challenger_fails(model, rows):
        if model.pk == challenger.pk:
            raise InvalidInput("/rows/0/price: not what the challenger expects", [])
        return real(model, rows)

    monkeypatch.setattr(artifacts, "predict_rows", challenger_fails)
    body = predict(api_client, champion, rows[:4]).json()
    assert body["predictions"] == real(champion, rows[:4]) and body["arm"] == "champion"
    assert (
        list(Exposure.objects.filter(experiment_id=exp).values_list("challenger_prediction", flat=True))
        == [None] * 4
    )
    stats = api_client.get(f"{API}/experiments/{exp}").json()["statistics"]["analysis"]
    assert stats["scored"] == 4 and stats["challenger_failed"] == 4


def test_after_the_stop_predict_is_unchanged_again(api_client, champion, challenger, rows):
    exp = start(api_client, champion, challenger).json()["id"]
    assert "experiment_id" in predict(api_client, champion, rows[:2]).json()
    api_client.post(f"{API}/experiments/{exp}/stop", {"winner": "none"}, format="json")
    assert set(predict(api_client, champion, rows[:2]).json()) == {"model_id", "predictions"}


def test_ab_outcomes_end_to_end(api_client, champion, challenger, rows):
    exp = start(api_client, champion, challenger, split=0.5, horizon=5).json()["id"]
    arms = predict(api_client, champion, rows).json()["arms"]
    values = {f"c{i}": float(i) for i in range(len(rows))}
    body = {
        "outcomes": [{"unit": u, "value": v} for u, v in values.items()] + [{"unit": "ghost", "value": 1}]
    }
    result = api_client.post(f"{API}/experiments/{exp}/outcomes", body, format="json").json()
    assert (
        result["recorded"] == len(rows)
        and result["unknown_units"] == 1
        and result["unknown_examples"] == ["ghost"]
    )
    analysis = api_client.get(f"{API}/experiments/{exp}").json()["statistics"]["analysis"]
    for arm in ("champion", "challenger"):
        mine = [values[f"c{i}"] for i, a in enumerate(arms) if a == arm]
        assert analysis["arms"][arm]["n"] == len(mine) == analysis["arms"][arm]["units"]
        assert analysis["arms"][arm]["mean"] == pytest.approx(sum(mine) / len(mine))
    assert analysis["kind"] == "mean" and analysis["test"]["name"] == "Welch's t-test"
    assert analysis["final"] is True and analysis["statement"].startswith("Final")


def test_predict_queries_do_not_grow_with_the_rows(api_client, champion, challenger, rows):
    start(api_client, champion, challenger, split=0.5)
    predict(api_client, champion, rows[:2])  # warm the model cache
    with CaptureQueriesContext(connection) as few:
        predict(api_client, champion, rows[2:4])
    with CaptureQueriesContext(connection) as many:
        predict(api_client, champion, rows[4:])
    assert len(many.captured_queries) == len(few.captured_queries) <= 8


def test_the_loaded_model_is_cached_in_process(champion, monkeypatch, rows):
    artifacts.load_model(champion)

    def no_disk(*args, **kwargs):
        raise AssertionError("the artifact was read again")

    monkeypatch.setattr(artifacts, "fetch_model", no_disk)
    fitted, schema = artifacts.load_model(champion)
    assert schema["input_columns"] and services.experiment_predict(champion, rows[:1])["predictions"]
