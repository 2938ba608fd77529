"""recipes.lineage on its own: diff, bump rules, three-way merge, provenance. No database."""

import copy
import json
import subprocess
import sys

import pytest

from recipes import baselines
from recipes.lineage import (
    check_resolutions,
    diff,
    implied_bump,
    leaves,
    merge3,
    provenance,
    semantic_diff,
)


def pricing() -> dict:
    return copy.deepcopy(baselines.manifest("pricing"))


def stage(manifest: dict, name: str) -> dict:
    return next(s for s in manifest["pipeline"]["stages"] if s["name"] == name)


def test_module_has_no_django_import():
    code = "import sys, recipes.lineage; print(any(m.split('.')[0] == 'django' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- diff


def test_diff_of_equal_manifests_is_empty_and_ignores_identity_metadata():
    old = pricing()
    new = copy.deepcopy(old)
    new["metadata"].update(id="other", name="Other", level="client", version="9.9.9")
    assert diff(old, new) == []
    assert semantic_diff(old, new)["suggested_bump"] is None


def test_diff_paths_values_and_ops():
    old = pricing()
    new = copy.deepcopy(old)
    new["evaluation"]["metrics"]["calibration"]["target"] = 0.03
    del new["monitoring"]["alerts"]["feature_drift"]
    new["evaluation"]["metrics"]["revenue_lift"]["direction"] = "higher"
    changes = {c["path"]: c for c in diff(old, new)}
    assert changes["/evaluation/metrics/calibration/target"] | {} == {
        "path": "/evaluation/metrics/calibration/target",
        "op": "change",
        "old": 0.02,
        "new": 0.03,
        "bump": "minor",
        "reason": "metric calibration threshold changed",
    }
    removed = changes["/monitoring/alerts/feature_drift"]
    assert (removed["op"], removed["old"], removed["new"]) == (
        "remove",
        {"condition": "drift.max_psi > 0.2", "severity": "warning"},
        None,
    )
    added = changes["/evaluation/metrics/revenue_lift/direction"]
    assert (added["op"], added["new"]) == ("add", "higher")
    assert len(changes) == 3


def test_lists_are_diffed_by_identity_not_position():
    old = pricing()
    new = copy.deepcopy(old)
    # Same elements, other positions: no change for sets (feature sets, grain).
    new["requirements"]["grain"].reverse()
    new["requirements"]["feature_sets"]["required"].reverse()
    # A new stage in the middle: one add, the stages after it are not "changed".
    new["pipeline"]["stages"].insert(1, {"name": "outliers", "type": "feature_prep", "config": {}})
    stage(new, "elasticity_model")["config"]["hyperparameters"]["fourier_order"] = 3
    assert [(c["path"], c["op"]) for c in diff(old, new)] == [
        ("/pipeline/stages/elasticity_model/config/hyperparameters/fourier_order", "change"),
        ("/pipeline/stages/outliers", "add"),
    ]


def test_stage_reorder_is_one_change_with_the_name_orders():
    old = pricing()
    new = copy.deepcopy(old)
    stages = new["pipeline"]["stages"]
    stages[0], stages[1] = stages[1], stages[0]
    (change,) = diff(old, new)
    assert change["path"] == "/pipeline/stages" and change["op"] == "change"
    assert change["old"][:2] == ["data_quality", "price_feature_prep"]
    assert change["new"][:2] == ["price_feature_prep", "data_quality"]
    assert change["bump"] == "minor"


def test_lists_without_identity_are_one_value_and_json_types_count():
    assert diff({"a": [1, 1]}, {"a": [1, 1, 2]}) == [
        {
            "path": "/a",
            "op": "change",
            "old": [1, 1],
            "new": [1, 1, 2],
            "bump": "minor",
            "reason": "/a changed",
        }
    ]
    assert diff({"a": 1}, {"a": 1.0}) == []
    assert [c["new"] for c in diff({"a": 1}, {"a": True})] == [True]
    # A set element is named by its text in paths, so "1" -> 1 is a change of that element.
    assert [(c["path"], c["old"], c["new"]) for c in diff({"s": ["1"]}, {"s": [1]})] == [("/s/1", "1", 1)]
    assert diff({"m": {"a/b~c": 1}}, {"m": {"a/b~c": 2}})[0]["path"] == "/m/a~1b~0c"


# --------------------------------------------------------------------------- bump rules


def bump_of(mutate) -> tuple[str | None, list[str]]:
    old = pricing()
    new = copy.deepcopy(old)
    mutate(new)
    result = semantic_diff(old, new)
    return result["suggested_bump"], [c["reason"] for c in result["changes"]]


@pytest.mark.parametrize(
    ("mutate", "bump", "reason"),
    [
        # major
        (
            lambda m: m["requirements"]["feature_sets"]["required"].remove("cost"),
            "major",
            "removed or renamed",
        ),
        (
            lambda m: m["requirements"]["feature_sets"]["required"].__setitem__(2, "unit_cost"),
            "major",
            "new required feature set 'unit_cost'",
        ),
        (lambda m: m["requirements"]["grain"].append("channel"), "major", "grain changed"),
        (lambda m: m["requirements"].__setitem__("grain", "product_id, week"), "major", "grain changed"),
        (lambda m: m["requirements"]["labels"].append("revenue"), "major", "labels changed"),
        (lambda m: m["pipeline"]["stages"].pop(1), "major", "stage 'price_feature_prep' removed"),
        (lambda m: m["requirements"].__setitem__("min_history", "2 years"), "major", "more history"),
        # minor
        (lambda m: m["requirements"]["feature_sets"]["optional"].append("weather"), "minor", "optional"),
        (
            lambda m: m["pipeline"]["stages"].insert(1, {"name": "x", "type": "feature_prep"}),
            "minor",
            "new stage 'x'",
        ),
        (lambda m: m["evaluation"]["metrics"].__setitem__("rmse", {"target": 5}), "minor", "new metric"),
        (
            lambda m: m["monitoring"]["alerts"].__setitem__(
                "a", {"condition": "rmse > 1", "severity": "warning"}
            ),
            "minor",
            "new alert",
        ),
        (
            lambda m: stage(m, "elasticity_model")["config"].__setitem__("algorithm", "lightgbm"),
            "minor",
            "algorithm changed",
        ),
        (
            lambda m: m["evaluation"]["metrics"]["demand_mape"].__setitem__("threshold_critical", 0.5),
            "minor",
            "threshold changed",
        ),
        (lambda m: m["monitoring"]["drift"].__setitem__("threshold", 0.1), "minor", "/monitoring/drift"),
        (lambda m: m["requirements"].__setitem__("min_history", "26 weeks"), "minor", "less history"),
        # patch
        (lambda m: m["metadata"].__setitem__("description", "New words"), "patch", "description edited"),
        (
            lambda m: stage(m, "elasticity_model")["config"]["hyperparameters"].__setitem__(
                "fourier_order", 3
            ),
            "patch",
            "setting tweaked",
        ),
        (lambda m: m["deployment"].__setitem__("schedule", "0 7 * * 1"), "patch", "schedule changed"),
        (
            lambda m: stage(m, "evaluate").__setitem__("description", "Scores the holdout"),
            "patch",
            "description edited",
        ),
    ],
)
def test_each_bump_rule(mutate, bump, reason):
    got, reasons = bump_of(mutate)
    assert got == bump
    assert any(reason in r for r in reasons), reasons


def test_the_largest_bump_wins_and_units_compare():
    def several(m):
        m["metadata"]["description"] = "x"
        m["evaluation"]["metrics"]["rmse"] = {"target": 5}
        m["requirements"]["grain"].append("channel")

    assert bump_of(several)[0] == "major"
    # Lengths compare across units: 52 weeks is 364 days.
    assert bump_of(lambda m: m["requirements"].__setitem__("min_history", "360 days"))[0] == "minor"
    assert bump_of(lambda m: m["requirements"].__setitem__("min_history", "1 year"))[0] == "major"
    assert bump_of(lambda m: m["requirements"].__setitem__("min_history", "500 rows"))[0] == "major"
    assert bump_of(lambda m: m["requirements"].__setitem__("min_history", None))[0] == "minor"


def test_implied_bump_of_version_numbers():
    assert implied_bump("1.2.3", "2.0.0") == "major"
    assert implied_bump("1.2.3", "1.3.0") == "minor"
    assert implied_bump("1.2.3", "1.2.4") == "patch"
    assert implied_bump("1.2.3", "1.10.0") == "minor"


# --------------------------------------------------------------------------- merge


def three_way():
    base = pricing()
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    return base, ours, theirs


def test_clean_merge_takes_both_sides_changes():
    base, ours, theirs = three_way()
    ours["metadata"].update(id="client", name="Client", level="client", version="1.3.0")
    ours["monitoring"]["drift"]["threshold"] = 0.1
    ours["requirements"]["feature_sets"]["optional"].append("weather")
    theirs["metadata"]["version"] = "1.1.0"
    theirs["evaluation"]["metrics"]["calibration"]["target"] = 0.01
    theirs["requirements"]["feature_sets"]["optional"].append("competitor_prices")
    del theirs["monitoring"]["alerts"]["feature_drift"]
    result = merge3(base, ours, theirs)
    assert result.clean and result.conflicts == [] and result.unused == []
    merged = result.manifest
    assert merged["monitoring"]["drift"]["threshold"] == 0.1
    assert merged["evaluation"]["metrics"]["calibration"]["target"] == 0.01
    assert merged["requirements"]["feature_sets"]["optional"] == [
        "regular_price",
        "weather",
        "competitor_prices",
    ]
    assert "feature_drift" not in merged["monitoring"]["alerts"]
    # Identity is ours; the inputs are untouched.
    assert {k: merged["metadata"][k] for k in ("id", "name", "level", "version")} == {
        "id": "client",
        "name": "Client",
        "level": "client",
        "version": "1.3.0",
    }
    assert "feature_drift" in base["monitoring"]["alerts"]
    merged["monitoring"]["drift"]["threshold"] = 0.9
    assert ours["monitoring"]["drift"]["threshold"] == 0.1


def test_same_change_on_both_sides_is_not_a_conflict():
    base, ours, theirs = three_way()
    for side in (ours, theirs):
        side["deployment"]["schedule"] = "0 5 * * 1"
    assert merge3(base, ours, theirs).clean


def conflicting():
    base, ours, theirs = three_way()
    stage(ours, "elasticity_model")["config"]["hyperparameters"]["fourier_order"] = 3
    stage(theirs, "elasticity_model")["config"]["hyperparameters"]["fourier_order"] = 4
    ours["monitoring"]["drift"]["method"] = "KS"
    del theirs["monitoring"]["drift"]
    return base, ours, theirs


FOURIER = "/pipeline/stages/elasticity_model/config/hyperparameters/fourier_order"


def test_conflicts_list_path_base_ours_theirs():
    result = merge3(*conflicting())
    assert not result.clean
    by_path = {c["path"]: c for c in result.conflicts}
    assert set(by_path) == {FOURIER, "/monitoring/drift"}
    assert (by_path[FOURIER]["base"], by_path[FOURIER]["ours"], by_path[FOURIER]["theirs"]) == (2, 3, 4)
    drift = by_path["/monitoring/drift"]
    assert drift["ours"]["method"] == "KS" and drift["theirs"] is None and drift["theirs_present"] is False
    # Unresolved conflicts keep ours in the (unusable) merge.
    assert stage(result.manifest, "elasticity_model")["config"]["hyperparameters"]["fourier_order"] == 3


def test_conflicts_resolved_with_theirs():
    result = merge3(*conflicting(), resolutions={FOURIER: "theirs", "/monitoring/drift": "theirs"})
    assert result.clean and len(result.resolved) == 2
    assert stage(result.manifest, "elasticity_model")["config"]["hyperparameters"]["fourier_order"] == 4
    assert "drift" not in result.manifest["monitoring"]


def test_conflicts_resolved_with_ours_and_a_value():
    result = merge3(
        *conflicting(),
        resolutions={FOURIER: {"value": 5}, "/monitoring/drift": "ours", "/nowhere": "ours"},
    )
    assert result.clean
    assert stage(result.manifest, "elasticity_model")["config"]["hyperparameters"]["fourier_order"] == 5
    assert result.manifest["monitoring"]["drift"]["method"] == "KS"
    assert result.unused == ["/nowhere"]


def test_list_merge_by_identity():
    base, ours, theirs = three_way()
    # Ours tunes a stage; theirs inserts a stage before it and edits the one after it.
    stage(ours, "elasticity_model")["config"]["reference_weeks"] = 8
    ours["pipeline"]["stages"].append({"name": "notify", "type": "deployment"})
    theirs["pipeline"]["stages"].insert(2, {"name": "calibrate", "type": "feature_prep", "config": {}})
    stage(theirs, "evaluate")["config"]["curve_points"] = 81
    result = merge3(base, ours, theirs)
    assert result.clean
    names = [s["name"] for s in result.manifest["pipeline"]["stages"]]
    assert names == [
        "data_quality",
        "price_feature_prep",
        "calibrate",
        "elasticity_model",
        "evaluate",
        "publish",
        "explain",
        "notify",
    ]
    assert stage(result.manifest, "elasticity_model")["config"]["reference_weeks"] == 8
    assert stage(result.manifest, "evaluate")["config"]["curve_points"] == 81
    # Sets: theirs drops a feature set ours kept; both add others.
    base, ours, theirs = three_way()
    ours["requirements"]["grain"] = ["week", "store_id", "product_id", "channel"]
    theirs["requirements"]["grain"] = ["product_id", "week"]
    assert merge3(base, ours, theirs).manifest["requirements"]["grain"] == ["week", "product_id", "channel"]


def test_stage_order_taken_from_the_side_that_reordered_or_a_conflict():
    base, ours, theirs = three_way()
    stages = theirs["pipeline"]["stages"]
    stages[0], stages[1] = stages[1], stages[0]
    stage(ours, "publish")["config"]["target"] = "s3"
    result = merge3(base, ours, theirs)
    assert result.clean
    assert [s["name"] for s in result.manifest["pipeline"]["stages"]][:2] == [
        "price_feature_prep",
        "data_quality",
    ]
    assert stage(result.manifest, "publish")["config"] == {"target": "s3"}
    # Both reorder differently: one conflict at the list, resolved by a side.
    ours_stages = ours["pipeline"]["stages"]
    ours_stages[3], ours_stages[4] = ours_stages[4], ours_stages[3]
    result = merge3(base, ours, theirs)
    assert [c["path"] for c in result.conflicts] == ["/pipeline/stages"]
    assert result.conflicts[0]["order"] is True
    resolved = merge3(base, ours, theirs, {"/pipeline/stages": "theirs"})
    assert resolved.clean
    assert [s["name"] for s in resolved.manifest["pipeline"]["stages"]] == [
        "price_feature_prep",
        "data_quality",
        "elasticity_model",
        "evaluate",
        "publish",
        "explain",
    ]


def test_check_resolutions_names_bad_entries():
    assert check_resolutions(None) == []
    assert check_resolutions({"/a": "ours", "/b": {"value": None}}) == []
    assert [e["path"] for e in check_resolutions([])] == ["/resolutions"]
    errors = check_resolutions({"a": "ours", "/x/y": "mine", "/z": {"val": 1}})
    assert [e["path"] for e in errors] == ["/resolutions/a", "/resolutions/~1x~1y", "/resolutions/~1z"]


# --------------------------------------------------------------------------- provenance


def test_provenance_through_three_levels():
    baseline = pricing()
    industry = copy.deepcopy(baseline)
    industry["monitoring"]["drift"]["threshold"] = 0.15  # industry overrides the baseline
    industry["requirements"]["feature_sets"]["optional"].append("weather")  # industry's own
    client = copy.deepcopy(industry)
    client["evaluation"]["metrics"]["demand_mape"]["target"] = 0.2  # client overrides the baseline value
    client["monitoring"]["drift"]["threshold"] = 0.1  # client overrides the industry value
    client["deployment"]["endpoint_spec"]["owner"] = "ops"  # client's own
    del client["monitoring"]["alerts"]["feature_drift"]  # client drops an inherited alert
    result = provenance([("base", baseline), ("ind", industry), ("cli", client)])
    fields = {f["path"]: f for f in result["fields"]}

    def src(path):
        f = fields[path]
        return f["source"], f["from"], f["ancestor_value"]

    assert src("/requirements/grain/week") == ("inherited", "base", None)
    assert src("/requirements/feature_sets/optional/weather") == ("inherited", "ind", None)
    assert src("/monitoring/drift/threshold") == ("overridden", "ind", 0.15)
    assert src("/evaluation/metrics/demand_mape/target") == ("overridden", "ind", 0.25)
    assert src("/deployment/endpoint_spec/owner") == ("own", "cli", None)
    assert "/metadata/version" not in fields and "/metadata/id" not in fields
    removed = {r["path"] for r in result["removed"]}
    assert removed == {
        "/monitoring/alerts/feature_drift/condition",
        "/monitoring/alerts/feature_drift/severity",
    }
    # A baseline sets everything itself.
    assert {f["source"] for f in provenance([("base", baseline)])["fields"]} == {"own"}


def test_leaves_address_lists_by_identity():
    flat = leaves(pricing())
    assert flat["/requirements/grain/store_id"] == "store_id"
    assert flat["/pipeline/stages/evaluate/config/curve_points"] == 41
    assert flat["/pipeline/stages/publish/config"] == {}
    assert json.dumps(flat)  # plain JSON values
