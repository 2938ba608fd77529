"""No-op writes (issue 12, defect 9): identical clone names under one parent were accepted 50
times, and 50 identical version submissions made 49 versions with no change.

Clone names are unique among a parent's children, ignoring case, within one workspace: the
firm's recipes share one namespace, each client has its own (another client's names are
none of its business, and a 409 would reveal them). The service says 409 naming `name`;
the index `clone_name_unique_per_parent` backs it against races."""

import copy
import threading

import pytest
from django.db import IntegrityError, connection, transaction
from rest_framework.test import APIClient

from mlworkspace.errors import Conflict
from recipes import services
from recipes.models import Recipe, RecipeVersion
from recipes.tests.factories import make_client

API = "/api/ml-development"
BASE = "recipe_pricing_base"

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="real concurrent transactions need PostgreSQL (SQLite serialises every writer)",
)


def clone(api_client, source_id, name, **body):
    return api_client.post(f"{API}/recipes/{source_id}/clone", {"name": name, **body}, format="json")


def children(parent_id):
    return list(Recipe.objects.filter(parent_id=parent_id).values_list("name", flat=True))


@pytest.mark.django_db
def test_fifty_identical_clones_make_one_recipe(api_client, baselines):
    codes = [clone(api_client, BASE, "Retail pricing").status_code for _ in range(50)]
    assert codes == [201] + [409] * 49
    assert children(BASE) == ["Retail pricing"]
    r = clone(api_client, BASE, "Retail pricing")
    assert r.json()["errors"] == [
        {"path": "/name", "message": "already used by another recipe under the same parent"}
    ]
    assert "already has a recipe named “Retail pricing”" in r.json()["detail"]


@pytest.mark.django_db
def test_names_compare_ignoring_case_and_surrounding_spaces(api_client, baselines):
    assert clone(api_client, BASE, "Retail pricing").status_code == 201
    for same in ("RETAIL PRICING", "retail Pricing", "  Retail pricing  "):
        assert clone(api_client, BASE, same).status_code == 409, same
    assert clone(api_client, BASE, "Retail pricing EU").status_code == 201
    # Another parent has its own names.
    assert clone(api_client, "recipe_nba_base", "Retail pricing").status_code == 201
    assert sorted(children(BASE)) == ["Retail pricing", "Retail pricing EU"]


@pytest.mark.django_db
def test_each_client_has_its_own_names_under_a_shared_parent(baselines, user, lead):
    industry = services.recipe_clone(source=Recipe.objects.get(pk=BASE), user=user, name="Retail")
    services.version_approve(version=industry.current_version, user=lead, override_reason="set-up")
    acme, globex = make_client("Acme"), make_client("Globex")
    services.recipe_clone(source=industry, user=user, name="Pricing", client=acme)
    services.recipe_clone(source=industry, user=user, name="Pricing", client=globex)  # no clash
    with pytest.raises(Conflict) as refused:
        services.recipe_clone(source=industry, user=user, name="pricing", client=acme)
    assert refused.value.errors[0]["path"] == "/name"
    assert sorted(Recipe.objects.filter(parent=industry).values_list("client__name", "name")) == [
        ("Acme", "Pricing"),
        ("Globex", "Pricing"),
    ]


@pytest.mark.django_db
def test_the_clone_page_says_the_name_is_taken(as_user, baselines):
    url = f"/model-development/recipes/{BASE}/clone"
    assert as_user.post(url, {"name": "Grocery pricing", "level": "industry"}).status_code == 302
    again = as_user.post(url, {"name": "grocery PRICING", "level": "industry"})
    assert again.status_code == 400
    assert "already used by another recipe under the same parent" in again.content.decode()
    assert children(BASE) == ["Grocery pricing"]


@pytest.mark.django_db
def test_renaming_onto_a_sibling_name_is_a_409(api_client, baselines):
    first = clone(api_client, BASE, "Retail pricing").json()["id"]
    second = clone(api_client, BASE, "Grocery pricing").json()["id"]
    r = api_client.patch(f"{API}/recipes/{second}", {"name": "retail PRICING"}, format="json")
    assert r.status_code == 409 and r.json()["errors"][0]["path"] == "/name"
    assert Recipe.objects.get(pk=second).name == "Grocery pricing"
    # A recipe may change the case of its own name.
    r = api_client.patch(f"{API}/recipes/{first}", {"name": "Retail Pricing"}, format="json")
    assert r.status_code == 200, r.json()
    assert Recipe.objects.get(pk=first).name == "Retail Pricing"


@pytest.mark.django_db
def test_the_database_refuses_a_duplicate_sibling_name(baselines, user):
    first = services.recipe_clone(source=Recipe.objects.get(pk=BASE), user=user, name="Retail pricing")
    second = services.recipe_clone(source=Recipe.objects.get(pk=BASE), user=user, name="Grocery pricing")
    with pytest.raises(IntegrityError), transaction.atomic():
        Recipe.objects.filter(pk=second.pk).update(name="RETAIL pricing")
    # Baselines (no parent) are not clones: the index leaves them alone.
    Recipe.objects.filter(pk="recipe_nba_base").update(name=Recipe.objects.get(pk=BASE).name)
    assert Recipe.objects.get(pk=first.pk).name == "Retail pricing"


@pytest.mark.django_db
def test_a_name_taken_between_check_and_write_is_still_a_409(api_client, baselines, monkeypatch):
    """The race: the service's check passes for two writers; the index refuses the second."""
    assert clone(api_client, BASE, "Retail pricing").status_code == 201
    monkeypatch.setattr(services, "_check_name_free", lambda **kwargs: None)
    r = clone(api_client, BASE, "retail pricing")
    assert r.status_code == 409 and r.json()["errors"][0]["path"] == "/name"
    assert children(BASE) == ["Retail pricing"]


@pytest.mark.django_db(transaction=True)
def test_the_migration_renames_existing_duplicates_first():
    from django.db.migrations.executor import MigrationExecutor

    def migrate(targets):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    others = [n for n in leaves if n[0] != "recipes"]
    # Migrating recipes back also unapplies whatever depends on its last migration; the
    # test only needs the recipes tables as they were before the index.
    old = migrate([("recipes", "0007_client_workspaces_check")])
    try:
        Recipe, Client = old.get_model("recipes", "Recipe"), old.get_model("recipes", "Client")
        base = Recipe.objects.create(id="r_base", name="Base", model_family="pricing", level="baseline")
        other_base = Recipe.objects.create(
            id="r_base2", name="Base", model_family="pricing", level="baseline"
        )
        names = ["Retail", "retail", "RETAIL", "Retail (2)", "Grocery", "Retail"]
        for i, name in enumerate(names):
            Recipe.objects.create(
                id=f"r_{i}", name=name, model_family="pricing", level="industry", parent=base
            )
        Recipe.objects.create(
            id="r_x", name="Retail", model_family="pricing", level="industry", parent=other_base
        )
        acme = Client.objects.create(id="client_a", name="Acme", slug="acme")
        globex = Client.objects.create(id="client_g", name="Globex", slug="globex")
        for i, client in enumerate((acme, acme, globex)):
            Recipe.objects.create(
                id=f"r_c{i}",
                name="Pricing",
                model_family="pricing",
                level="client",
                parent_id="r_4",
                client=client,
            )
        new = migrate([("recipes", "0008_clone_name_unique_per_parent")])
        got = dict(new.get_model("recipes", "Recipe").objects.values_list("id", "name"))
        assert [got[f"r_{i}"] for i in range(6)] == [
            "Retail",  # the oldest keeps its name
            "retail (3)",  # " (2)" was already taken by a sibling
            "RETAIL (4)",
            "Retail (2)",
            "Grocery",
            "Retail (5)",
        ]
        assert got["r_x"] == "Retail" and got["r_base"] == got["r_base2"] == "Base"
        assert [got["r_c0"], got["r_c1"], got["r_c2"]] == ["Pricing", "Pricing (2)", "Pricing"]
    finally:
        migrate([*others, *[n for n in leaves if n[0] == "recipes"]])


# --------------------------------------------------------------------------- versions


def changed(manifest: dict) -> dict:
    m = copy.deepcopy(manifest)
    m["monitoring"]["drift"]["threshold"] = 0.123
    return m


@pytest.mark.django_db
def test_fifty_identical_version_submissions_make_one_version(api_client, baselines, user):
    recipe = services.recipe_clone(source=Recipe.objects.get(pk=BASE), user=user, name="Retail pricing")
    body = {"manifest": changed(recipe.current_version.manifest)}
    codes = [
        api_client.post(f"{API}/recipes/{recipe.pk}/versions", body, format="json").status_code
        for _ in range(50)
    ]
    assert codes == [201] + [409] * 49
    assert RecipeVersion.objects.filter(recipe=recipe).count() == 2


def _concurrently(user, calls) -> list[int]:
    """Run each call(client) in its own thread with its own client and database connection,
    all released at once; returns the status codes."""
    barrier = threading.Barrier(len(calls))
    codes, errors = [], []

    def run(call):
        try:
            client = APIClient()
            client.force_authenticate(user)
            barrier.wait()
            codes.append(call(client).status_code)
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return codes


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_identical_version_submissions_make_one_version(baselines, user):
    recipe = services.recipe_clone(source=Recipe.objects.get(pk=BASE), user=user, name="Retail pricing")
    body = {"manifest": changed(recipe.current_version.manifest)}
    url = f"{API}/recipes/{recipe.pk}/versions"
    codes = _concurrently(user, [lambda c: c.post(url, body, format="json")] * 50)
    assert sorted(codes) == [201] + [409] * 49
    assert RecipeVersion.objects.filter(recipe=recipe).count() == 2


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_clones_make_one_recipe(baselines, user):
    url = f"{API}/recipes/{BASE}/clone"
    names = ["Retail pricing", "RETAIL pricing", "retail pricing"] * 8
    codes = _concurrently(user, [lambda c, n=n: c.post(url, {"name": n}, format="json") for n in names])
    assert sorted(codes) == [201] + [409] * (len(names) - 1)
    assert len(children(BASE)) == 1
