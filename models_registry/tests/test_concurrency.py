"""One production model per recipe, under concurrent writes (issue 12, defect 1).

`PUT /models/A {"status": "production"}` racing `PUT /models/B {"description": "x"}` (B in
production) used to leave both in production: the description update saved a stale copy
of B, status included. Model writes now lock and write only their own fields, status
changes lock all of the recipe's models, and a partial unique index makes a second
production model impossible (unless the user deliberately keeps one alongside)."""

import threading

import pytest
from django.db import IntegrityError, connection, transaction
from rest_framework.test import APIClient

from models_registry import services
from models_registry.models import MLModel
from runs.tests.factories import register

API = "/api/ml-development"
ARTIFACT = {"model": ["model.json"], "files": {}}  # what a promotion needs: a trained artifact

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="real concurrent transactions need PostgreSQL (SQLite serialises every writer)",
)


def _model(user, recipe_id="recipe_pricing_base", status="staging", name="m"):
    model = register(user, recipe_id, name=name)
    MLModel.objects.filter(pk=model.pk).update(status=status, artifacts_json=ARTIFACT)
    model.refresh_from_db()
    return model


def _production(recipe_id):
    return list(MLModel.objects.filter(recipe_id=recipe_id, status="production").values_list("id", flat=True))


# --------------------------------------------------------------------------- the constraint


@pytest.mark.django_db
def test_the_database_refuses_a_second_production_model_of_a_recipe(baselines, user):
    current = _model(user, status="production")
    other = _model(user)
    with pytest.raises(IntegrityError), transaction.atomic():
        MLModel.objects.filter(pk=other.pk).update(status="production")
    assert _production("recipe_pricing_base") == [current.pk]
    # Other recipes have their own production model; a model kept alongside is allowed.
    _model(user, recipe_id="recipe_nba_base", status="production")
    MLModel.objects.filter(pk=other.pk).update(status="production", serves_alongside=True)
    assert sorted(_production("recipe_pricing_base")) == sorted([current.pk, other.pk])
    # "alongside" means something only in production.
    with pytest.raises(IntegrityError), transaction.atomic():
        MLModel.objects.filter(pk=current.pk).update(status="staging", serves_alongside=True)


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_latest_promotion_and_marks_the_others_alongside():
    """Data written before the index (the race, or keep_other_production) can hold several
    production models of a recipe; the migration keeps them all serving, the most recently
    promoted one as the recipe's production model."""
    from datetime import UTC, datetime

    from django.db.migrations.executor import MigrationExecutor

    def migrate(targets):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    graph = MigrationExecutor(connection).loader.graph
    index = ("models_registry", "0004_one_production_per_recipe")

    def before_index(node):
        # The other apps' newest migration that does not need the index's (later apps'
        # migrations, e.g. monitoring's scoring batches, depend on it).
        while index in graph.forwards_plan(node):
            parents = [p.key for p in graph.node_map[node].parents if p.key[0] == node[0]]
            if not parents:  # the whole app comes after the index (experiments): leave it out,
                return None  # rolling models_registry back unapplies it
            (node,) = parents
        return node

    others = [before_index(n) for n in graph.leaf_nodes() if n[0] != "models_registry"]
    others = [n for n in others if n is not None]
    old = migrate([*others, ("models_registry", "0003_alter_mlmodel_options")])
    try:
        Recipe, Version = old.get_model("recipes", "Recipe"), old.get_model("recipes", "RecipeVersion")
        Model = old.get_model("models_registry", "MLModel")
        recipe = Recipe.objects.create(id="r_old", name="old", model_family="pricing", level="baseline")
        version = Version.objects.create(id="v_old", recipe=recipe, version="1.0.0", manifest={})
        for name, day in (("early", 1), ("latest", 9), ("middle", 5), ("never", None), ("other", 2)):
            Model.objects.create(
                id=f"model_{name}",
                name=name,
                recipe=recipe,
                recipe_version=version,
                status="staging" if name == "other" else "production",
                promoted_at=datetime(2026, 1, day, tzinfo=UTC) if day else None,
                metrics_json={},
                artifacts_json={},
            )
        new = migrate([*others, ("models_registry", "0004_one_production_per_recipe")])
        Model = new.get_model("models_registry", "MLModel")
        rows = {m.id: (m.status, m.serves_alongside) for m in Model.objects.all()}
        assert rows == {
            "model_latest": ("production", False),
            "model_early": ("production", True),
            "model_middle": ("production", True),
            "model_never": ("production", True),
            "model_other": ("staging", False),
        }
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


# --------------------------------------------------------------------------- the services


@pytest.mark.django_db
def test_a_stale_description_update_does_not_put_back_the_old_status(baselines, user):
    """The race, replayed in order: B is read (in production), A is promoted (B demoted),
    then B's description is saved from the stale copy."""
    b = _model(user, status="production", name="B")
    a = _model(user, name="A")
    stale_b = MLModel.objects.get(pk=b.pk)
    assert services.model_set_status(model=a, user=user, status="production")["replaced"] == [b.pk]
    updated = services.model_update(model=stale_b, user=user, description="x")
    assert (updated.status, updated.description) == ("staging", "x")
    b.refresh_from_db()
    assert (b.status, b.description) == ("staging", "x")
    assert _production("recipe_pricing_base") == [a.pk]


@pytest.mark.django_db
def test_keeping_a_model_alongside_and_handing_over_when_the_first_leaves(baselines, user):
    first, second, third = (_model(user, name=n) for n in ("first", "second", "third"))
    services.model_set_status(model=first, user=user, status="production")
    kept = services.model_set_status(model=second, user=user, status="production", keep_other_production=True)
    assert kept["replaced"] == [] and kept["model"].serves_alongside
    assert sorted(_production("recipe_pricing_base")) == sorted([first.pk, second.pk])
    # The recipe's production model leaves: the one kept alongside takes its place.
    services.model_set_status(model=first, user=user, status="staging")
    second.refresh_from_db()
    assert (second.status, second.serves_alongside) == ("production", False)
    # A promotion without "keep" replaces every production model of the recipe.
    services.model_set_status(model=first, user=user, status="production", keep_other_production=True)
    result = services.model_set_status(model=third, user=user, status="production")
    assert sorted(result["replaced"]) == sorted([first.pk, second.pk])
    assert _production("recipe_pricing_base") == [third.pk]
    assert not MLModel.objects.filter(serves_alongside=True).exists()


@pytest.mark.django_db
def test_the_api_says_which_model_serves_alongside(api_client, baselines, user):
    current, kept = _model(user, status="production"), _model(user)
    body = {"status": "production", "keep_other_production": True}
    out = api_client.put(f"{API}/models/{kept.pk}", body, format="json").json()
    assert (out["status"], out["serves_alongside"], out["replaced"]) == ("production", True, [])
    assert api_client.get(f"{API}/models/{current.pk}").json()["serves_alongside"] is False


@pytest.mark.django_db
def test_a_constraint_violation_is_a_409_not_a_500(baselines, user, api_client, monkeypatch):
    """Should anything ever get past the lock (here: the lock is made to miss the current
    production model), the index refuses the second production model and the API says 409."""
    current = _model(user, status="production")
    other = _model(user)
    monkeypatch.setattr(
        services,
        "_lock_recipe_models",
        lambda recipe_id: {other.pk: MLModel.objects.select_for_update().get(pk=other.pk)},
    )
    r = api_client.put(
        f"{API}/models/{other.pk}", {"status": "production", "description": "new"}, format="json"
    )
    assert r.status_code == 409, r.content
    assert r.json()["errors"][0]["path"] == "/status"
    other.refresh_from_db()
    assert (other.status, other.description) == ("staging", "")  # the whole PUT rolled back
    assert _production("recipe_pricing_base") == [current.pk]


@pytest.mark.django_db
def test_an_admin_edit_racing_a_promotion_keeps_the_new_status(client, baselines, user, monkeypatch):
    from django.contrib.auth import get_user_model

    from models_registry.admin import MLModelAdmin

    client.force_login(get_user_model().objects.create_superuser("root", password="pw-root-123"))
    b = _model(user, status="production", name="B")
    stale_b = MLModel.objects.get(pk=b.pk)  # what the admin read just before a promotion committed
    monkeypatch.setattr(MLModelAdmin, "get_object", lambda self, request, object_id, from_field=None: stale_b)
    services.model_set_status(model=_model(user, name="A"), user=user, status="production")
    url = f"/admin/models_registry/mlmodel/{b.pk}/change/"
    r = client.post(url, {"name": "B", "owner": "team", "description": "edited in the admin"})
    assert r.status_code == 302
    b.refresh_from_db()
    assert (b.status, b.owner, b.description) == ("staging", "team", "edited in the admin")


# --------------------------------------------------------------------------- real concurrency


def _concurrently(user, requests: list[tuple[str, dict]]) -> list:
    """PUT each (model id, body) from its own thread (own client, own database connection),
    all released at once; returns [(model id, body, status code, response json)]."""
    barrier = threading.Barrier(len(requests))
    results, errors = [], []

    def put(model_id, body):
        try:
            client = APIClient()
            client.force_authenticate(user)
            barrier.wait()
            r = client.put(f"{API}/models/{model_id}", body, format="json")
            results.append((model_id, body, r.status_code, r.json()))
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=put, args=request) for request in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_and_edits_leave_exactly_one_production_model(baselines, user):
    recipes = ["recipe_pricing_base", "recipe_nba_base"]
    for round_ in range(3):
        models = {}
        for recipe_id in recipes:
            MLModel.objects.filter(recipe_id=recipe_id).update(status="archived", serves_alongside=False)
            current = _model(user, recipe_id, status="production", name=f"current {round_}")
            models[recipe_id] = [current] + [_model(user, recipe_id, name=f"m{i} {round_}") for i in range(4)]
        requests = []
        for current, *staging in models.values():
            # Edits of the production model racing promotions of the others (the reported race),
            # plus edits of the candidates and a promotion that also edits.
            requests += [(current.pk, {"description": f"edit {i}"}) for i in range(3)]
            requests += [(m.pk, {"status": "production"}) for m in staging[:3]]
            requests += [(m.pk, {"owner": "team"}) for m in staging]
            requests.append((staging[3].pk, {"status": "production", "name": "promoted and renamed"}))
        assert len(requests) >= 20
        results = _concurrently(user, requests)
        assert sorted(code for *_, code, _ in results) == [200] * len(requests), [
            r for r in results if r[2] != 200
        ]
        for recipe_id, (current, *staging) in models.items():
            live = _production(recipe_id)
            assert len(live) == 1, (round_, recipe_id, live)
            # The survivor is one of the promoted models; every other one was replaced.
            assert live[0] in {m.pk for m in staging}
            replaced = {
                i for model_id, body, _, out in results if out.get("replaced") for i in out["replaced"]
            }
            assert replaced | set(live) >= {current.pk, *(m.pk for m in staging)}
            # No edit was lost to a stale save.
            current.refresh_from_db()
            assert current.status == "staging" and current.description.startswith("edit ")
            assert set(
                MLModel.objects.filter(pk__in=[m.pk for m in staging]).values_list("owner", flat=True)
            ) == {"team"}
            assert MLModel.objects.get(pk=staging[3].pk).name == "promoted and renamed"
