"""The approval gate judges real evidence only (issue 12, defect 2).

An external backtest reported as {"status": "succeeded", "metrics_json": {}} used to pass the
gate: nothing breached because nothing was reported. Evidence must now report every metric
the manifest gates on (target or critical threshold) as a finite number, the gate record
says which executor produced it, and the manifest can require the workspace's own executor
(evaluation.approval.require_workspace_evidence; default true for client recipes)."""

import copy
import math

import pytest

from mlworkspace.errors import Conflict
from recipes import services
from recipes.approval import approval_gate, evaluate_evidence, gated_metrics
from recipes.manifest import requires_workspace_evidence, validate_manifest
from recipes.models import Recipe, RecipeVersion
from recipes.tests.factories import make_client, manifest_for
from runs.models import Run, RunType
from runs.services import run_start

API = "/api/ml-development"
OVERRIDE = "set-up: approved without evidence"
# Within every threshold of the pricing baseline manifest (which gates on all five).
GOOD = {
    "elasticity": -1.6,
    "demand_mape": 0.2,
    "margin_impact": 0.12,
    "calibration": 0.02,
    "revenue_lift": -0.04,
}


def judge(metrics, *, manifest=None, executor="workspace", require_workspace=False):
    return evaluate_evidence(
        family="pricing",
        manifest=manifest or manifest_for("pricing", "industry"),
        metrics=metrics,
        previous=None,
        tolerance=0.05,
        executor=executor,
        require_workspace=require_workspace,
    )


# --------------------------------------------------------------------------- the rule


def test_good_evidence_passes():
    assert judge(GOOD) == {"passed": True, "breaches": [], "comparison": [], "reasons": []}


def test_empty_metrics_are_no_evidence():
    result = judge({})
    assert not result["passed"]
    assert result["reasons"] == ["the run is no evidence: it reported no metrics"]


def test_a_missing_gated_metric_is_refused_by_name():
    partial = {k: v for k, v in GOOD.items() if k not in ("demand_mape", "calibration")}
    result = judge(partial)
    assert not result["passed"]
    assert result["reasons"] == [  # in the manifest's order
        "the run is no evidence: it reported no calibration, demand_mape, which the manifest gates on"
    ]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "0.2", None, True, [0.2]])
def test_a_gated_metric_that_is_not_a_finite_number_is_refused(bad):
    result = judge({**GOOD, "demand_mape": bad})
    assert not result["passed"]
    assert len(result["reasons"]) == 1
    assert result["reasons"][0].startswith("the run is no evidence: it reported demand_mape = ")
    assert result["reasons"][0].endswith(", not a finite number")
    assert result["breaches"] == []  # a NaN is not judged against thresholds at all


def test_only_metrics_with_a_target_or_critical_threshold_are_required():
    manifest = manifest_for("pricing", "industry")
    manifest["evaluation"]["metrics"]["calibration"] = {"threshold_warning": 0.1}
    assert "calibration" not in gated_metrics(manifest)
    assert sorted(gated_metrics(manifest)) == sorted(set(GOOD) - {"calibration"})
    without = {k: v for k, v in GOOD.items() if k != "calibration"}
    assert judge(without, manifest=manifest)["passed"]
    # Extra metrics the manifest does not define are ignored, whatever they hold.
    assert judge({**GOOD, "notes": "n/a"})["passed"]


def test_external_evidence_when_the_workspace_executor_is_required():
    assert judge(GOOD, executor="external")["passed"]
    result = judge(GOOD, executor="external", require_workspace=True)
    assert not result["passed"]
    assert "require_workspace_evidence" in result["reasons"][0]
    assert judge(GOOD, executor="workspace", require_workspace=True)["passed"]


def test_require_workspace_evidence_defaults_by_level_and_is_validated():
    manifest = manifest_for("pricing", "industry")
    assert requires_workspace_evidence(manifest, "client") is True
    assert requires_workspace_evidence(manifest, "industry") is False
    assert requires_workspace_evidence(manifest, "baseline") is False
    manifest["evaluation"]["approval"] = {"require_workspace_evidence": False}
    assert requires_workspace_evidence(manifest, "client") is False
    manifest["evaluation"]["approval"] = {"require_workspace_evidence": True}
    assert requires_workspace_evidence(manifest, "industry") is True
    assert validate_manifest(manifest, family="pricing", level="industry") == []
    manifest["evaluation"]["approval"] = {"require_workspace_evidence": "yes"}
    errors = validate_manifest(manifest, family="pricing", level="industry", path_prefix="/manifest")
    assert [e["path"] for e in errors] == ["/manifest/evaluation/approval/require_workspace_evidence"]


# --------------------------------------------------------------------------- through the API


@pytest.fixture
def industry(baselines, user):
    """An industry clone of the pricing baseline: external evidence is allowed by default."""
    return services.recipe_clone(
        source=Recipe.objects.get(pk="recipe_pricing_base"), user=user, name="Retail"
    )


@pytest.fixture
def client_recipe(industry, user, lead):
    services.version_approve(version=industry.current_version, user=lead, override_reason=OVERRIDE)
    acme = make_client("Acme", {user: "data_scientist", lead: "lead"})
    return services.recipe_clone(
        source=Recipe.objects.get(pk=industry.pk), user=user, name="Acme", client=acme
    )


def external_backtest(api_client, version: RecipeVersion, body: dict) -> str:
    """An external runner's backtest on `version`, reported through PUT /runs/{id}."""
    run = run_start(
        user=None,
        recipe=version.recipe,
        recipe_version=version,
        run_type=RunType.BACKTEST,
        executor="external",
    )
    r = api_client.put(f"{API}/runs/{run.pk}", body, format="json")
    assert r.status_code == 200, r.json()
    return run.pk


def approve(client, version, **body):
    return client.post(
        f"{API}/recipes/{version.recipe_id}/versions/{version.id}/approve", body, format="json"
    )


def test_an_external_success_with_no_metrics_does_not_pass_the_gate(api_client, lead_client, industry):
    """The reported defect, end to end."""
    version = industry.current_version
    run_id = external_backtest(api_client, version, {"status": "succeeded", "metrics_json": {}})
    gate = lead_client.get(f"{API}/recipes/{industry.id}/versions/{version.id}/gate").json()["gate"]
    assert gate["passed"] is False
    assert gate["evidence"]["run_id"] == run_id and gate["evidence"]["executor"] == "external"
    assert gate["reasons"] == ["the run is no evidence: it reported no metrics"]
    r = approve(lead_client, version)
    assert r.status_code == 409
    assert "it reported no metrics" in r.json()["detail"]
    assert RecipeVersion.objects.get(pk=version.pk).approved_at is None


def test_an_external_report_missing_a_gated_metric_is_refused(api_client, lead_client, industry):
    version = industry.current_version
    external_backtest(
        api_client, version, {"status": "succeeded", "metrics_json": {"elasticity": -1.6, "demand_mape": 0.2}}
    )
    r = approve(lead_client, version)
    assert r.status_code == 409
    detail = r.json()["detail"]
    for name in ("margin_impact", "calibration", "revenue_lift"):
        assert name in detail
    assert RecipeVersion.objects.get(pk=version.pk).approved_at is None


def test_external_evidence_is_accepted_when_not_required_and_recorded_as_external(
    api_client, lead_client, industry
):
    version = industry.current_version
    run_id = external_backtest(api_client, version, {"status": "succeeded", "metrics_json": GOOD})
    r = approve(lead_client, version)
    assert r.status_code == 200, r.json()
    approval = r.json()["approval"]
    assert approval["gate"] == "passed" and approval["evidence_run_id"] == run_id
    assert approval["evidence"]["executor"] == "external"
    assert approval["require_workspace_evidence"] is False
    assert RecipeVersion.objects.get(pk=version.pk).approval_json["evidence"]["executor"] == "external"


def test_a_client_recipe_needs_workspace_evidence_by_default(api_client, client_recipe, user, lead):
    version = client_recipe.current_version
    external_backtest(api_client, version, {"status": "succeeded", "metrics_json": GOOD})
    gate = approval_gate(version)
    assert gate["require_workspace_evidence"] is True and gate["passed"] is False
    assert "external runner" in gate["reasons"][0] and gate["evidence"]["executor"] == "external"
    with pytest.raises(Conflict):
        services.version_approve(version=version, user=lead)
    # A run the workspace executed is evidence (its numbers set here: the gate reads the row).
    run = run_start(user=user, recipe=client_recipe, recipe_version=version, run_type=RunType.BACKTEST)
    Run.objects.filter(pk=run.pk).update(status="succeeded", metrics_json=GOOD, finished_at=run.created_at)
    approved = services.version_approve(version=version, user=lead)
    assert approved.approval_run_id == run.pk
    assert approved.approval_json["evidence"]["executor"] == "workspace"
    assert approved.approval_json["gate"] == "passed"


def test_the_manifest_sets_the_requirement_either_way(api_client, client_recipe, industry, user, lead):
    # A client recipe that opts out accepts an external runner's evidence ...
    m = copy.deepcopy(client_recipe.current_version.manifest)
    m["evaluation"]["approval"] = {"require_workspace_evidence": False}
    relaxed = services.version_create(recipe=client_recipe, user=user, manifest=m)
    external_backtest(api_client, relaxed, {"status": "succeeded", "metrics_json": GOOD})
    approved = services.version_approve(version=relaxed, user=lead)
    assert approved.approval_json["evidence"]["executor"] == "external"
    assert approved.approval_json["require_workspace_evidence"] is False
    # ... and an industry recipe that opts in refuses it.
    m = copy.deepcopy(Recipe.objects.get(pk=industry.pk).current_version.manifest)
    m["evaluation"]["approval"] = {"require_workspace_evidence": True}
    strict = services.version_create(recipe=industry, user=user, manifest=m)
    external_backtest(api_client, strict, {"status": "succeeded", "metrics_json": GOOD})
    assert approval_gate(strict)["passed"] is False
