"""The experiments API (issue #14 §5): start, list, detail with statistics, outcomes, stop —
every error a 400 naming its field, another client's experiment a 404."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from audit.models import AuditEvent
from experiments.models import Experiment, ExperimentStatus, Exposure, Outcome
from models_registry.models import MLModel, ModelStatus
from models_registry.services import model_register
from recipes.models import Recipe

from .conftest import API, start

pytestmark = pytest.mark.django_db


# Nothing here predicts: the models are trained on paper (conftest.PAPER_ARTIFACT). The
# predict routing is tested with real models in test_predict_routing.py.
@pytest.fixture
def champion(paper_champion):
    return paper_champion


@pytest.fixture
def twin(paper_twin):
    return paper_twin


def paths(response) -> set[str]:
    return {e["path"] for e in response.json()["errors"]}


def test_start_an_ab_test_and_read_it(api_client, user, champion, twin):
    r = start(api_client, champion, twin, split=0.1)
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["id"].startswith("exp_") and body["status"] == "running" and body["winner"] == ""
    assert (body["champion_id"], body["challenger_id"], body["mode"]) == (champion.pk, twin.pk, "ab")
    assert body["split"] == 0.1 and body["horizon"] == 100 and body["horizon_json"] == {"given": True}
    assert body["alpha"] == 0.05 and body["metric"] == "outcome" and body["created_by"] == user.username
    stats = body["statistics"]
    assert stats["units"] == {"champion": 0, "challenger": 0}
    assert stats["analysis"]["test"] is None and "Not enough outcomes" in stats["analysis"]["statement"]
    event = AuditEvent.objects.get(action="experiment.start")
    assert event.object_id == body["id"] and event.changes["mode"] == [None, "ab"]
    r = api_client.get(f"{API}/experiments/{body['id']}")
    assert r.status_code == 200 and r.json()["statistics"]["horizon"] == 100


def test_the_horizon_is_planned_from_a_baseline(api_client, champion, twin):
    r = start(api_client, champion, twin, horizon=..., baseline_rate=0.1, mde=0.02)
    assert r.status_code == 201, r.json()
    assert r.json()["horizon"] == 3839
    assert r.json()["horizon_json"] == {
        "given": False,
        "baseline_rate": 0.1,
        "mde": 0.02,
        "alpha": 0.05,
        "power": 0.8,
    }
    Experiment.objects.update(status="stopped", winner="none")
    r = start(api_client, champion, twin, horizon=..., baseline_sd=10, mde=2)
    assert r.status_code == 201 and r.json()["horizon"] == 393


def test_shadow_needs_no_split(api_client, champion, twin):
    r = start(api_client, champion, twin, mode="shadow", split=...)
    assert r.status_code == 201, r.json()
    assert r.json()["mode"] == "shadow" and r.json()["split"] == 0.5


@pytest.mark.parametrize(
    "body, path",
    [
        ({"mode": "abc"}, "/mode"),
        ({"split": 0}, "/split"),
        ({"split": 1.5}, "/split"),
        ({"split": "a lot"}, "/split"),
        ({"split": 10**400}, "/split"),
        ({"split": ...}, "/split"),
        ({"unit_key": "customer id"}, "/unit_key"),
        ({"unit_key": ""}, "/unit_key"),
        ({"horizon": ...}, "/horizon"),
        ({"horizon": 1}, "/horizon"),
        ({"horizon": "many"}, "/horizon"),
        ({"baseline_rate": 0.1, "mde": 0.02}, "/horizon"),
        ({"horizon": ..., "baseline_rate": 0.1}, "/mde"),
        ({"horizon": ..., "baseline_rate": 1.2, "mde": 0.1}, "/baseline_rate"),
        ({"horizon": ..., "baseline_rate": 0.9, "mde": 0.2}, "/mde"),
        ({"horizon": ..., "baseline_sd": -1, "mde": 0.2}, "/baseline_sd"),
        ({"horizon": ..., "baseline_rate": 0.5, "baseline_sd": 1, "mde": 0.2}, "/baseline_sd"),
        ({"alpha": 0.7}, "/alpha"),
        ({"metric": ""}, "/metric"),
        ({"colour": "red"}, "/colour"),
        ({"recipe_id": "recipe_nope"}, "/recipe_id"),
        ({"champion_id": "model_nope"}, "/champion_id"),
        ({"challenger_id": "model_nope"}, "/challenger_id"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api_client, champion, twin, body, path):
    r = start(api_client, champion, twin, **body)
    assert r.status_code == 400, r.json()
    assert path in paths(r)
    assert not Experiment.objects.exists()


def test_the_champion_and_the_challenger_are_checked(api_client, user, champion, twin):
    # The champion must be the recipe's production model.
    r = start(api_client, twin, champion)
    assert (
        r.status_code == 400
        and paths(r) == {"/champion_id"}
        and "not the recipe's production model" in r.json()["detail"]
    )
    # The challenger: another model than the champion...
    r = start(api_client, champion, champion)
    assert r.status_code == 400 and paths(r) == {"/challenger_id"}
    # ... trained ...
    untrained = model_register(
        user=user, name="Untrained", recipe=champion.recipe, recipe_version=champion.recipe_version
    )
    r = start(api_client, champion, untrained)
    assert (
        r.status_code == 400
        and paths(r) == {"/challenger_id"}
        and "no trained artifact" in r.json()["detail"]
    )
    # ... of the same recipe.
    nba = Recipe.objects.get(pk="recipe_nba_base")
    elsewhere = model_register(user=user, name="Elsewhere", recipe=nba, recipe_version=nba.current_version)
    r = start(api_client, champion, elsewhere)
    assert r.status_code == 400 and paths(r) == {"/challenger_id"} and "another recipe" in r.json()["detail"]
    # ... and not archived.
    MLModel.objects.filter(pk=twin.pk).update(status=ModelStatus.ARCHIVED)
    r = start(api_client, champion, twin)
    assert r.status_code == 400 and paths(r) == {"/challenger_id"}
    assert not Experiment.objects.exists()


def test_a_second_running_experiment_on_a_recipe_is_a_409(api_client, champion, twin):
    first = start(api_client, champion, twin).json()["id"]
    r = start(api_client, champion, twin, mode="shadow")
    assert r.status_code == 409 and paths(r) == {"/recipe_id"} and first in r.json()["detail"]
    assert Experiment.objects.filter(status=ExperimentStatus.RUNNING).count() == 1
    # Stopped, the recipe may start another.
    assert (
        api_client.post(f"{API}/experiments/{first}/stop", {"winner": "none"}, format="json").status_code
        == 200
    )
    assert start(api_client, champion, twin, mode="shadow").status_code == 201


def test_list_filters_and_query_count(api_client, user, champion, twin):
    ids = []
    for _ in range(3):
        ids.append(start(api_client, champion, twin).json()["id"])
        api_client.post(f"{API}/experiments/{ids[-1]}/stop", {"winner": "none"}, format="json")
    running = start(api_client, champion, twin).json()["id"]
    r = api_client.get(f"{API}/experiments", {"recipe_id": champion.recipe_id, "status": "running"})
    assert r.status_code == 200 and [e["id"] for e in r.json()["results"]] == [running]
    r = api_client.get(f"{API}/experiments", {"status": "stopped"})
    assert {e["id"] for e in r.json()["results"]} == set(ids)
    assert api_client.get(f"{API}/experiments", {"model_id": twin.pk}).json()["count"] == 4
    assert api_client.get(f"{API}/experiments", {"recipe_id": "recipe_nba_base"}).json()["count"] == 0
    assert api_client.get(f"{API}/experiments", {"status": "sideways"}).status_code == 400
    with CaptureQueriesContext(connection) as few:
        api_client.get(f"{API}/experiments")
    Experiment.objects.filter(pk=running).update(status="stopped", winner="none")
    for _ in range(3):
        start(api_client, champion, twin)
        Experiment.objects.filter(status="running").update(status="stopped", winner="none")
    with CaptureQueriesContext(connection) as more:
        r = api_client.get(f"{API}/experiments")
    assert r.json()["count"] == 7
    assert len(more.captured_queries) == len(few.captured_queries)


# --------------------------------------------------------------------------- outcomes


def expose(experiment_id: str, units: list[str], arm: str = "champion"):
    Exposure.objects.bulk_create(
        Exposure(experiment_id=experiment_id, unit=u, arm=arm, first_seen_at="2026-01-01T00:00:00Z")
        for u in units
    )


def test_outcomes_are_recorded_and_unknown_units_reported(api_client, champion, twin):
    exp = start(api_client, champion, twin, horizon=2).json()["id"]
    expose(exp, ["c1", "c2"], "champion")
    expose(exp, ["c3", "c4"], "challenger")
    outcomes = [
        {"unit": u, "value": v} for u, v in [("c1", 0), ("c2", 1), ("c3", 1), ("c4", 1), ("x9", 1), ("x8", 0)]
    ]
    r = api_client.post(f"{API}/experiments/{exp}/outcomes", {"outcomes": outcomes}, format="json")
    assert r.status_code == 200, r.json()
    assert r.json() == {
        "experiment_id": exp,
        "received": 6,
        "recorded": 4,
        "replaced": 0,
        "duplicates": 0,
        "unknown_units": 2,
        "unknown_examples": ["x9", "x8"],
    }
    assert dict(Outcome.objects.values_list("unit", "arm")) == {
        "c1": "champion",
        "c2": "champion",
        "c3": "challenger",
        "c4": "challenger",
    }
    # Last write wins (also within one request); an integer unit is its text.
    expose(exp, ["7"], "challenger")
    r = api_client.post(
        f"{API}/experiments/{exp}/outcomes",
        {"outcomes": [{"unit": "c1", "value": 0.0}, {"unit": "c1", "value": 1.0}, {"unit": 7, "value": 0}]},
        format="json",
    )
    assert r.json()["recorded"] == 2 and r.json()["replaced"] == 1 and r.json()["duplicates"] == 1
    assert Outcome.objects.get(unit="c1").value == 1.0 and Outcome.objects.get(unit="7").arm == "challenger"
    stats = api_client.get(f"{API}/experiments/{exp}").json()["statistics"]
    assert stats["units"] == {"champion": 2, "challenger": 3}
    arms = stats["analysis"]["arms"]
    assert (arms["champion"]["n"], arms["champion"]["mean"]) == (2, 1.0)
    assert (arms["challenger"]["n"], arms["challenger"]["mean"]) == (3, pytest.approx(2 / 3))
    assert stats["outcomes"] == {"n": 5, "binary": True}
    assert stats["analysis"]["kind"] == "proportion" and stats["analysis"]["final"] is True
    event = AuditEvent.objects.filter(action="experiment.outcomes").order_by("at").first()
    assert event.object_id == exp and event.detail["unknown_units"] == 2


@pytest.mark.parametrize(
    "body, path",
    [
        ({"outcomes": "lots"}, "/outcomes"),
        ({"outcomes": []}, "/outcomes"),
        ({}, "/outcomes"),
        ({"outcomes": [{"unit": "c1", "value": 1}, {"unit": "c2", "value": "high"}]}, "/outcomes/1/value"),
        ({"outcomes": [{"unit": "c1", "value": True}]}, "/outcomes/0/value"),
        ({"outcomes": [{"unit": "c1", "value": 10**400}]}, "/outcomes/0/value"),
        ({"outcomes": [{"unit": "c1"}]}, "/outcomes/0/value"),
        ({"outcomes": [{"value": 1}]}, "/outcomes/0/unit"),
        ({"outcomes": [{"unit": "", "value": 1}]}, "/outcomes/0/unit"),
        ({"outcomes": [{"unit": ["c1"], "value": 1}]}, "/outcomes/0/unit"),
        ({"outcomes": [{"unit": "c1", "value": 1, "weight": 2}]}, "/outcomes/0/weight"),
        ({"outcomes": ["c1"]}, "/outcomes/0"),
        ({"outcomes": [{"unit": "c1", "value": 1}], "outcome": []}, "/outcome"),
    ],
)
def test_bad_outcomes_are_400s_naming_the_item(api_client, champion, twin, body, path):
    exp = start(api_client, champion, twin).json()["id"]
    expose(exp, ["c1", "c2"])
    r = api_client.post(f"{API}/experiments/{exp}/outcomes", body, format="json")
    assert r.status_code == 400, r.json()
    assert path in paths(r)
    assert not Outcome.objects.exists()


def test_too_many_outcomes(api_client, champion, twin, settings):
    settings.OUTCOMES_MAX_ROWS = 2
    exp = start(api_client, champion, twin).json()["id"]
    outcomes = [{"unit": f"c{i}", "value": 1} for i in range(3)]
    r = api_client.post(f"{API}/experiments/{exp}/outcomes", {"outcomes": outcomes}, format="json")
    assert r.status_code == 400 and paths(r) == {"/outcomes"}


# --------------------------------------------------------------------------- stop


def test_stop_with_the_challenger_promotes_it_and_is_audited(api_client, user, champion, twin):
    exp = start(api_client, champion, twin).json()["id"]
    assert twin.status == ModelStatus.REGISTERED
    r = api_client.post(f"{API}/experiments/{exp}/stop", {"winner": "challenger"}, format="json")
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["status"] == "stopped" and body["winner"] == "challenger" and body["stopped_at"]
    assert body["promoted"] == twin.pk and body["replaced"] == [champion.pk]
    assert body["result_json"]["mode"] == "ab"  # the statistics the decision was made on
    champion.refresh_from_db()
    twin.refresh_from_db()
    assert twin.status == ModelStatus.PRODUCTION and twin.role == "champion"
    assert champion.status == ModelStatus.STAGING
    stop = AuditEvent.objects.get(action="experiment.stop")
    assert stop.object_id == exp and stop.detail == {
        "winner": "challenger",
        "promoted": twin.pk,
        "replaced": [champion.pk],
    }
    assert stop.changes["status"] == ["running", "stopped"]
    moves = AuditEvent.objects.filter(action="model.status", at__gte=stop.at.replace(microsecond=0))
    assert {(e.object_id, e.changes["status"][1]) for e in moves} >= {
        (twin.pk, "staging"),
        (twin.pk, "production"),
        (champion.pk, "staging"),
    }
    # Once stopped: no second stop, no more outcomes.
    r = api_client.post(f"{API}/experiments/{exp}/stop", {"winner": "none"}, format="json")
    assert r.status_code == 409 and paths(r) == {"/winner"}
    r = api_client.post(
        f"{API}/experiments/{exp}/outcomes", {"outcomes": [{"unit": "c", "value": 1}]}, format="json"
    )
    assert r.status_code == 409


@pytest.mark.parametrize("winner", ["champion", "none"])
def test_stop_without_promotion_changes_no_model(api_client, champion, twin, winner):
    exp = start(api_client, champion, twin).json()["id"]
    r = api_client.post(f"{API}/experiments/{exp}/stop", {"winner": winner}, format="json")
    assert r.status_code == 200 and r.json()["winner"] == winner and r.json()["promoted"] is None
    champion.refresh_from_db()
    twin.refresh_from_db()
    assert (champion.status, twin.status) == (ModelStatus.PRODUCTION, ModelStatus.REGISTERED)


def test_stop_needs_a_winner(api_client, champion, twin):
    exp = start(api_client, champion, twin).json()["id"]
    for body in ({}, {"winner": "both"}):
        r = api_client.post(f"{API}/experiments/{exp}/stop", body, format="json")
        assert r.status_code == 400 and paths(r) == {"/winner"}
    assert Experiment.objects.get(pk=exp).status == "running"


def test_an_archived_challenger_cannot_win(api_client, champion, twin):
    exp = start(api_client, champion, twin).json()["id"]
    MLModel.objects.filter(pk=twin.pk).update(status=ModelStatus.ARCHIVED)
    r = api_client.post(f"{API}/experiments/{exp}/stop", {"winner": "challenger"}, format="json")
    assert r.status_code == 409 and paths(r) == {"/winner"}
    assert Experiment.objects.get(pk=exp).status == "running"


# --------------------------------------------------------------------------- access


def test_signed_out_and_permissionless_users(anon_client, viewer_client, api_client, champion, twin):
    assert start(anon_client, champion, twin).status_code in (401, 403)
    assert anon_client.get(f"{API}/experiments").status_code in (401, 403)
    assert start(viewer_client, champion, twin).status_code == 403  # firm recipe: needs change_mlmodel
    exp = start(api_client, champion, twin).json()["id"]
    assert viewer_client.get(f"{API}/experiments/{exp}").status_code == 200  # firm objects: everyone sees
    body = {"outcomes": [{"unit": "c", "value": 1}]}
    assert viewer_client.post(f"{API}/experiments/{exp}/outcomes", body, format="json").status_code == 403
    assert (
        viewer_client.post(f"{API}/experiments/{exp}/stop", {"winner": "none"}, format="json").status_code
        == 403
    )
    assert Experiment.objects.get(pk=exp).status == "running"


def test_another_clients_experiment_is_a_404(private):
    member, outsider = APIClient(), APIClient()
    member.force_authenticate(private.member)
    outsider.force_authenticate(private.outsider)
    # The outsider cannot name the recipe or its models...
    r = start(outsider, private.champion, private.challenger)
    assert r.status_code == 400 and "/recipe_id" in paths(r)
    # ... the member (a data scientist of the client, no firm permission needed) can.
    r = start(member, private.champion, private.challenger)
    assert r.status_code == 201, r.json()
    exp = r.json()["id"]
    assert AuditEvent.objects.get(action="experiment.start").client_id == private.client.pk
    assert outsider.get(f"{API}/experiments/{exp}").status_code == 404
    assert outsider.get(f"{API}/experiments").json()["count"] == 0
    assert member.get(f"{API}/experiments").json()["count"] == 1
    body = {"outcomes": [{"unit": "c", "value": 1}]}
    assert outsider.post(f"{API}/experiments/{exp}/outcomes", body, format="json").status_code == 404
    assert (
        outsider.post(f"{API}/experiments/{exp}/stop", {"winner": "none"}, format="json").status_code == 404
    )
    assert member.post(f"{API}/experiments/{exp}/outcomes", body, format="json").status_code == 200
    assert (
        member.post(f"{API}/experiments/{exp}/stop", {"winner": "challenger"}, format="json").status_code
        == 200
    )
    private.challenger.refresh_from_db()
    assert private.challenger.status == ModelStatus.PRODUCTION


def test_deleting_an_experiment_deletes_its_exposures_and_outcomes(api_client, champion, twin):
    """Exposures have no database foreign key (a write-speed choice): the ORM cascades."""
    exp = start(api_client, champion, twin).json()["id"]
    expose(exp, ["c1", "c2"])
    api_client.post(
        f"{API}/experiments/{exp}/outcomes", {"outcomes": [{"unit": "c1", "value": 1}]}, format="json"
    )
    Experiment.objects.get(pk=exp).delete()
    assert not Exposure.objects.exists() and not Outcome.objects.exists()
