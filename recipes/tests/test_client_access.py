"""Client workspaces: the access matrix.

Every endpoint and page × {anonymous, member viewer, member data scientist, member lead,
non-member, superuser} × {firm object, own client, other client}. "Own" is client A, whose
team the viewer / data scientist / lead are; "other" is client B, whose team none of them is
in. Everyone signed in (but the superuser) is also in the firm's Data scientists group, so
the firm objects' existing permissions are not what stops them at a client's objects."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from models_registry import services as model_services
from monitoring import services as monitoring_services
from recipes import access, services
from recipes.models import Recipe
from recipes.tests.factories import make_client
from runs import services as run_services

API = "/api/ml-development"
ROLES = ["anonymous", "viewer", "data_scientist", "lead", "non_member", "superuser"]
SCOPES = ["firm", "own", "other"]
MEMBER_ROLES = ("viewer", "data_scientist", "lead")


def sees(role: str, scope: str) -> bool:
    if role == "anonymous":
        return False
    if scope == "firm" or role == "superuser":
        return True
    return scope == "own" and role in MEMBER_ROLES


def writes(role: str, scope: str) -> bool:
    """May change a client's object (firm objects: the group permissions, all have them here)."""
    if not sees(role, scope):
        return False
    return scope == "firm" or role in ("data_scientist", "lead", "superuser")


def _csv() -> SimpleUploadedFile:
    rows = ["date,store,sku,price,units"] + [
        f"2024-01-{d:02d},s1,k1,{2 + d / 10},{10 + d}" for d in range(1, 29)
    ]
    return SimpleUploadedFile("sales.csv", ("\n".join(rows) + "\n").encode(), content_type="text/csv")


def _objects(recipe: Recipe, admin, tag: str) -> dict:
    """A model, a run with one artifact, a dataset and a snapshot on `recipe`."""
    version = recipe.current_version
    if not version.is_approved:
        version = services.version_approve(version=version, user=admin, override_reason="test set-up")
    model = model_services.model_register(
        user=admin, name=f"model {tag}", recipe=recipe, recipe_version=version
    )
    run = run_services.run_start(user=admin, recipe=recipe, run_type="eval", executor="external")
    folder = Path(settings.MEDIA_ROOT) / "artifacts" / run.id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_bytes(b'{"MAPE": 0.1}')
    run.artifacts_json = {"files": {"metrics.json": {"sha256": hashlib.sha256(b'{"MAPE": 0.1}').hexdigest()}}}
    run.save(update_fields=["artifacts_json"])
    dataset = run_services.dataset_create(
        user=admin, upload=_csv(), name=f"data {tag}", recipe=recipe if recipe.level == "client" else None
    )
    snapshot = monitoring_services.snapshot_record(model=model, performance={"MAPE": 0.12})
    return {
        "recipe": recipe,
        "version": version,
        "model": model,
        "run": run,
        "dataset": dataset,
        "snapshot": snapshot,
    }


@pytest.fixture
def world(db, groups, baselines):
    User = get_user_model()
    admin = User.objects.create_superuser("root", password="pw-root-1")
    users = {"anonymous": None, "superuser": admin}
    for role in ("viewer", "data_scientist", "lead", "non_member"):
        users[role] = User.objects.create_user(role, password=f"pw-{role}-1")
        users[role].groups.add(groups["Data scientists"])
    a = make_client("Client A", {users[r]: r for r in MEMBER_ROLES})
    b = make_client("Client B", {})
    base = Recipe.objects.get(pk="recipe_pricing_base")
    industry = services.recipe_clone(source=base, user=admin, name="Grocery pricing")
    own = services.recipe_clone(source=industry, user=admin, name="A pricing", client=a)
    other = services.recipe_clone(source=industry, user=admin, name="B pricing", client=b)
    objects = {
        "firm": _objects(industry, admin, "firm"),
        "own": _objects(own, admin, "own"),
        "other": _objects(other, admin, "other"),
    }
    return {"users": users, "objects": objects, "clients": {"own": a, "other": b}, "industry": industry}


def api_as(world, role) -> APIClient:
    client = APIClient()
    if world["users"][role] is not None:
        client.force_authenticate(world["users"][role])
    return client


def _ids(response) -> set[str]:
    body = response.json()
    rows = body["results"] if isinstance(body, dict) and "results" in body else body
    return {row["id"] for row in rows}


DETAIL_URLS = {
    "recipe": lambda o: f"/recipes/{o['recipe'].pk}",
    "recipe versions": lambda o: f"/recipes/{o['recipe'].pk}/versions",
    "recipe version": lambda o: f"/recipes/{o['recipe'].pk}/versions/{o['version'].pk}",
    "recipe lineage": lambda o: f"/recipes/{o['recipe'].pk}/lineage",
    "recipe gate": lambda o: f"/recipes/{o['recipe'].pk}/versions/{o['version'].pk}/gate",
    "model": lambda o: f"/models/{o['model'].pk}",
    "model monitoring": lambda o: f"/models/{o['model'].pk}/monitoring",
    "run": lambda o: f"/runs/{o['run'].pk}",
    "run logs": lambda o: f"/runs/{o['run'].pk}/logs",
    "run artifact": lambda o: f"/runs/{o['run'].pk}/artifacts/metrics.json",
    "dataset": lambda o: f"/datasets/{o['dataset'].pk}",
    "dataset download": lambda o: f"/datasets/{o['dataset'].pk}/download",
    "recipe synthetic example": lambda o: f"/recipes/{o['recipe'].pk}/synthetic-example",
}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("role", ROLES)
def test_api_details_are_404_to_whoever_may_not_see_them(world, role, scope):
    api = api_as(world, role)
    for name, url in DETAIL_URLS.items():
        r = api.get(API + url(world["objects"][scope]))
        if role == "anonymous":
            assert r.status_code in (401, 403), name
        elif sees(role, scope):
            assert r.status_code == 200, (name, r.status_code, r.content[:200])
        else:
            # Not 403: the id's existence is not confirmed.
            assert r.status_code == 404, (name, r.status_code)
            assert r.json()["detail"] in ("Not found.", "No MLModel matches the given query.") or (
                "Not found" in r.json()["detail"]
            ), name


@pytest.mark.parametrize("role", ROLES)
def test_api_lists_and_search_hold_only_what_the_user_may_see(world, role):
    api = api_as(world, role)
    objects = world["objects"]
    lists = {
        "recipe": ("/recipes?search=pricing&page_size=500", "recipe"),
        "model": ("/models?page_size=500", "model"),
        "run": ("/runs?page_size=500", "run"),
        "dataset": ("/datasets?page_size=500", "dataset"),
    }
    for name, (url, key) in lists.items():
        r = api.get(API + url)
        if role == "anonymous":
            assert r.status_code in (401, 403)
            continue
        assert r.status_code == 200, name
        ids = _ids(r)
        for scope in SCOPES:
            assert (objects[scope][key].pk in ids) == sees(role, scope), (name, scope)
    # The industry recipe's children in its detail: another client's clone stays unseen.
    if role != "anonymous":
        children = {c["id"] for c in api.get(f"{API}/recipes/{world['industry'].pk}").json()["children"]}
        for scope in ("own", "other"):
            assert (objects[scope]["recipe"].pk in children) == sees(role, scope)


@pytest.mark.parametrize("role", ROLES)
def test_clone_from_industry_into_a_client_needs_a_write_role_there(world, role):
    api = api_as(world, role)
    industry = world["industry"]
    for scope in ("own", "other"):
        client = world["clients"][scope]
        r = api.post(
            f"{API}/recipes/{industry.pk}/clone?client_id={client.pk}", {"name": f"x {scope}"}, format="json"
        )
        if role == "anonymous":
            assert r.status_code in (401, 403)
        elif writes(role, scope):
            assert r.status_code == 201, r.json()
            assert r.json()["client_id"] == client.pk
            assert r.json()["level"] == "client"
        else:
            assert r.status_code == 400, (scope, r.status_code)
            assert r.json()["errors"][0]["path"] == "/client_id"
            if not sees(role, scope):
                # The same answer as for an id that does not exist.
                assert "unknown client" in r.json()["detail"]
    if role != "anonymous":
        missing = api.post(f"{API}/recipes/{industry.pk}/clone", {"name": "no client"}, format="json")
        assert missing.status_code == 400
        assert missing.json()["errors"][0]["path"] == "/client_id"
        unknown = api.post(
            f"{API}/recipes/{industry.pk}/clone", {"name": "y", "client_id": "client_nope"}, format="json"
        )
        assert unknown.status_code == 400 and "unknown client" in unknown.json()["detail"]


def test_client_id_is_refused_above_client_level(world):
    api = api_as(world, "superuser")
    r = api.post(
        f"{API}/recipes/recipe_pricing_base/clone",
        {"name": "industry with a client", "client_id": world["clients"]["own"].pk},
        format="json",
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "/client_id"


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("role", ROLES)
def test_writes_on_a_clients_objects_need_a_write_role(world, role, scope):
    api = api_as(world, role)
    o = world["objects"][scope]
    r = api.put(f"{API}/models/{o['model'].pk}", {"description": f"by {role}"}, format="json")
    if role == "anonymous":
        assert r.status_code in (401, 403)
    elif writes(role, scope):
        assert r.status_code == 200, r.json()
    else:
        assert r.status_code == (403 if sees(role, scope) else 404)
    r = api.post(f"{API}/runs/{o['run'].pk}/cancel")
    if role == "anonymous":
        assert r.status_code in (401, 403)
    elif writes(role, scope):
        assert r.status_code in (200, 409)
    else:
        assert r.status_code == (403 if sees(role, scope) else 404)
    # Starting a run on the recipe and registering a model on it.
    r = api.post(
        f"{API}/runs",
        {"recipe_id": o["recipe"].pk, "run_type": "eval", "executor": "external"},
        format="json",
    )
    if role == "anonymous":
        assert r.status_code in (401, 403)
    elif writes(role, scope):
        assert r.status_code == 201, r.json()
    elif sees(role, scope):
        assert r.status_code == 403
    else:
        assert r.status_code == 400 and r.json()["errors"][0]["path"] == "/recipe_id"


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("role", ROLES)
def test_approving_a_client_version_needs_the_lead_role(world, role, scope):
    o = world["objects"][scope]
    recipe = o["recipe"]
    manifest = recipe.current_version.manifest
    manifest = {**manifest, "metadata": {**manifest["metadata"], "description": "changed"}}
    version = services.version_create(recipe=recipe, user=world["users"]["superuser"], manifest=manifest)
    api = api_as(world, role)
    r = api.post(
        f"{API}/recipes/{recipe.pk}/versions/{version.pk}/approve", {"override_reason": "test"}, format="json"
    )
    expected = {
        # No approve permission and no lead role anywhere: refused before the object is
        # looked at (the same 403 for any id, so nothing is confirmed).
        "viewer": {"firm": 403, "own": 403, "other": 403},
        "data_scientist": {"firm": 403, "own": 403, "other": 403},
        "non_member": {"firm": 403, "own": 403, "other": 403},
        # A client lead approves in their client only; firm versions need the firm Leads.
        "lead": {"firm": 403, "own": 200, "other": 404},
        "superuser": {"firm": 200, "own": 200, "other": 200},
    }
    if role == "anonymous":
        assert r.status_code in (401, 403)
    else:
        assert r.status_code == expected[role][scope], r.json()


PAGE_URLS = {
    "recipe": lambda o: f"/model-development/recipes/{o['recipe'].pk}",
    "recipe versions": lambda o: f"/model-development/recipes/{o['recipe'].pk}?tab=versions",
    "recipe lineage": lambda o: f"/model-development/recipes/{o['recipe'].pk}?tab=lineage",
    "model": lambda o: f"/model-development/models/{o['model'].pk}",
    "model monitoring": lambda o: f"/model-development/models/{o['model'].pk}?tab=monitoring",
    "run": lambda o: f"/model-development/runs/{o['run'].pk}",
    "run logs": lambda o: f"/model-development/runs/{o['run'].pk}/logs",
    "dataset": lambda o: f"/model-development/datasets/{o['dataset'].pk}",
}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("role", ROLES)
def test_pages_are_404_to_whoever_may_not_see_them(client, world, role, scope):
    if world["users"][role] is not None:
        client.force_login(world["users"][role])
    for name, url in PAGE_URLS.items():
        r = client.get(url(world["objects"][scope]))
        if role == "anonymous":
            assert r.status_code == 302, name
        else:
            assert r.status_code == (200 if sees(role, scope) else 404), (name, r.status_code)
    if scope == "own" and sees(role, scope):
        page = client.get(PAGE_URLS["recipe"](world["objects"][scope])).content.decode()
        assert 'id="recipe-client"' in page and world["clients"]["own"].name in page


@pytest.mark.parametrize("role", [r for r in ROLES if r != "anonymous"])
def test_library_tabs_and_datasets_page_hold_only_what_the_user_may_see(client, world, role):
    client.force_login(world["users"][role])
    objects = world["objects"]
    pages = {
        "recipe": "/model-development/?tab=recipes&search=pricing",
        "model": "/model-development/?tab=models",
        "run": "/model-development/?tab=runs",
        "dataset": "/model-development/datasets",
    }
    for key, url in pages.items():
        html = client.get(url).content.decode()
        for scope in SCOPES:
            assert (objects[scope][key].pk in html) == sees(role, scope), (key, scope)
    # Monitoring tab: production models only (set directly: these have no trained artifact).
    from models_registry.models import MLModel

    MLModel.objects.filter(pk__in=[objects[scope]["model"].pk for scope in SCOPES]).update(
        status="production"
    )
    html = client.get("/model-development/?tab=monitoring").content.decode()
    for scope in SCOPES:
        assert (objects[scope]["model"].name in html) == sees(role, scope), scope


@pytest.mark.parametrize("role", [r for r in ROLES if r != "anonymous"])
def test_page_writes_follow_the_same_rule(client, world, role):
    client.force_login(world["users"][role])
    for scope in SCOPES:
        run = world["objects"][scope]["run"]
        r = client.post(f"/model-development/runs/{run.pk}/cancel")
        if writes(role, scope):
            assert r.status_code == 302, scope
        else:
            assert r.status_code == (403 if sees(role, scope) else 404), scope


def test_querysets_and_admin_scope_alike(world, rf):
    from django.contrib.admin.sites import site

    from models_registry.models import MLModel
    from monitoring.models import Alert, MonitorSnapshot
    from runs.models import Dataset, Run

    member = world["users"]["viewer"]
    objects = world["objects"]
    for model_class, key in (
        (MLModel, "model"),
        (Run, "run"),
        (Dataset, "dataset"),
        (MonitorSnapshot, "snapshot"),
    ):
        visible = set(model_class.objects.visible_to(member).values_list("pk", flat=True))
        assert objects["own"][key].pk in visible and objects["firm"][key].pk in visible
        assert objects["other"][key].pk not in visible
        request = rf.get("/admin/")
        request.user = member
        in_admin = set(site._registry[model_class].get_queryset(request).values_list("pk", flat=True))
        assert in_admin == visible, model_class
    assert Alert.objects.visible_to(member).filter(model=objects["other"]["model"]).count() == 0


def test_predicates(world):
    users, objects = world["users"], world["objects"]
    own = objects["own"]
    assert access.can_view(users["viewer"], own["snapshot"])
    assert not access.can_write(users["viewer"], own["model"])
    assert access.can_write(users["data_scientist"], own["dataset"])
    assert access.can_approve(users["lead"], own["version"])
    assert not access.can_approve(users["data_scientist"], own["version"])
    assert not access.can_view(users["non_member"], own["run"])
    assert access.can_view(users["non_member"], objects["firm"]["run"])
    assert not access.can_manage_clients(users["lead"])
    assert access.can_manage_clients(users["superuser"])


# --------------------------------------------------------------------------- clients API


@pytest.fixture
def workspace_admin(groups, db):
    admin = get_user_model().objects.create_user("wsadmin", password="pw-wsadmin-1")
    admin.groups.add(groups["Workspace admins"])
    return admin


def test_clients_api_create_members_and_remove(world, workspace_admin):
    api = APIClient()
    api.force_authenticate(workspace_admin)
    r = api.post(f"{API}/clients", {"name": "Northwind Grocers"}, format="json")
    assert r.status_code == 201, r.json()
    client_id = r.json()["id"]
    assert client_id.startswith("client_") and r.json()["slug"] == "northwind-grocers"
    assert (
        api.post(f"{API}/clients", {"name": "Other", "slug": "northwind-grocers"}, format="json").status_code
        == 409
    )
    assert api.post(f"{API}/clients", {"name": ""}, format="json").status_code == 400
    r = api.post(
        f"{API}/clients/{client_id}/members", {"username": "non_member", "role": "lead"}, format="json"
    )
    assert r.status_code == 201
    r = api.post(
        f"{API}/clients/{client_id}/members", {"username": "non_member", "role": "viewer"}, format="json"
    )
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    bad = api.post(
        f"{API}/clients/{client_id}/members", {"username": "nobody", "role": "lead"}, format="json"
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["path"] == "/username"
    bad = api.post(f"{API}/clients/{client_id}/members", {"username": "lead", "role": "owner"}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"][0]["path"] == "/role"
    members = api.get(f"{API}/clients/{client_id}/members").json()
    assert members[0]["username"] == "non_member" and members[0]["role"] == "viewer"
    # The new member sees their client; others do not.
    member_api = api_as(world, "non_member")
    assert member_api.get(f"{API}/clients/{client_id}").status_code == 200
    assert client_id in {c["id"] for c in member_api.get(f"{API}/clients").json()}
    assert api_as(world, "lead").get(f"{API}/clients/{client_id}").status_code == 404
    # Members may not manage.
    assert (
        member_api.post(
            f"{API}/clients/{client_id}/members", {"username": "lead", "role": "lead"}
        ).status_code
        == 403
    )
    assert member_api.post(f"{API}/clients", {"name": "Mine"}, format="json").status_code == 403
    assert api.delete(f"{API}/clients/{client_id}/members/non_member").status_code == 204
    assert api.delete(f"{API}/clients/{client_id}/members/non_member").status_code == 404
    assert member_api.get(f"{API}/clients/{client_id}").status_code == 404
    assert APIClient().get(f"{API}/clients").status_code in (401, 403)


def test_clients_pages(client, world, workspace_admin):
    client.force_login(workspace_admin)
    r = client.post("/model-development/clients/", {"name": "Contoso"})
    assert r.status_code == 302
    contoso = access.visible_clients(workspace_admin).get(name="Contoso")
    r = client.post(f"/model-development/clients/{contoso.pk}/members", {"username": "lead", "role": "lead"})
    assert r.status_code == 302
    page = client.get(f"/model-development/clients/{contoso.pk}").content.decode()
    assert "lead" in page and "Only the client's team sees its recipes." in page
    assert (
        client.post(
            f"/model-development/clients/{contoso.pk}/members", {"username": "zz", "role": "lead"}
        ).status_code
        == 400
    )
    r = client.post(f"/model-development/clients/{contoso.pk}/members/lead/remove")
    assert r.status_code == 302
    assert not contoso.memberships.exists()
    # A member sees their clients and their recipes, cannot manage; a non-member gets 404.
    client.force_login(world["users"]["viewer"])
    own = world["clients"]["own"]
    listing = client.get("/model-development/clients/").content.decode()
    assert own.name in listing and world["clients"]["other"].name not in listing
    page = client.get(f"/model-development/clients/{own.pk}").content.decode()
    assert world["objects"]["own"]["recipe"].name in page
    assert client.post("/model-development/clients/", {"name": "X"}).status_code == 403
    assert client.get(f"/model-development/clients/{world['clients']['other'].pk}").status_code == 404


def test_dataset_upload_with_a_client_id(world):
    api = api_as(world, "data_scientist")
    own, other = world["clients"]["own"], world["clients"]["other"]
    r = api.post(f"{API}/datasets", {"file": _csv(), "client_id": own.pk}, format="multipart")
    assert r.status_code == 201, r.json()
    assert r.json()["client_id"] == own.pk
    assert api_as(world, "non_member").get(f"{API}/datasets/{r.json()['id']}").status_code == 404
    r = api.post(f"{API}/datasets", {"file": _csv(), "client_id": other.pk}, format="multipart")
    assert r.status_code == 400 and "unknown client" in r.json()["detail"]
    r = api_as(world, "viewer").post(
        f"{API}/datasets", {"file": _csv(), "client_id": own.pk}, format="multipart"
    )
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "/client_id"
    # Against a client recipe: that client's.
    recipe = world["objects"]["own"]["recipe"]
    r = api.post(f"{API}/datasets", {"file": _csv(), "recipe_id": recipe.pk}, format="multipart")
    assert r.status_code == 201 and r.json()["client_id"] == own.pk


def test_the_database_refuses_a_client_recipe_without_a_client(world):
    from django.db import IntegrityError, transaction

    recipe = world["objects"]["own"]["recipe"]
    with pytest.raises(IntegrityError), transaction.atomic():
        Recipe.objects.filter(pk=recipe.pk).update(client=None)
    with pytest.raises(IntegrityError), transaction.atomic():
        Recipe.objects.filter(pk=world["industry"].pk).update(client=world["clients"]["own"])


def test_for_a_clients_objects_the_role_decides_not_the_firm_groups(world):
    """A data scientist of client A who is in no firm group: writes in A, nothing firm-wide."""
    outsider = get_user_model().objects.create_user("contractor", password="pw-contractor-1")
    from recipes import client_services

    client_services.membership_set(
        user=None, client=world["clients"]["own"], member=outsider, role="data_scientist"
    )
    api = APIClient()
    api.force_authenticate(outsider)
    own, firm = world["objects"]["own"], world["objects"]["firm"]
    r = api.post(
        f"{API}/recipes/{world['industry'].pk}/clone",
        {"name": "contractor's", "client_id": world["clients"]["own"].pk},
        format="json",
    )
    assert r.status_code == 201, r.json()
    assert api.put(f"{API}/models/{own['model'].pk}", {"description": "x"}, format="json").status_code == 200
    assert api.put(f"{API}/models/{firm['model'].pk}", {"description": "x"}, format="json").status_code == 403
    assert (
        api.post(f"{API}/recipes/recipe_pricing_base/clone", {"name": "firm"}, format="json").status_code
        == 403
    )
    # Another client's dataset is never used for this client's recipe.
    other_data = world["objects"]["other"]["dataset"]
    admin = api_as(world, "superuser")
    r = admin.post(
        f"{API}/runs",
        {
            "recipe_id": own["recipe"].pk,
            "run_type": "eval",
            "executor": "external",
            "dataset_id": other_data.pk,
        },
        format="json",
    )
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "/dataset_id"


def test_clone_page_offers_only_clients_the_user_may_write_in(client, world):
    industry = world["industry"]
    own, other = world["clients"]["own"], world["clients"]["other"]
    client.force_login(world["users"]["data_scientist"])
    form = client.get(f"/model-development/recipes/{industry.pk}/clone").content.decode()
    assert own.pk in form and other.pk not in form
    refused = client.post(
        f"/model-development/recipes/{industry.pk}/clone",
        {"name": "B's", "level": "client", "client": other.pk},
    )
    assert refused.status_code == 400 and not Recipe.objects.filter(name="B's").exists()
    missing = client.post(
        f"/model-development/recipes/{industry.pk}/clone", {"name": "No client", "level": "client"}
    )
    assert missing.status_code == 400
    r = client.post(
        f"/model-development/recipes/{industry.pk}/clone",
        {"name": "A's", "level": "client", "client": own.pk},
    )
    assert r.status_code == 302
    assert Recipe.objects.get(name="A's").client_id == own.pk
    client.force_login(world["users"]["viewer"])
    form = client.get(f"/model-development/recipes/{industry.pk}/clone").content.decode()
    assert own.pk not in form  # a viewer writes nowhere


def test_a_firm_datasets_use_by_another_client_is_never_counted(client, world):
    """Counts hold only what the user may see: a firm dataset used by client B's run shows
    no run to a member of A (list count, detail usage, the delete refusal), just that it is
    in use."""
    firm_dataset = world["objects"]["firm"]["dataset"]
    admin = world["users"]["superuser"]
    other = world["objects"]["other"]["recipe"]
    run_services.run_start(user=admin, recipe=other, executor="external", dataset=firm_dataset)
    member = world["users"]["data_scientist"]
    assert run_services.dataset_usage(firm_dataset) == {"run": 1}
    assert run_services.dataset_usage(firm_dataset, member) == {"uses you cannot see": 1}
    assert run_services.dataset_usage(firm_dataset, admin) == {"run": 1}
    refused = api_as(world, "data_scientist").delete(f"{API}/datasets/{firm_dataset.pk}")
    assert refused.status_code in (403, 409), refused.json()
    assert "1 run" not in str(refused.json())
    client.force_login(member)
    page = client.get("/model-development/datasets")
    row = next(r for r in page.context["page"] if r.pk == firm_dataset.pk)
    assert row.run_count == 0
