"""The demo's recipes, one function per family: industry and client recipes, their versions
and approvals, models trained and promoted, runs of every kind. The site-scoring family also
runs the production loop (workspace.demo.loop) on its production model."""

from __future__ import annotations

from models_registry.models import MLModel, ModelStatus
from models_registry.services import model_register
from notifications.services import webhook_create
from recipes.models import Recipe, RecipeStatus
from recipes.services import recipe_update
from runs.models import RunStatus, RunType
from runs.services import run_cancel, run_move_in_time

from .builder import MARKER_NAME, DemoBuilder, stage
from .loop import BATCH_ROWS, SCORED_BATCHES, ab_test, concept_schedule, drift_schedule, history, scoring

# Uplift metrics are differences of two conversion rates in the top decile: the NBA model
# trains on this many times `rows` and is checked on larger batches, otherwise its
# incremental-revenue alert flaps on sampling noise alone.
NBA_ROWS_FACTOR = 3
NBA_BATCH_ROWS = 5000
# Pricing needs 52 weeks of history; 60 synthetic rows span about 7 weeks.
FAILING_PRICING_ROWS = 60


def forecasting(demo: DemoBuilder, baseline: Recipe) -> None:
    grocery = demo.clone(
        baseline,
        MARKER_NAME,
        "Daily store x product demand for grocery chains: fresh, ambient and frozen ranges, "
        "weekly promotions and price changes.",
        ["grocery", "retail", "demand"],
        day=3,
    )
    demo.approve(grocery, "1.0.0", day=6)

    def tighter(m):
        m["evaluation"]["metrics"]["MAPE"]["target"] = 0.2
        m["evaluation"]["metrics"]["WAPE"]["target"] = 0.16

    demo.new_version(
        grocery, "1.1.0", "Tighter MAPE (0.20) and WAPE (0.16) targets for grocery", tighter, day=27
    )
    demo.approve(grocery, "1.1.0", day=29)

    def fresher(m):
        m["monitoring"]["freshness"]["max_age_hours"] = 24
        m["monitoring"]["alerts"]["wape_high"] = {"condition": "WAPE > 0.28", "severity": "warning"}

    demo.new_version(grocery, "1.2.0", "Daily freshness SLA and a WAPE alert", fresher, day=55)
    demo.approve(grocery, "1.2.0", day=58, evidence_seed=11)

    freshmart = demo.clone(
        grocery,
        "FreshMart Stores",
        "FreshMart's 240 supermarkets and express stores: replenishment forecasts per store and SKU.",
        ["grocery", "freshmart"],
        day=64,
    )
    version = demo.approve(freshmart, day=66)
    model = demo.trained_model(freshmart, version, "FreshMart demand forecaster", seed=21, day=68)
    # Staging, not evaluated: the forecasting generator always covers the same dates, so
    # an eval run on fresh synthetic data would ask for forecasts inside the history.
    demo.set_status(model, ModelStatus.STAGING, day=71)

    greengrocer = demo.clone(
        grocery,
        "GreenGrocer Co",
        "GreenGrocer's organic neighbourhood stores: short shelf-life produce, fewer promotions.",
        ["grocery", "greengrocer"],
        change=lambda m: stage(m, "training")["config"].update(horizon=28),
        day=118,
    )
    recipe_update(recipe=greengrocer, user=demo.user, status=RecipeStatus.IN_REVIEW, at=demo.on(121))
    demo.say("  'GreenGrocer Co' sent for review")


def pricing(demo: DemoBuilder, baseline: Recipe) -> None:
    electronics = demo.clone(
        baseline,
        "Consumer Electronics Pricing",
        "Weekly regular-price optimisation for consumer electronics: strong seasonality "
        "(Black Friday, back to school) and thin margins.",
        ["electronics", "retail", "pricing"],
        day=9,
    )
    demo.approve(electronics, day=14, evidence_seed=12)

    voltmart = demo.clone(
        electronics,
        "VoltMart",
        "VoltMart's 80 big-box stores: margin-maximising prices within +/-10% of today's.",
        ["electronics", "voltmart"],
        change=lambda m: stage(m, "training")["config"]["price_bounds"].update(
            min_change=-0.1, max_change=0.1
        ),
        day=34,
    )
    version = demo.approve(voltmart, day=37)
    model = model_register(
        user=demo.user,
        name="VoltMart price elasticity",
        recipe=voltmart,
        recipe_version=version,
        at=demo.on(39),
    )
    demo.summary["models"].append(model)
    demo.say(f"model '{model.name}' registered on 'VoltMart' {version.version}")
    # Seven weeks of data for a recipe that needs 52: the quality stage fails the run
    # (naming the time column) and the model stays registered, untrained.
    demo.execute(
        demo.start(voltmart, model=model, version=version, rows=FAILING_PRICING_ROWS, seed=31),
        expect=RunStatus.FAILED,
        day=39,
    )

    # Electronics improves after VoltMart was cloned: VoltMart shows "upstream update".
    def calibrated(m):
        m["evaluation"]["metrics"]["calibration"]["target"] = 0.015
        stage(m, "evaluation")["config"]["curve_points"] = 61

    demo.new_version(
        electronics, "1.1.0", "Tighter calibration target; finer demand curves", calibrated, day=84
    )
    demo.approve(electronics, "1.1.0", day=86)

    legacy = demo.clone(
        baseline,
        "Department Store Pricing (2023)",
        "Superseded by Consumer Electronics Pricing after the 2024 category review.",
        ["department-store", "pricing"],
        day=0,
    )
    demo.approve(legacy, day=2)
    recipe_update(recipe=legacy, user=demo.user, status=RecipeStatus.DEPRECATED, at=demo.on(128))
    demo.say("  'Department Store Pricing (2023)' deprecated")


def next_best_action(demo: DemoBuilder, baseline: Recipe) -> None:
    telco = demo.clone(
        baseline,
        "Telco Retention Offers",
        "Which customers to send a retention offer (bonus data, handset discount) before "
        "their contract ends.",
        ["telco", "retention", "uplift"],
        day=12,
    )
    demo.approve(telco, day=15)
    skyline = demo.clone(
        telco,
        "Skyline Mobile",
        "Skyline Mobile's prepaid and contract base: monthly retention campaign.",
        ["telco", "skyline"],
        day=42,
    )
    version = demo.approve(skyline, day=45)
    nba_rows = demo.rows * NBA_ROWS_FACTOR
    model = demo.trained_model(
        skyline, version, "Skyline Mobile retention uplift", seed=41, rows=nba_rows, day=48
    )
    demo.set_status(model, ModelStatus.STAGING, ModelStatus.PRODUCTION, day=52, every=5)
    demo.execute(demo.start(skyline, run_type=RunType.EVAL, model=model, seed=43, rows=nba_rows), day=60)
    # A retrain someone thought better of: cancelled while still queued, never started.
    run = run_cancel(run=demo.start(skyline, seed=42), user=demo.user)
    run = run_move_in_time(run=run, at=demo.on(125))
    demo.summary["runs"].append(run)
    demo.say(f"  train run on 'Skyline Mobile' {run.status} before it started")
    history(demo, model, days=min(demo.days, 30), rows=min(NBA_BATCH_ROWS, nba_rows))


def location_scoring(demo: DemoBuilder, baseline: Recipe) -> None:
    qsr = demo.clone(
        baseline,
        "Quick-Service Restaurants Site Scoring",
        "Expected annual sales of drive-thru and in-line quick-service restaurant sites.",
        ["qsr", "restaurants", "site-selection"],
        day=7,
    )
    demo.approve(qsr, day=10)
    burgerbay = demo.clone(
        qsr,
        "BurgerBay",
        "BurgerBay's expansion programme: ranks candidate sites for 40 openings a year.",
        ["qsr", "burgerbay"],
        day=24,
    )
    # Where the loop's news would go: BurgerBay's ops channel, an example receiver left
    # inactive (no network in the demo) until someone points it at a real endpoint.
    webhook_create(
        user=demo.user,
        name="BurgerBay ops channel (example)",
        url="https://hooks.example.invalid/burgerbay-ops",
        client=burgerbay.client,
        events=[
            "alert.opened",
            "alert.resolved",
            "retrain.decided",
            "comparison.verdict",
            "model.status",
            "experiment.result",
        ],
        active=False,
    )
    first = demo.approve(burgerbay, day=28, evidence_seed=50)
    old = demo.trained_model(burgerbay, first, "BurgerBay site scorer 2024", seed=51, day=31)
    demo.set_status(old, ModelStatus.STAGING, ModelStatus.PRODUCTION, day=35, every=5)

    def daily(m):
        m["deployment"]["schedule"] = "0 4 * * *"
        # Each scored batch carries the first sites' contributions (contrib_<feature>, base_value).
        stage(m, "deployment").setdefault("config", {}).update(explain=True, explain_rows=200)
        # The loop: the calibration alert retrains the model; a person decides on the
        # challenger (manual promotion) — here with an A/B test (loop.ab_test).
        m["retraining"] = {
            "triggers": {"alerts": ["calibration_critical"]},
            "cooldown": "1 day",
            "promotion": {"mode": "manual"},
        }
        hp = stage(m, "training")["config"]["hyperparameters"]
        hp.update(num_boost_round=400, learning_rate=0.04)

    demo.new_version(
        burgerbay,
        "1.1.0",
        "Daily rescoring with the first 200 sites' contributions; more, smaller boosting steps; "
        "retraining on the calibration alert",
        daily,
        day=103,
    )
    second = demo.approve(burgerbay, "1.1.0", day=109, evidence_seed=50)
    model = demo.trained_model(burgerbay, second, "BurgerBay site scorer", seed=52, day=113)
    demo.set_status(model, ModelStatus.STAGING, ModelStatus.PRODUCTION, day=117, every=5)
    demo.set_status(MLModel.objects.get(pk=old.pk), ModelStatus.ARCHIVED, day=124)
    demo.execute(demo.start(burgerbay, run_type=RunType.EVAL, model=model, version=second, seed=53), day=126)
    champion, candidate = history(
        demo,
        model,
        days=demo.days,
        rows=min(BATCH_ROWS, demo.rows),
        shifts=drift_schedule(demo.days),
        concepts=concept_schedule(demo.days),
    )
    if candidate is not None:
        champion = ab_test(demo, champion, candidate)
    for m in {model.pk: model, champion.pk: champion}.values():
        demo.summary["alerts"].extend(m.alerts.order_by("fired_at"))
    scoring(demo, champion, batches=SCORED_BATCHES, rows=min(BATCH_ROWS, demo.rows))
