"""seed_demo builds the demo through the real services and runs, and only once."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from experiments.models import Experiment, Exposure, Outcome
from models_registry.models import MLModel
from monitoring.models import Alert, MonitorSnapshot, Retrain, ScoringBatch
from notifications.models import Webhook
from recipes import tuning as spec_tuning
from recipes.models import ClientMembership, Recipe, RecipeVersion
from recipes.selectors import recipe_upstream
from runs.models import Run
from runs.tuning_selectors import tune_study
from workspace.demo import (
    AB_HORIZON,
    DEMO_TAG,
    MARKER_NAME,
    MIN_ROWS,
    SCORED_BATCHES,
    TUNED_RECIPE,
    DemoBuilder,
    DemoError,
    DemoTuningError,
    concept_schedule,
    demo_user,
    drift_schedule,
    seed_datasets,
)
from workspace.demo.loop import AB_MIN_IMPROVEMENT
from workspace.demo.tuning import tune
from workspace.management.commands import seed_demo as seed_demo_command

DAYS = 12


def _counts() -> dict[str, int]:
    return {
        "recipes": Recipe.objects.count(),
        "versions": RecipeVersion.objects.count(),
        "models": MLModel.objects.count(),
        "runs": Run.objects.count(),
        "snapshots": MonitorSnapshot.objects.count(),
        "alerts": Alert.objects.count(),
    }


def _seed() -> str:
    out = StringIO()
    call_command("seed_demo", days=DAYS, rows=MIN_ROWS, stdout=out)
    return out.getvalue()


def test_drift_schedule_is_an_episode_in_the_middle_with_recovery():
    full = drift_schedule(90)
    assert sorted(full) == list(range(39, 54))  # days 40-54 of 90, one-based
    assert full[39] == 0.4 and max(full.values()) == 0.8
    assert list(full.values()) == sorted(full.values())  # grows, never shrinks, within it
    short = drift_schedule(DAYS)
    assert short and max(short) < DAYS - 1  # at least one clean day after it
    assert drift_schedule(3) == {}


def test_concept_change_comes_last_after_the_drift_episode():
    assert concept_schedule(90) == {87, 88, 89}  # days 88-90 of 90
    assert concept_schedule(DAYS) == {DAYS - 2, DAYS - 1}
    assert min(concept_schedule(DAYS)) > max(drift_schedule(DAYS)) + 1  # calm days between
    assert concept_schedule(3) == {1, 2}  # no drift episode: the loop still runs
    assert concept_schedule(2) == set()


# Transactional: the demo's tune run comes after its transaction commits, and its study's
# process writes through a connection of its own, which an open test transaction would lock.
@pytest.mark.django_db(transaction=True)
def test_seed_demo_builds_everything_through_real_runs_and_only_once():
    output = _seed()
    assert "Demo ready" in output
    assert "Loaded the baseline recipes." in output  # the fixture was missing: loaded first

    demo = Recipe.objects.filter(tag_set__name=DEMO_TAG)
    assert {r.level for r in demo} == {"industry", "client"}
    assert {r.model_family for r in demo.filter(level="industry")} == {
        "forecasting",
        "pricing",
        "next_best_action",
        "location_scoring",
    }
    assert all(r.parent.level == "industry" for r in demo.filter(level="client"))
    # Every client recipe belongs to a client named after it; two clients have different teams.
    assert all(r.client is not None and r.client.name == r.name for r in demo.filter(level="client"))
    teams = {
        name: dict(ClientMembership.objects.filter(client__name=name).values_list("user__username", "role"))
        for name in ("FreshMart Stores", "VoltMart")
    }
    assert teams["FreshMart Stores"]["freshmart.lead"] == "lead"
    assert teams["VoltMart"]["voltmart.viewer"] == "viewer"
    assert not set(teams["FreshMart Stores"]) & set(teams["VoltMart"]) - {"demo"}
    assert set(demo.values_list("status", flat=True)) == {"approved", "in_review", "deprecated"}
    grocery = Recipe.objects.get(name=MARKER_NAME)
    assert [(v.version, v.is_approved) for v in grocery.versions.order_by("created_at")] == [
        ("1.0.0", True),
        ("1.1.0", True),
        ("1.2.0", True),
    ]
    assert grocery.versions.get(version="1.1.0").manifest["evaluation"]["metrics"]["MAPE"]["target"] == 0.2
    assert set(grocery.children.values_list("name", flat=True)) == {"FreshMart Stores", "GreenGrocer Co"}
    # Approvals went through the gate: some on a real backtest, the rest by a stated override.
    approvals = RecipeVersion.objects.filter(recipe__in=demo, approved_at__isnull=False)
    by_gate = {}
    for v in approvals:
        by_gate.setdefault(v.approval_json["gate"], []).append(v)
    assert set(by_gate) == {"passed", "overridden"}
    assert all(v.approval_run.run_type == "backtest" for v in by_gate["passed"])
    assert all(v.approval_override_reason for v in by_gate["overridden"])
    # Electronics got a new approved version after VoltMart was cloned from it.
    voltmart = Recipe.objects.get(name="VoltMart")
    assert recipe_upstream(voltmart)["update_available"] is True

    models = {m.name: m for m in MLModel.objects.all()}
    assert {m.status for m in models.values()} == {"registered", "staging", "production", "archived"}
    for model in models.values():
        # Every model but the one whose training failed has a real artifact from its train run
        # (a challenger the retrain did not promote stays registered, trained).
        trained = model.status != "registered" or model.challenger_of_id is not None
        assert bool(model.artifacts_json.get("model")) is trained
        assert (model.training_run is not None and model.training_run.status == "succeeded") is trained

    runs = Run.objects.all()
    assert set(runs.values_list("run_type", flat=True)) == {
        "train",
        "eval",
        "backtest",
        "score",
        "tune",
        "trial",
    }
    assert {"succeeded", "failed", "cancelled"} <= set(runs.values_list("status", flat=True))
    # (A trial the median pruner stopped ends cancelled: the tune run's, checked below.)
    failed = runs.exclude(run_type="trial").get(status="failed")
    assert "week" in failed.error and failed.model == models["VoltMart price elasticity"]
    cancelled = runs.exclude(run_type="trial").get(status="cancelled")
    assert cancelled.started_at is None
    # A score run measures nothing (no labels yet): it writes predictions.
    assert all(r.metrics_json for r in runs.filter(status="succeeded").exclude(run_type="score"))
    assert all(r.artifacts_json["scoring"]["rows"] for r in runs.filter(run_type="score"))

    # The loop: the site scorer watched daily, a covariate-drift episode, then a concept change
    # that stays. Each opening of the calibration alert starts a retrain (the check does); the
    # promotion is manual, so the lead reviews each: the first challenger (covariate drift:
    # nothing to learn) is not better, the champion stays and the challenger is archived; the
    # second learned the new ground truth and wins on the same held-out window, so the lead
    # A/B tests it, and the test's result promotes it.
    scorer = models["BurgerBay site scorer"]
    assert scorer.status == "staging"
    retrains = list(Retrain.objects.filter(recipe=scorer.recipe).order_by("created_at"))
    assert [(r.trigger, r.status, r.decision) for r in retrains] == [
        ("alert", "decided", "review"),
        ("alert", "decided", "review"),
    ]
    assert all(r.champion == scorer and r.trigger_json["alert"] == "calibration_critical" for r in retrains)
    assert all("promotion is manual" in r.reason for r in retrains)
    kept, tested = retrains
    assert (
        kept.comparison_json["improvement"] < 0 < AB_MIN_IMPROVEMENT <= tested.comparison_json["improvement"]
    )
    assert kept.challenger.status == "archived"
    assert tested.window_json["holdout"]["concept"] == tested.window_json["train"]["concept"]
    champion = tested.challenger
    assert champion.status == "production" and champion.challenger_of == scorer

    # The A/B test: started on the recipe with the production model and the winning
    # challenger, every served site given its outcome, stopped with the challenger as the
    # winner once both arms passed the horizon, which promoted it (audited).
    experiment = Experiment.objects.get(recipe=scorer.recipe)
    assert (experiment.mode, experiment.split, experiment.unit_key, experiment.horizon) == (
        "ab",
        0.5,
        "site_id",
        AB_HORIZON,
    )
    assert (experiment.champion, experiment.challenger) == (scorer, champion)
    assert (experiment.status, experiment.winner) == ("stopped", "challenger")
    posted = AuditEvent.objects.filter(action="experiment.outcomes", object_id=experiment.pk)
    assert posted.count() >= 2  # the outcomes came in several posts, one per batch of traffic
    outcomes = Outcome.objects.filter(experiment=experiment)
    assert outcomes.count() == sum(e.detail["recorded"] for e in posted)
    assert all(e.detail["replaced"] == 0 and e.detail["unknown_units"] == 0 for e in posted)
    exposures = Exposure.objects.filter(experiment=experiment)
    assert outcomes.count() == exposures.count()  # every site served got its outcome
    assert set(outcomes.values_list("unit", "arm")) == set(exposures.values_list("unit", "arm"))
    assert all(v >= 0 for v in outcomes.values_list("value", flat=True))  # absolute errors
    analysis = experiment.result_json["analysis"]
    assert analysis["final"] and analysis["significant"]
    assert all(arm["n"] >= AB_HORIZON for arm in analysis["arms"].values())
    assert analysis["difference"]["high"] < 0  # the challenger's forecasts miss by less
    stop = AuditEvent.objects.get(action="experiment.stop", object_id=experiment.pk)
    assert stop.detail == {"winner": "challenger", "promoted": champion.pk, "replaced": [scorer.pk]}
    promotion = AuditEvent.objects.get(
        action="model.status", object_id=champion.pk, changes__status=["staging", "production"]
    )
    assert champion.promoted_at <= promotion.at <= stop.at
    assert promotion.actor_username == stop.actor_username == experiment.created_by.username
    # The old champion's daily checks: consecutive windows of one world; the concept-change days
    # carry the concept and no feature drift.
    daily = list(scorer.snapshots.order_by("captured_at"))
    assert len(daily) == DAYS
    assert {s.source for s in daily} == {"scheduled"}
    shifted = [s.drift_metrics_json["max_psi"] for i, s in enumerate(daily) if i in drift_schedule(DAYS)]
    calm = [s.drift_metrics_json["max_psi"] for i, s in enumerate(daily) if i not in drift_schedule(DAYS)]
    assert min(shifted) > 0.2 > max(calm)
    drift_alert = scorer.alerts.get(name="feature_drift")
    assert drift_alert.state == "resolved"
    assert drift_alert.fired_at < drift_alert.resolved_at
    assert drift_alert.first_snapshot.captured_at == drift_alert.fired_at
    batches = [s.data_freshness_json["batch"] for s in daily]
    assert {b["seed"] for b in batches} == {scorer.training_run.params_json["synthetic"]["seed"]}
    changed = [s for i, s in enumerate(daily) if i in concept_schedule(DAYS)]
    assert changed and all(s.data_freshness_json["batch"]["concept"] for s in changed)
    assert all(s.drift_metrics_json["drifted_count"] == 0 for s in changed)
    opened = scorer.alerts.filter(name="calibration_critical").order_by("fired_at").last()
    assert opened.first_snapshot.data_freshness_json["batch"]["concept"]
    assert tested.trigger_json["snapshot_id"] == opened.first_snapshot_id
    assert opened.state == "firing"  # the old champion stays miscalibrated until the test
    assert not champion.alerts.filter(state="firing").exists()  # the new champion is healthy
    assert models["Skyline Mobile retention uplift"].snapshots.exists()
    # The new champion's scored batches: real score runs, each checked; the oldest has its
    # outcomes, recorded as a snapshot of their own.
    scored = list(ScoringBatch.objects.filter(model=champion).order_by("scheduled_for"))
    assert len(scored) == SCORED_BATCHES
    assert scored[0].scheduled_for >= experiment.stopped_at  # after its promotion
    assert all(b.run.run_type == "score" and b.run.status == "succeeded" and b.snapshot for b in scored)
    assert scored[0].outcome_rows == scored[0].run.artifacts_json["scoring"]["rows"]
    # its version asks for contribution columns beside the predictions (runs.explain.batch)
    assert {"base_value", "contrib_competitor_count"} <= set(
        scored[0].run.artifacts_json["scoring"]["columns"]
    )
    assert scored[0].unmatched_rows == 0 and scored[0].performance_json
    assert scored[0].outcome_snapshot.source == "outcomes"
    assert scored[0].outcome_snapshot.performance_metrics_json["calibration"] < 0.1  # no alert
    assert all(b.outcomes_at is None for b in scored[1:])
    hook = Webhook.objects.get(client=scorer.recipe.client)
    assert not hook.active and {"retrain.decided", "experiment.result"} <= set(hook.events)

    # The tune run, after the demo's transaction: on a version of the site scorer's recipe
    # with a tuning section, every trial it asked for finished (complete, or pruned: cancelled
    # with the pruner's reason) as a child run, its study readable as the study page reads it.
    tune_run = runs.get(run_type="tune")
    assert (tune_run.recipe.name, tune_run.status) == (TUNED_RECIPE, "succeeded")
    config = spec_tuning.config(tune_run.recipe_version.manifest, tune_run.recipe.model_family)
    trials = list(runs.filter(parent=tune_run))
    finished = [t for t in trials if t.status == "succeeded" or t.error.startswith("Pruned")]
    assert len(trials) == len(finished) == config.n_trials and config.parallel == 2
    assert {t.run_type for t in trials} == {"trial"}
    study = tune_study(tune_run)
    assert sum(study["counts"].values()) == config.n_trials
    assert {row["run_id"] for row in study["trials"]} == {t.pk for t in trials}
    # Compared with a train run of the tuned version on the same rows; the best saved as the
    # next version only when it beats that run on the holdout, and the output says the figures.
    train = runs.get(run_type="train", recipe_version=tune_run.recipe_version)
    assert train.params_json["synthetic"] == tune_run.params_json["synthetic"]
    found, own = tune_run.metrics_json[config.metric], train.metrics_json[config.metric]
    assert f"{found:.4f}" in output and f"{own:.4f}" in output
    saved = RecipeVersion.objects.filter(
        recipe=tune_run.recipe, changelog__contains=f"tune run #{tune_run.number}"
    )
    better = found > own if config.direction == "maximize" else found < own
    if better:
        version = saved.get()
        assert version == tune_run.recipe.current_version and f"saved as version {version.version}" in output
        hyper = next(s for s in version.manifest["pipeline"]["stages"] if s["type"] == "training")
        best = study["best"]["params"]
        assert {k: hyper["config"]["hyperparameters"][k] for k in best} == best
    else:
        assert not saved.exists() and "not saved" in output

    before = _counts()
    again = _seed()
    assert "already there" in again
    assert _counts() == before


def test_the_tune_step_needs_the_demo_committed(db):
    # Inside a transaction (this test's), the study's own connection would wait for its lock.
    demo = DemoBuilder(user=demo_user(), days=DAYS, rows=MIN_ROWS, log=lambda message: None)
    with pytest.raises(DemoError, match="needs the demo committed"):
        tune(demo)
    assert not Run.objects.exists() and not RecipeVersion.objects.exists()


def test_a_failed_tune_step_says_the_demo_was_saved(monkeypatch):
    def failing(**kwargs):
        raise DemoTuningError("tune run run_x of 'BurgerBay' ended 'failed'")

    monkeypatch.setattr(seed_demo_command, "seed_demo", failing)
    with pytest.raises(CommandError, match="The demo was built and saved, but its tune run failed: tune run"):
        call_command("seed_demo", stdout=StringIO())


def test_seed_demo_refuses_too_few_rows(db):
    with pytest.raises(CommandError, match=f"at least {MIN_ROWS}"):
        call_command("seed_demo", rows=50, stdout=StringIO())
    assert not Recipe.objects.filter(name=MARKER_NAME).exists()


@pytest.mark.django_db
def test_demo_datasets_one_meeting_its_recipe_one_with_too_little_history(as_user, baselines, user):
    # The demo's client recipes, stood in for by the baselines of the same families.
    Recipe.objects.filter(pk="recipe_forecasting_base").update(name="FreshMart Stores")
    Recipe.objects.filter(pk="recipe_pricing_base").update(name="VoltMart")
    lines = []
    sales, price_test = seed_datasets(user=user, rows=3000, log=lines.append)
    assert (sales.format, sales.recipe_id, sales.validation_json["valid"]) == (
        "csv",
        "recipe_forecasting_base",
        True,
    )
    assert (price_test.format, price_test.validation_json["valid"]) == ("parquet", False)
    assert any("min_history" in e for e in price_test.validation_json["errors"])
    assert len(lines) == 2
    listed = as_user.get("/model-development/datasets").context["page"].object_list
    assert {d.pk for d in listed} == {sales.pk, price_test.pk}
