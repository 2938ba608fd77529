"""Lineage through the API: provenance, diffs, suggested versions, upstream rebase and the
approval gate, on the real database."""

import copy

import pytest
from django.utils import timezone

from recipes import services
from recipes.models import Recipe, RecipeVersion
from recipes.tests.factories import make_client
from runs.executor import execute_run
from runs.models import Run, RunStatus, RunType
from runs.services import run_start

API = "/api/ml-development"
OVERRIDE = "set-up: approved without evidence"


def evidence(
    version: RecipeVersion, metrics: dict, *, run_type=RunType.BACKTEST, status=RunStatus.SUCCEEDED
) -> Run:
    """A finished run on `version` with given metrics: the gate reads runs, so tests control
    the numbers it judges. (One test below produces evidence with a real backtest.)"""
    run = run_start(user=None, recipe=version.recipe, recipe_version=version, run_type=run_type)
    Run.objects.filter(pk=run.pk).update(status=status, metrics_json=metrics, finished_at=timezone.now())
    return Run.objects.get(pk=run.pk)


# Pricing thresholds (baseline manifest): elasticity critical -0.5 (lower is better),
# demand_mape critical 0.4, margin_impact critical 0.0 (higher is better).
GOOD = {
    "elasticity": -1.6,
    "demand_mape": 0.2,
    "margin_impact": 0.12,
    "calibration": 0.02,
    "revenue_lift": -0.04,
}


def stage(manifest: dict, name: str) -> dict:
    return next(s for s in manifest["pipeline"]["stages"] if s["name"] == name)


@pytest.fixture
def chain(baselines, user, lead):
    """baseline (pricing) → industry → client, each cloned from the approved one above."""
    base = Recipe.objects.get(pk="recipe_pricing_base")
    industry = services.recipe_clone(source=base, user=user, name="Retail pricing")
    m = copy.deepcopy(industry.current_version.manifest)
    m["monitoring"]["drift"]["threshold"] = 0.15
    m["requirements"]["feature_sets"]["optional"].append("weather")
    services.version_create(recipe=industry, user=user, manifest=m, changelog="retail tuning")
    industry = Recipe.objects.get(pk=industry.pk)
    services.version_approve(version=industry.current_version, user=lead, override_reason=OVERRIDE)
    shopco = make_client("ShopCo", {user: "data_scientist", lead: "lead"})
    client = services.recipe_clone(source=industry, user=user, name="ShopCo pricing", client=shopco)
    m = copy.deepcopy(client.current_version.manifest)
    m["monitoring"]["drift"]["threshold"] = 0.1
    m["deployment"]["endpoint_spec"]["owner"] = "shopco-ops"
    stage(m, "elasticity_model")["config"]["reference_weeks"] = 8
    services.version_create(recipe=client, user=user, manifest=m, changelog="client tuning")
    return base, Recipe.objects.get(pk=industry.pk), Recipe.objects.get(pk=client.pk)


# --------------------------------------------------------------------------- provenance


def test_versions_record_the_parent_version_they_derive_from(api_client, chain):
    base, industry, client = chain
    versions = api_client.get(f"{API}/recipes/{client.id}/versions").json()
    assert [v["version"] for v in versions] == ["1.0.0", "1.1.0"]
    # Both derive from industry 1.1.0 (the version cloned); new versions keep the base.
    assert {v["base_version"]["version"] for v in versions} == {"1.1.0"}
    assert {v["base_version"]["recipe_id"] for v in versions} == {industry.id}
    baseline_versions = api_client.get(f"{API}/recipes/{base.id}/versions").json()
    assert baseline_versions[0]["base_version"] is None


def test_lineage_provenance_through_three_levels(api_client, chain, django_assert_max_num_queries):
    base, industry, client = chain
    with django_assert_max_num_queries(14):
        r = api_client.get(f"{API}/recipes/{client.id}/lineage")
    assert r.status_code == 200, r.json()
    body = r.json()
    assert [(c["recipe_id"], c["level"], c["version"]) for c in body["chain"]] == [
        (base.id, "baseline", "1.0.0"),
        (industry.id, "industry", "1.1.0"),
        (client.id, "client", "1.1.0"),
    ]
    assert body["chain"][2]["derived_from"]["version"] == "1.1.0"
    fields = {f["path"]: f for f in body["fields"]}
    assert fields["/requirements/grain/week"]["source"] == "inherited"
    assert fields["/requirements/grain/week"]["from"] == base.id
    weather = fields["/requirements/feature_sets/optional/weather"]
    assert (weather["source"], weather["from"]) == ("inherited", industry.id)
    drift = fields["/monitoring/drift/threshold"]
    assert (drift["source"], drift["from"], drift["ancestor_value"], drift["value"]) == (
        "overridden",
        industry.id,
        0.15,
        0.1,
    )
    assert fields["/deployment/endpoint_spec/owner"]["source"] == "own"
    assert body["counts"]["overridden"] == 2 and body["counts"]["own"] == 1
    # The tree spans the whole family, the client marked as current.
    tree = body["tree"]
    assert tree["id"] == base.id
    industry_node = next(n for n in tree["children"] if n["id"] == industry.id)
    assert industry_node["children"][0] == {
        "id": client.id,
        "name": "ShopCo pricing",
        "level": "client",
        "status": "draft",
        "version": "1.1.0",
        "derived_from": "1.1.0",
        "upstream_update": False,
        "current": True,
        "on_path": True,
        "children": [],
        "more": 0,
    }


def test_lineage_of_unknown_recipe_is_404_and_needs_login(api_client, anon_client, chain):
    assert api_client.get(f"{API}/recipes/recipe_nope/lineage").status_code == 404
    assert anon_client.get(f"{API}/recipes/{chain[2].id}/lineage").status_code in (401, 403)


# --------------------------------------------------------------------------- diff and suggested version


def test_diff_between_versions_and_between_recipes(api_client, chain):
    base, industry, client = chain
    r = api_client.get(f"{API}/recipes/{client.id}/versions/1.0.0/diff/1.1.0")
    assert r.status_code == 200
    body = r.json()
    assert body["suggested_bump"] == "minor"
    assert body["from"]["version"] == "1.0.0" and body["to"]["version"] == "1.1.0"
    by_path = {c["path"]: c for c in body["changes"]}
    assert by_path["/monitoring/drift/threshold"] | {"reason": ""} == {
        "path": "/monitoring/drift/threshold",
        "op": "change",
        "old": 0.15,
        "new": 0.1,
        "bump": "minor",
        "reason": "",
    }
    assert by_path["/deployment/endpoint_spec/owner"]["op"] == "add"
    assert by_path["/pipeline/stages/elasticity_model/config/reference_weeks"]["bump"] == "patch"
    assert (body["added"], body["removed"], body["changed"]) == (1, 0, 2)
    # Against another recipe: by number with ?against=, or by version id.
    by_number = api_client.get(
        f"{API}/recipes/{client.id}/versions/1.1.0/diff/1.0.0?against={base.id}"
    ).json()
    by_id = api_client.get(f"{API}/recipes/{client.id}/versions/1.1.0/diff/ver_pricing_base_v1").json()
    assert by_number["changes"] == by_id["changes"]
    assert by_id["to"]["recipe_id"] == base.id
    assert {c["path"] for c in by_id["changes"]} >= {"/requirements/feature_sets/optional/weather"}
    for url in (
        f"{API}/recipes/{client.id}/versions/9.9.9/diff/1.0.0",
        f"{API}/recipes/{client.id}/versions/1.0.0/diff/9.9.9",
        f"{API}/recipes/{client.id}/versions/1.0.0/diff/1.0.0?against=recipe_nope",
    ):
        assert api_client.get(url).status_code == 404, url


def post_version(client, recipe, manifest, **body):
    return client.post(f"{API}/recipes/{recipe.id}/versions", {"manifest": manifest, **body}, format="json")


def test_new_version_without_a_number_takes_the_suggested_bump(api_client, chain):
    client = chain[2]
    m = copy.deepcopy(client.current_version.manifest)
    m["requirements"]["grain"].append("channel")  # major
    r = post_version(api_client, client, m, changelog="channel grain")
    assert r.status_code == 201, r.json()
    assert (r.json()["version"], r.json()["suggested_bump"]) == ("2.0.0", "major")
    m["deployment"]["schedule"] = "0 7 * * 1"  # patch
    r = post_version(api_client, client, m)
    assert (r.json()["version"], r.json()["suggested_bump"]) == ("2.0.1", "patch")
    # No change at all is refused; forced with a note it makes a patch version keeping the note.
    r = post_version(api_client, client, m)
    assert r.status_code == 409 and r.json()["errors"] == [
        {"path": "/manifest", "message": "no changes from version 2.0.1"}
    ]
    r = post_version(api_client, client, m, force=True, note="re-release for the audit")
    assert r.status_code == 201, r.json()
    assert (r.json()["version"], r.json()["suggested_bump"]) == ("2.0.2", "")


def test_explicit_version_below_the_diff_is_refused_unless_forced_with_a_note(api_client, chain):
    client = chain[2]
    m = copy.deepcopy(client.current_version.manifest)
    m["requirements"]["feature_sets"]["required"].remove("cost")  # major: removed required feature set
    before = RecipeVersion.objects.filter(recipe=client).count()
    for body in ({"version": "1.1.1"}, {"version": "1.2.0"}, {"bump": "minor"}):
        r = post_version(api_client, client, m, **body)
        assert r.status_code == 409, body
        error = r.json()
        assert "needs a major bump" in error["errors"][0]["message"]
        assert error["errors"][0]["path"] == "/manifest/requirements/feature_sets/required/cost"
        assert "2.0.0" in error["detail"]
    r = post_version(api_client, client, m, version="1.1.1", force=True)
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "/note"
    r = post_version(api_client, client, m, version="1.1.1", force=True, note="   ")
    assert r.status_code == 400
    assert RecipeVersion.objects.filter(recipe=client).count() == before
    r = post_version(
        api_client, client, m, version="1.1.1", force=True, note="cost feed retired, not breaking for us"
    )
    assert r.status_code == 201, r.json()
    assert (r.json()["version"], r.json()["suggested_bump"]) == ("1.1.1", "major")
    assert r.json()["force_note"] == "cost feed retired, not breaking for us"
    # A bigger number than needed is always fine.
    m["metadata"]["description"] = "patch-level edit"
    assert post_version(api_client, client, m, version="3.0.0").status_code == 201


# --------------------------------------------------------------------------- upstream and rebase


def publish_parent(industry, user, lead, mutate):
    m = copy.deepcopy(Recipe.objects.get(pk=industry.pk).current_version.manifest)
    mutate(m)
    version = services.version_create(
        recipe=industry, user=user, manifest=m, changelog="upstream improvement"
    )
    services.version_approve(version=version, user=lead, override_reason=OVERRIDE)
    return version


def test_upstream_shows_parent_diff_only_for_a_newer_approved_version(
    api_client, chain, user, lead, django_assert_max_num_queries
):
    base, industry, client = chain
    up = api_client.get(f"{API}/recipes/{client.id}/upstream").json()
    assert up["update_available"] is False and "preview" not in up
    # A new parent version that is not approved yet is not an update.
    m = copy.deepcopy(industry.current_version.manifest)
    m["evaluation"]["metrics"]["calibration"]["target"] = 0.015
    pending = services.version_create(recipe=industry, user=user, manifest=m)
    assert api_client.get(f"{API}/recipes/{client.id}/upstream").json()["update_available"] is False
    services.version_approve(version=pending, user=lead, override_reason=OVERRIDE)
    with django_assert_max_num_queries(14):
        up = api_client.get(f"{API}/recipes/{client.id}/upstream").json()
    assert up["update_available"] is True
    assert (up["base"]["version"], up["latest_approved"]["version"]) == ("1.1.0", "1.2.0")
    diff = up["preview"]["upstream_diff"]
    assert [c["path"] for c in diff["changes"]] == ["/evaluation/metrics/calibration/target"]
    assert diff["suggested_bump"] == "minor"
    assert up["preview"]["clean"] is True and up["preview"]["conflicts"] == []
    tree = api_client.get(f"{API}/recipes/{client.id}/lineage").json()["tree"]
    assert tree["children"][0]["children"][0]["upstream_update"] is True
    # A baseline has no upstream.
    assert api_client.get(f"{API}/recipes/{base.id}/upstream").status_code == 409


def test_clean_rebase_merges_both_sides_by_identity(api_client, chain, user, lead):
    base, industry, client = chain

    def upstream(m):
        m["evaluation"]["metrics"]["calibration"]["target"] = 0.015
        m["pipeline"]["stages"].insert(2, {"name": "outlier_filter", "type": "feature_prep", "config": {}})
        stage(m, "evaluate")["config"]["curve_points"] = 81

    publish_parent(industry, user, lead, upstream)
    preview = api_client.post(f"{API}/recipes/{client.id}/rebase", {"dry_run": True}, format="json")
    assert preview.status_code == 200 and preview.json()["valid"] is True
    assert RecipeVersion.objects.filter(recipe=client).count() == 2
    r = api_client.post(f"{API}/recipes/{client.id}/rebase", {}, format="json")
    assert r.status_code == 201, r.json()
    created = r.json()
    assert created["base_version"]["version"] == "1.2.0"
    assert created["version"] == "1.2.0"  # a new stage from upstream: minor
    assert created["is_approved"] is False
    assert "Rebased onto" in created["changelog"]
    merged = created["manifest"]
    assert [s["name"] for s in merged["pipeline"]["stages"]] == [
        "data_quality",
        "price_feature_prep",
        "outlier_filter",
        "elasticity_model",
        "evaluate",
        "publish",
        "explain",
    ]
    assert stage(merged, "elasticity_model")["config"]["reference_weeks"] == 8  # ours kept
    assert stage(merged, "evaluate")["config"]["curve_points"] == 81  # theirs taken
    assert merged["evaluation"]["metrics"]["calibration"]["target"] == 0.015
    assert merged["monitoring"]["drift"]["threshold"] == 0.1
    assert (merged["metadata"]["id"], merged["metadata"]["version"]) == (client.id, "1.2.0")
    # Up to date now: a second rebase has nothing to take.
    assert api_client.get(f"{API}/recipes/{client.id}/upstream").json()["update_available"] is False
    again = api_client.post(f"{API}/recipes/{client.id}/rebase", {}, format="json")
    assert again.status_code == 409


def conflicting_upstream(industry, user, lead):
    def upstream(m):
        m["monitoring"]["drift"]["threshold"] = 0.12  # the client changed it to 0.1
        stage(m, "elasticity_model")["config"]["reference_weeks"] = 6  # the client changed it to 8
        m["deployment"]["schedule"] = "0 5 * * 1"  # no clash

    return publish_parent(industry, user, lead, upstream)


DRIFT = "/monitoring/drift/threshold"
WEEKS = "/pipeline/stages/elasticity_model/config/reference_weeks"


def test_conflicting_rebase_lists_conflicts_and_writes_nothing(api_client, chain, user, lead):
    base, industry, client = chain
    conflicting_upstream(industry, user, lead)
    before = RecipeVersion.objects.filter(recipe=client).count()
    r = api_client.post(f"{API}/recipes/{client.id}/rebase", {}, format="json")
    assert r.status_code == 409
    conflicts = {e["path"]: e for e in r.json()["errors"]}
    assert set(conflicts) == {DRIFT, WEEKS}
    assert (conflicts[DRIFT]["base"], conflicts[DRIFT]["ours"], conflicts[DRIFT]["theirs"]) == (
        0.15,
        0.1,
        0.12,
    )
    assert (conflicts[WEEKS]["base"], conflicts[WEEKS]["ours"], conflicts[WEEKS]["theirs"]) == (4, 8, 6)
    assert RecipeVersion.objects.filter(recipe=client).count() == before
    # Resolving only one is still a conflict.
    r = api_client.post(f"{API}/recipes/{client.id}/rebase", {"resolutions": {DRIFT: "ours"}}, format="json")
    assert r.status_code == 409 and [e["path"] for e in r.json()["errors"]] == [WEEKS]


@pytest.mark.parametrize(
    ("resolutions", "drift", "weeks"),
    [
        ({DRIFT: "ours", WEEKS: "ours"}, 0.1, 8),
        ({DRIFT: "theirs", WEEKS: "theirs"}, 0.12, 6),
        ({DRIFT: {"value": 0.11}, WEEKS: "theirs"}, 0.11, 6),
    ],
)
def test_conflicting_rebase_resolved(api_client, chain, user, lead, resolutions, drift, weeks):
    base, industry, client = chain
    conflicting_upstream(industry, user, lead)
    r = api_client.post(f"{API}/recipes/{client.id}/rebase", {"resolutions": resolutions}, format="json")
    assert r.status_code == 201, r.json()
    merged = r.json()["manifest"]
    assert merged["monitoring"]["drift"]["threshold"] == drift
    assert stage(merged, "elasticity_model")["config"]["reference_weeks"] == weeks
    assert merged["deployment"]["schedule"] == "0 5 * * 1"
    assert r.json()["base_version"]["version"] == "1.2.0"


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        ({"resolutions": "ours"}, 400, "/resolutions"),
        ({"resolutions": {DRIFT: "mine"}}, 400, "/resolutions/~1monitoring~1drift~1threshold"),
        (
            {"resolutions": {DRIFT: "ours", WEEKS: "ours", "/metadata/description": "ours"}},
            400,
            "/resolutions/~1metadata~1description",
        ),
        ({"resolutions": {DRIFT: {"value": -1}, WEEKS: "ours"}}, 400, "/manifest/monitoring/drift/threshold"),
        ({"parent_version": "9.9.9"}, 400, "/parent_version"),
        ({"parent_version": "1.0.0"}, 400, "/parent_version"),  # not approved
        ({"parent_version": "1.1.0"}, 409, "/parent_version"),  # the current base
        ({"surprise": 1}, 400, "/surprise"),
    ],
)
def test_rebase_bad_input_names_the_field(api_client, chain, user, lead, body, code, path):
    base, industry, client = chain
    conflicting_upstream(industry, user, lead)
    before = RecipeVersion.objects.filter(recipe=client).count()
    r = api_client.post(f"{API}/recipes/{client.id}/rebase", body, format="json")
    assert r.status_code == code, r.json()
    assert r.json()["errors"][0]["path"] == path
    assert RecipeVersion.objects.filter(recipe=client).count() == before


def test_rebase_needs_permission(viewer_client, chain, user, lead):
    conflicting_upstream(chain[1], user, lead)
    assert viewer_client.post(f"{API}/recipes/{chain[2].id}/rebase", {}, format="json").status_code == 403


# --------------------------------------------------------------------------- approval gate


def approve(client, version, **body):
    return client.post(
        f"{API}/recipes/{version.recipe_id}/versions/{version.id}/approve", body, format="json"
    )


@pytest.fixture
def industry_version(chain):
    return chain[1], Recipe.objects.get(pk=chain[1].pk).current_version


def test_approval_refused_without_evidence(lead_client, chain):
    client = chain[2]
    version = client.current_version
    r = approve(lead_client, version)
    assert r.status_code == 409
    assert "no succeeded backtest or eval run on version 1.1.0" in r.json()["detail"]
    assert r.json()["errors"][0]["path"] == "/evidence"
    # A train run or a failed backtest is no evidence.
    evidence(version, GOOD, run_type=RunType.TRAIN)
    evidence(version, GOOD, status=RunStatus.FAILED)
    assert approve(lead_client, version).status_code == 409
    gate = lead_client.get(f"{API}/recipes/{client.id}/versions/{version.id}/gate").json()
    assert gate["gate"]["passed"] is False and gate["gate"]["runs_checked"] == 0
    assert RecipeVersion.objects.get(pk=version.pk).approved_at is None


def test_approval_refused_on_a_breached_critical_threshold(lead_client, chain):
    version = chain[2].current_version
    evidence(version, {**GOOD, "demand_mape": 0.45})
    r = approve(lead_client, version)
    assert r.status_code == 409
    assert "demand_mape = 0.45 breaches its critical threshold 0.4" in r.json()["detail"]
    assert Recipe.objects.get(pk=chain[2].pk).status == "draft"


def test_approval_granted_with_evidence_records_it(lead_client, chain):
    version = chain[2].current_version
    evidence(version, {**GOOD, "demand_mape": 0.45})  # an older, failing run
    good = evidence(version, GOOD)
    gate = lead_client.get(f"{API}/recipes/{chain[2].id}/versions/1.1.0/gate").json()["gate"]
    assert gate["passed"] is True and gate["evidence"]["run_id"] == good.id
    r = approve(lead_client, version)
    assert r.status_code == 200, r.json()
    approval = r.json()["approval"]
    assert approval["gate"] == "passed"
    assert approval["evidence_run_id"] == good.id
    assert approval["override_reason"] == ""
    assert approval["evidence"]["metrics"] == GOOD
    assert approval["compared_with"] is None  # the first approved version of this recipe
    assert Recipe.objects.get(pk=chain[2].pk).status == "approved"


def test_approval_compares_with_the_previous_approved_version(lead_client, chain, user, lead):
    client = chain[2]
    first = client.current_version
    first_run = evidence(first, GOOD)
    assert approve(lead_client, first).status_code == 200
    m = copy.deepcopy(first.manifest)
    m["evaluation"]["approval"] = {"regression_tolerance": 0.1}
    second = services.version_create(recipe=client, user=user, manifest=m)
    # demand_mape 0.2 -> 0.23 is 15% worse: over the 10% tolerance, although within thresholds.
    evidence(second, {**GOOD, "demand_mape": 0.23})
    r = approve(lead_client, second)
    assert r.status_code == 409
    assert (
        "demand_mape = 0.23 is 15.0% worse than the approved version's 0.2 (tolerance 10.0%)"
        in r.json()["detail"]
    )
    # 0.21 is 5% worse: within tolerance; margin_impact got better.
    run = evidence(second, {**GOOD, "demand_mape": 0.21, "margin_impact": 0.2})
    r = approve(lead_client, second)
    assert r.status_code == 200, r.json()
    approval = r.json()["approval"]
    assert approval["compared_with"] == {"version_id": first.id, "version": "1.1.0", "run_id": first_run.id}
    assert approval["tolerance"] == 0.1
    rows = {row["metric"]: row for row in approval["evidence"]["comparison"]}
    assert rows["demand_mape"]["worse_by"] == pytest.approx(0.05)
    assert rows["margin_impact"]["worse_by"] == pytest.approx(-(0.2 - 0.12) / 0.12)
    assert approval["evidence_run_id"] == run.id


def test_approval_overridden_with_a_reason(lead_client, chain):
    version = chain[2].current_version
    evidence(version, {**GOOD, "elasticity": -0.2})
    r = approve(lead_client, version, override_reason="  ")
    assert r.status_code == 409
    r = approve(lead_client, version, override_reason="Client signed off the elasticity on their own test.")
    assert r.status_code == 200, r.json()
    approval = r.json()["approval"]
    assert approval["gate"] == "overridden"
    assert approval["override_reason"] == "Client signed off the elasticity on their own test."
    assert approval["reasons"] == ["elasticity = -0.2 breaches its critical threshold -0.5"]
    stored = RecipeVersion.objects.get(pk=version.pk)
    assert stored.approval_override_reason.startswith("Client signed off")
    assert stored.approval_json["gate"] == "overridden"


def test_approval_with_a_chosen_evidence_run(lead_client, chain):
    client, other = chain[2], chain[1]
    version = client.current_version
    run = evidence(version, GOOD)
    foreign = evidence(other.current_version, GOOD)
    r = approve(lead_client, version, evidence_run_id=foreign.id)
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "/evidence_run_id"
    assert approve(lead_client, version, evidence_run_id="run_nope").status_code == 400
    r = approve(lead_client, version, evidence_run_id=run.id)
    assert r.status_code == 200 and r.json()["approval"]["evidence_run_id"] == run.id


def test_only_approvers_approve_or_override(api_client, viewer_client, chain):
    version = chain[2].current_version
    for client in (api_client, viewer_client):
        r = approve(client, version, override_reason="I say so")
        assert r.status_code == 403
    assert RecipeVersion.objects.get(pk=version.pk).approved_at is None


def test_approval_on_a_real_backtest(lead_client, baselines, user):
    """End to end: a real backtest run on a location-scoring clone is the gate's evidence."""
    base = Recipe.objects.get(pk="recipe_location_base")
    industry = services.recipe_clone(source=base, user=user, name="QSR sites")
    version = industry.current_version
    run = run_start(
        user=user,
        recipe=industry,
        recipe_version=version,
        run_type=RunType.BACKTEST,
        params={"synthetic": {"rows": 1500, "seed": 3}},
    )
    assert execute_run(run.id) == "succeeded", Run.objects.get(pk=run.id).error
    r = approve(lead_client, version)
    assert r.status_code == 200, r.json()
    run.refresh_from_db()
    approval = r.json()["approval"]
    assert approval["gate"] == "passed" and approval["evidence_run_id"] == run.id
    assert approval["evidence"]["metrics"] == run.metrics_json
    assert approval["evidence"]["breaches"] == []
