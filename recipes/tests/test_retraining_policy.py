"""The manifest's `retraining` section: its parsers and policy (recipes.retraining), the
validator's errors with their paths (recipes.manifest) and the diff's bump rules
(recipes.lineage), without a database; then one round through the versions API.

Run alone with: .venv/bin/python -m pytest -q recipes/tests/test_retraining_policy.py
"""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import timedelta

import pytest

from recipes.baselines import manifest as baseline_manifest
from recipes.lineage import semantic_diff
from recipes.manifest import validate_manifest
from recipes.models import Recipe
from recipes.retraining import RetrainPolicy, Window, parse_duration, parse_window, policy
from recipes.tests.factories import make_recipe, manifest_for

FULL_SECTION = {
    "triggers": {"schedule": "0 3 * * 1", "alerts": ["mape_critical"], "min_new_rows": 20000},
    "cooldown": "7 days",
    "window": "last 104 weeks",
    "promotion": {"mode": "auto", "min_improvement": 0.02},
}


def forecasting(section: dict | None = None) -> dict:
    """The forecasting baseline (alerts: mape_critical, coverage_collapse, feature_drift),
    with a `retraining` section when one is given."""
    m = copy.deepcopy(baseline_manifest("forecasting"))
    if section is not None:
        m["retraining"] = copy.deepcopy(section)
    return m


def errors_of(section: dict) -> list[tuple[str, str]]:
    return [(e["path"], e["message"]) for e in validate_manifest(forecasting(section))]


def only_error(section: dict, path: str) -> str:
    errors = errors_of(section)
    assert [p for p, _ in errors] == [path], errors
    return errors[0][1]


def test_module_has_no_django_import():
    code = "import sys, recipes.retraining; print(any(m.split('.')[0] == 'django' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- parsers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7 days", timedelta(days=7)),
        ("1 day", timedelta(days=1)),
        ("0 days", timedelta(0)),
        ("12 hours", timedelta(hours=12)),
        ("1 hour", timedelta(hours=1)),
        ("2 weeks", timedelta(days=14)),
        ("  3 Weeks ", timedelta(days=21)),
        ("48hours", timedelta(hours=48)),
    ],
)
def test_parse_duration_accepts_hours_days_and_weeks(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["7 fortnights", "7", "days", "-1 days", "1.5 days", "7 days ago", "", "1 month", "seven days", 7, None],
)
def test_parse_duration_refuses_anything_else_saying_what_it_wants(text):
    with pytest.raises(ValueError) as exc:
        parse_duration(text)
    assert str(exc.value).startswith("must be like '7 days' (hours, days or weeks), got ")


def test_parse_duration_names_the_bad_text_and_refuses_absurd_lengths():
    with pytest.raises(ValueError, match="got '7 fortnights'"):
        parse_duration("7 fortnights")
    with pytest.raises(ValueError, match="at most 100 years"):
        parse_duration("999999999 weeks")
    with pytest.raises(ValueError, match="must be like"):
        parse_duration("1" * 5000 + " days")  # never reaches int()
    assert parse_duration("5000 weeks") == timedelta(weeks=5000)
    with pytest.raises(ValueError, match="at most 100 years"):
        parse_window("last 999999999 weeks")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("last 104 weeks", Window(kind="period", count=104, days=728)),
        ("last 1 week", Window(kind="period", count=1, days=7)),
        ("last 90 days", Window(kind="period", count=90, days=90)),
        ("Last 2 Days", Window(kind="period", count=2, days=2)),
        ("latest 3 datasets", Window(kind="datasets", count=3, days=None)),
        ("latest 1 dataset", Window(kind="datasets", count=1, days=None)),
    ],
)
def test_parse_window_reads_periods_and_dataset_counts(text, expected):
    assert parse_window(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "104 weeks",
        "last 2 years",
        "last weeks",
        "latest 3 weeks",
        "last -1 days",
        "first 3 datasets",
        "",
        None,
        5,
    ],
)
def test_parse_window_refuses_other_forms(text):
    with pytest.raises(ValueError) as exc:
        parse_window(text)
    assert str(exc.value).startswith("must be like 'last 104 weeks' (days or weeks) or 'latest 3 datasets'")


@pytest.mark.parametrize("text", ["last 0 weeks", "latest 0 datasets"])
def test_parse_window_needs_at_least_one_unit(text):
    with pytest.raises(ValueError, match="at least 1 day, week or dataset"):
        parse_window(text)


# --------------------------------------------------------------------------- policy()


def test_policy_is_none_without_a_retraining_section():
    assert policy(forecasting()) is None
    assert policy({}) is None
    assert policy(None) is None


def test_policy_of_a_full_section():
    assert policy(forecasting(FULL_SECTION)) == RetrainPolicy(
        schedule="0 3 * * 1",
        alerts=("mape_critical",),
        min_new_rows=20000,
        cooldown=timedelta(days=7),
        window=Window(kind="period", count=104, days=728),
        promotion="auto",
        min_improvement=0.02,
    )


def test_policy_defaults_of_an_empty_section():
    got = policy(forecasting({}))
    assert got == RetrainPolicy(
        schedule=None,
        alerts=(),
        min_new_rows=None,
        cooldown=timedelta(0),
        window=None,
        promotion="manual",
        min_improvement=0.0,
    )
    assert got.automatic is False
    assert policy(forecasting({"triggers": {"min_new_rows": 5}})).automatic is True


def test_policy_reads_a_dataset_window_and_auto_promotion_without_min_improvement():
    got = policy(
        forecasting({"window": "latest 2 datasets", "promotion": {"mode": "auto"}, "cooldown": "36 hours"})
    )
    assert got.window == Window(kind="datasets", count=2, days=None)
    assert got.promotion == "auto"
    assert got.min_improvement == 0.0
    assert got.cooldown == timedelta(hours=36)


# --------------------------------------------------------------------------- validation


def test_full_section_is_valid():
    assert validate_manifest(forecasting(FULL_SECTION), family="forecasting", level="baseline") == []


@pytest.mark.parametrize(
    "section",
    [
        {},
        {"triggers": {}},
        {"triggers": {"schedule": None, "alerts": []}},
        {"promotion": {"mode": "manual"}},
        {"cooldown": "0 days", "window": "latest 1 dataset"},
    ],
)
def test_small_sections_are_valid(section):
    assert validate_manifest(forecasting(section)) == []


def test_unknown_alert_name_is_refused_naming_the_known_ones():
    section = copy.deepcopy(FULL_SECTION)
    section["triggers"]["alerts"] = ["mape_critical", "mape_critcal"]
    message = only_error(section, "/retraining/triggers/alerts/1")
    assert message == (
        "alert 'mape_critcal' is not defined in monitoring.alerts; did you mean 'mape_critical'? "
        "allowed: coverage_collapse, feature_drift, mape_critical"
    )


def test_alert_trigger_without_any_monitoring_alerts_says_so():
    m = forecasting({"triggers": {"alerts": ["mape_critical"]}})
    del m["monitoring"]["alerts"]
    errors = validate_manifest(m)
    assert [e["path"] for e in errors] == ["/retraining/triggers/alerts/0"]
    assert "monitoring.alerts defines no alerts" in errors[0]["message"]


def test_duplicate_alert_trigger_is_refused_at_the_repeat():
    message = only_error(
        {"triggers": {"alerts": ["feature_drift", "mape_critical", "feature_drift"]}},
        "/retraining/triggers/alerts/2",
    )
    assert message == "alert 'feature_drift' is listed more than once in 'alerts' (item 0 already names it)"


@pytest.mark.parametrize(
    ("schedule", "detail"),
    [("0 25 * * *", "Bad hour"), ("daily", "1 field"), ("0 3 * * 1 *", "6 fields")],
)
def test_bad_retraining_cron_uses_the_deployment_wording(schedule, detail):
    message = only_error({"triggers": {"schedule": schedule}}, "/retraining/triggers/schedule")
    assert message == (
        "'schedule' must be a 5-field cron expression (minute hour day-of-month month day-of-week) "
        f"or null, got {schedule!r} ({detail})"
    )
    # The same rule, the same words, for deployment.schedule.
    m = forecasting()
    m["deployment"]["schedule"] = schedule
    assert [(e["path"], e["message"]) for e in validate_manifest(m)] == [("/deployment/schedule", message)]


def test_bad_cooldown_is_refused_with_the_parser_message():
    message = only_error({"cooldown": "7 fortnights"}, "/retraining/cooldown")
    assert message == "'cooldown' must be like '7 days' (hours, days or weeks), got '7 fortnights'"


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (
            "2 years",
            "'window' must be like 'last 104 weeks' (days or weeks) or 'latest 3 datasets', got '2 years'",
        ),
        ("last 0 days", "'window' must cover at least 1 day, week or dataset, got 'last 0 days'"),
    ],
)
def test_bad_window_is_refused_with_the_parser_message(window, expected):
    assert only_error({"window": window}, "/retraining/window") == expected


def test_min_improvement_with_manual_promotion_is_refused():
    message = only_error(
        {"promotion": {"mode": "manual", "min_improvement": 0.05}}, "/retraining/promotion/min_improvement"
    )
    assert "applies only to automatic promotion" in message
    assert "'auto'" in message


@pytest.mark.parametrize(
    ("section", "path", "phrase"),
    [
        ({"triggers": {"alert": ["mape_critical"]}}, "/retraining/triggers/alert", "did you mean 'alerts'?"),
        ({"cooldwn": "7 days"}, "/retraining/cooldwn", "did you mean 'cooldown'?"),
        ({"promotion": {"mode": "auto", "extra": 1}}, "/retraining/promotion/extra", "unknown field 'extra'"),
        (
            {"promotion": {"min_improvement": 0.1}},
            "/retraining/promotion/mode",
            "missing required field 'mode'",
        ),
        ({"promotion": {"mode": "sometimes"}}, "/retraining/promotion/mode", "is not one of manual, auto"),
        ({"triggers": {"min_new_rows": 0}}, "/retraining/triggers/min_new_rows", "must be at least 1"),
        ({"triggers": {"min_new_rows": 2.5}}, "/retraining/triggers/min_new_rows", "must be an integer"),
        (
            {"promotion": {"mode": "auto", "min_improvement": -0.1}},
            "/retraining/promotion/min_improvement",
            "must be at least 0",
        ),
        ({"cooldown": 7}, "/retraining/cooldown", "must be a string"),
        ({"triggers": {"alerts": "mape_critical"}}, "/retraining/triggers/alerts", "must be a list"),
    ],
)
def test_schema_errors_have_paths_under_retraining(section, path, phrase):
    assert phrase in only_error(section, path)


def test_every_problem_is_reported_at_once_after_the_other_sections():
    m = forecasting(
        {
            "triggers": {"schedule": "0 25 * * *", "alerts": ["nope"]},
            "cooldown": "soon",
            "window": "all of it",
            "promotion": {"mode": "manual", "min_improvement": 0.1},
        }
    )
    m["deployment"]["schedule"] = "never"
    paths = [e["path"] for e in validate_manifest(m, path_prefix="/manifest")]
    assert paths == [
        "/manifest/deployment/schedule",
        "/manifest/retraining/triggers/schedule",
        "/manifest/retraining/triggers/alerts/0",
        "/manifest/retraining/cooldown",
        "/manifest/retraining/window",
        "/manifest/retraining/promotion/min_improvement",
    ]


# --------------------------------------------------------------------------- bump rules


def bump_of(
    old_section: dict | None, new_section: dict | None
) -> tuple[str | None, list[tuple[str, str, str]]]:
    result = semantic_diff(forecasting(old_section), forecasting(new_section))
    return result["suggested_bump"], [(c["path"], c["bump"], c["reason"]) for c in result["changes"]]


def edited(**changes) -> dict:
    """FULL_SECTION with `a__b=value` set at a.b; None deletes the key (a schedule becomes null)."""
    section = copy.deepcopy(FULL_SECTION)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = section
        for p in parents:
            target = target[p]
        if value is None and last != "schedule":
            del target[last]
        else:
            target[last] = value
    return section


@pytest.mark.parametrize(
    ("old", "new", "bump", "change"),
    [
        (None, FULL_SECTION, "minor", ("/retraining", "minor", "retraining policy added")),
        (FULL_SECTION, None, "minor", ("/retraining", "minor", "retraining policy removed")),
        (
            {"cooldown": "1 day"},
            {"cooldown": "1 day", "triggers": {"min_new_rows": 10}},
            "minor",
            ("/retraining/triggers", "minor", "retraining triggers added"),
        ),
        (
            FULL_SECTION,
            edited(triggers__alerts=["mape_critical", "feature_drift"]),
            "minor",
            (
                "/retraining/triggers/alerts/feature_drift",
                "minor",
                "retraining on alert 'feature_drift' added",
            ),
        ),
        (
            FULL_SECTION,
            edited(triggers__alerts=[]),
            "minor",
            (
                "/retraining/triggers/alerts/mape_critical",
                "minor",
                "retraining on alert 'mape_critical' removed",
            ),
        ),
        (
            FULL_SECTION,
            edited(triggers__min_new_rows=None),
            "minor",
            ("/retraining/triggers/min_new_rows", "minor", "retraining trigger 'min_new_rows' removed"),
        ),
        (
            FULL_SECTION,
            edited(triggers__schedule=None),
            "minor",
            ("/retraining/triggers/schedule", "minor", "retraining trigger 'schedule' removed"),
        ),
        (
            edited(triggers__schedule=None),
            FULL_SECTION,
            "minor",
            ("/retraining/triggers/schedule", "minor", "retraining trigger 'schedule' added"),
        ),
        (
            FULL_SECTION,
            edited(promotion__mode="manual", promotion__min_improvement=None),
            "minor",
            ("/retraining/promotion/mode", "minor", "promotion mode changed (auto → manual)"),
        ),
        (
            edited(promotion=None),
            FULL_SECTION,
            "minor",
            ("/retraining/promotion", "minor", "promotion mode changed (manual → auto)"),
        ),
        # patch: tuning what is already there
        (
            FULL_SECTION,
            edited(triggers__schedule="0 4 * * 1"),
            "patch",
            ("/retraining/triggers/schedule", "patch", "retraining trigger 'schedule' changed"),
        ),
        (
            FULL_SECTION,
            edited(triggers__min_new_rows=50000),
            "patch",
            ("/retraining/triggers/min_new_rows", "patch", "retraining trigger 'min_new_rows' changed"),
        ),
        (
            FULL_SECTION,
            edited(cooldown="14 days"),
            "patch",
            ("/retraining/cooldown", "patch", "retraining cooldown changed"),
        ),
        (
            FULL_SECTION,
            edited(window="latest 3 datasets"),
            "patch",
            ("/retraining/window", "patch", "retraining window changed"),
        ),
        (
            FULL_SECTION,
            edited(window=None),
            "patch",
            ("/retraining/window", "patch", "retraining window changed"),
        ),
        (
            FULL_SECTION,
            edited(promotion__min_improvement=0.05),
            "patch",
            ("/retraining/promotion/min_improvement", "patch", "promotion min_improvement changed"),
        ),
        (
            {},
            {"promotion": {"mode": "manual"}},
            "patch",
            ("/retraining/promotion", "patch", "promotion settings changed"),
        ),
    ],
)
def test_retraining_bump_rules(old, new, bump, change):
    got, changes = bump_of(old, new)
    assert got == bump
    assert change in changes, changes


def test_a_retraining_patch_does_not_hide_a_larger_bump_elsewhere():
    new = forecasting(edited(cooldown="1 day"))
    new["requirements"]["grain"] = ["store_id"]
    result = semantic_diff(forecasting(FULL_SECTION), new)
    assert result["suggested_bump"] == "major"
    assert result["by_bump"]["patch"] == 1


# --------------------------------------------------------------------------- through the API

API = "/api/ml-development"


@pytest.mark.django_db
def test_new_version_with_a_bad_policy_is_a_400_with_paths_and_writes_nothing(api_client, baselines, user):
    recipe = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    manifest = manifest_for("pricing", "industry")
    manifest["retraining"] = {
        "triggers": {"alerts": ["margin_los"], "schedule": "0 3 * *"},
        "promotion": {"mode": "manual", "min_improvement": 0.1},
    }
    r = api_client.post(f"{API}/recipes/{recipe.id}/versions", {"manifest": manifest}, format="json")
    assert r.status_code == 400, r.json()
    assert [e["path"] for e in r.json()["errors"]] == [
        "/manifest/retraining/triggers/schedule",
        "/manifest/retraining/triggers/alerts/0",
        "/manifest/retraining/promotion/min_improvement",
    ]
    assert "did you mean 'margin_loss'?" in r.json()["errors"][1]["message"]
    assert recipe.versions.count() == 1

    manifest["retraining"] = {"triggers": {"alerts": ["margin_loss"]}, "promotion": {"mode": "auto"}}
    r = api_client.post(f"{API}/recipes/{recipe.id}/versions", {"manifest": manifest}, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["version"] == "1.1.0"  # the suggested bump: a retraining policy added is minor
    assert policy(r.json()["manifest"]).alerts == ("margin_loss",)
