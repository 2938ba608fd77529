"""A realistic demo workspace, built only through the services and real runs (`seed_demo`).

Every row comes from the same code paths a user's clicks take: recipes are cloned and
versioned with `recipes.services`, models registered and promoted with
`models_registry.services`, runs started with `runs.services` and executed by the real
executor (in-process, one child process per run), and the monitoring history is a daily
`monitoring.services.model_check` on the next window of the model's synthetic world, so drift,
performance and alert episodes are computed, never typed in.

What it builds (names below are the demo's fixed names):

- under each baseline an industry recipe and one or two client recipes: versions with
  approvals, one recipe in review, one deprecated;
- models in every lifecycle status: registered (its training run failed), staging,
  production (two, each with daily monitoring history) and archived (replaced);
- runs of every type and ending: train, eval, backtest, one failed (too little history for
  the recipe's min_history), one cancelled before it started;
- months of history before the monitoring starts: every write passes an explicit time
  (`at=`, DemoBuilder.on), so versions are weeks apart, evidence runs come the day before
  the approvals they support and promotions after them, all before the first check;
- `days` of daily checks on the production site-scoring model: consecutive one-day windows
  of the world it was trained in, with a covariate-drift episode in the middle (a
  trade-area feature shifted by a growing amount: the `feature_drift` alert fires and
  resolves when the shift goes away) and a concept change later (a competitor opens next
  to half of the sites and stays: the features stay put, the calibration alert opens);
- the production loop on that model: its recipe's retraining policy retrains it when the
  calibration alert opens (the check starts the retrain), the challenger is trained on the
  new ground truth, compared with the champion on the same held-out window, wins and is
  promoted automatically; the new champion's checks are healthy;
- an example webhook for BurgerBay's ops channel (inactive: no network in the demo) on the
  Notifications page;
- then the new champion's batch scoring (it is deployed as a batch): the next few windows
  scored by real score runs and checked, and the oldest given its outcomes (the world's
  real labels), as `monitoring.scheduler` and POST /models/{id}/outcomes do.
"""

from __future__ import annotations

import copy
import io
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from mlworkspace.errors import Conflict
from models_registry.models import MLModel, ModelStatus
from models_registry.services import model_register, model_set_status
from monitoring.models import Retrain, RetrainDecision, RetrainStatus
from monitoring.services import (
    model_check,
    retrain_decide,
    scoring_check,
    scoring_claim_check,
    scoring_next_batch,
    scoring_outcomes,
    scoring_start,
)
from notifications.services import webhook_create
from recipes import client_services
from recipes.manifest import grain_columns
from recipes.models import Client, Level, Recipe, RecipeStatus, RecipeVersion
from recipes.services import recipe_clone, recipe_update, version_approve, version_create
from runs.executor import execute_run
from runs.families import get_family, worlds
from runs.models import Run, RunStatus, RunType
from runs.services import dataset_create, run_cancel, run_move_in_time, run_start

# The demo exists when this industry recipe (tagged "demo") does: everything is created in
# one transaction, so its presence means the whole demo is there.
MARKER_NAME = "Grocery Retail Forecasting"
DEMO_TAG = "demo"
DEMO_OVERRIDE = "Seeded demo: approved without an evidence run to keep seeding fast."

DEFAULT_DAYS = 90
DEFAULT_ROWS = 5000
# The smallest `rows` with which every run meant to succeed does: pricing's 52 weeks of
# min_history need about 2200 synthetic rows.
MIN_ROWS = 2500
# Rows of each daily monitoring batch: enough for stable PSI and ranking metrics.
BATCH_ROWS = 1500
# Uplift metrics are differences of two conversion rates in the top decile: the NBA model
# trains on this many times `rows` and is checked on larger batches, otherwise its
# incremental-revenue alert flaps on sampling noise alone.
NBA_ROWS_FACTOR = 3
NBA_BATCH_ROWS = 5000
# Pricing needs 52 weeks of history; 60 synthetic rows span about 7 weeks.
FAILING_PRICING_ROWS = 60
# Site-scoring feature shifted during the drift episode (a numeric monitoring.drift feature).
DRIFT_FEATURE = "population_3km"
# Days of workspace history before the monitoring history begins: recipes, versions weeks
# apart, runs before the approvals they support, promotions after them (see DemoBuilder.on).
LEAD_DAYS = 130
# Batch scoring of the production site scorer (deployment.mode: batch): its last few runs.
SCORED_BATCHES = 3


class DemoError(RuntimeError):
    """A step of the demo did not end as planned (e.g. a training run failed)."""


def demo_exists() -> bool:
    return Recipe.objects.filter(name=MARKER_NAME, level=Level.INDUSTRY, tag_set__name=DEMO_TAG).exists()


def demo_user():
    """The superuser `admin` (setup_workspace creates it), else a `demo` user (no password)."""
    User = get_user_model()
    user = User.objects.filter(username="admin").first()
    if user is None:
        user, created = User.objects.get_or_create(username="demo")
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
    return user


# The teams of two demo clients (users without a password: set one with `changepassword`);
# every other demo client has no team, so only superusers see it.
DEMO_TEAMS = {
    "FreshMart Stores": {"freshmart.lead": "lead", "freshmart.analyst": "data_scientist"},
    "VoltMart": {"voltmart.lead": "lead", "voltmart.viewer": "viewer"},
}


def demo_client(name: str, user):
    """The client a demo client recipe belongs to, named after it (created once), with its
    demo team; the demo's own user leads it unless a superuser (who sees every client)."""
    client = Client.objects.filter(slug=slugify(name)).first() or client_services.client_create(
        user=user, name=name, slug=slugify(name)
    )
    User = get_user_model()
    team = dict(DEMO_TEAMS.get(name, {}))
    for username, role in team.items():
        member, created = User.objects.get_or_create(username=username)
        if created:
            member.set_unusable_password()
            member.save(update_fields=["password"])
        client_services.membership_set(user=user, client=client, member=member, role=role)
    if user is not None and not user.is_superuser:
        client_services.membership_set(user=user, client=client, member=user, role="lead")
    return client


def drift_schedule(days: int) -> dict[int, float]:
    """Day index (0 = oldest) -> shift in reference standard deviations of DRIFT_FEATURE.

    The episode covers about 44-61% of the history (days 40-54 of 90) and grows from 0.4 to
    0.8 standard deviations in its first half (PSI from about 0.3 to above 1, where the
    model's calibration suffers too); outside it there is no shift, so the alerts resolve on
    the first day after it."""
    start = int(days * 0.44)
    end = max(start + 2, int(days * 0.61))
    if end >= days:  # too short a history for an episode with a recovery after it
        return {}
    length = end - start
    return {d: round(0.4 + 0.4 * min(1.0, 2 * (d - start) / length), 2) for d in range(start, end)}


def concept_schedule(days: int) -> set[int]:
    """Day indexes of the concept change: from about 72% of the history (day 65 of 90) to
    the end, after the covariate-drift episode. A competitor opens and stays: the features do
    not move, only the ground truth does, so a performance alert opens, the recipe's retraining
    policy trains a challenger on the new ground truth and promotes it, and the new champion's
    checks are healthy again."""
    start = int(days * 0.72)
    if start >= days - 1 or start <= max(drift_schedule(days), default=-1) + 1:
        return set()
    return set(range(start, days))


def _with_changes(manifest: dict, change: Callable[[dict], None]) -> dict:
    out = copy.deepcopy(manifest)
    change(out)
    return out


def _stage(manifest: dict, kind: str) -> dict:
    return next(s for s in manifest["pipeline"]["stages"] if s["type"] == kind)


class DemoBuilder:
    def __init__(self, *, user, days: int, rows: int, log: Callable[[str], None]):
        self.user = user
        self.days = days
        self.rows = rows
        self.log = log
        self.started = time.monotonic()
        self.summary: dict[str, list] = {"recipes": [], "models": [], "runs": [], "alerts": []}
        # Day 0 of the demo's history: LEAD_DAYS before the monitoring history, which ends now.
        self.origin = (timezone.now() - timedelta(days=days + LEAD_DAYS)).replace(
            hour=9, minute=0, second=0, microsecond=0
        )

    # --- helpers ---------------------------------------------------------------------------

    def say(self, message: str) -> None:
        self.log(f"[{time.monotonic() - self.started:6.1f}s] {message}")

    def on(self, day: float | None, hours: float = 1) -> datetime | None:
        """The time of a step of the demo's history: `day` days after its origin (09:00 on
        day 0), `hours` into the working day; the writes of the demo pass it as `at=`.
        None (no day given) is now."""
        return None if day is None else self.origin + timedelta(days=day, hours=hours)

    def clone(
        self,
        source: Recipe,
        name: str,
        description: str,
        tags: list[str],
        change=None,
        *,
        day: float | None = None,
    ) -> Recipe:
        manifest = None
        if change is not None:
            manifest = _with_changes(source.current_version.manifest, change)
        recipe = recipe_clone(
            source=source,
            user=self.user,
            name=name,
            description=description,
            tags=[*tags, DEMO_TAG],
            manifest=manifest,
            at=self.on(day),
            # A clone of an industry recipe is a client's: the client is named after it.
            client=demo_client(name, self.user) if source.level == Level.INDUSTRY else None,
        )
        self.summary["recipes"].append(recipe)
        self.say(f"recipe '{name}' ({recipe.level}, cloned from '{source.name}')")
        return recipe

    def new_version(
        self, recipe: Recipe, version: str, changelog: str, change, *, day: float | None = None
    ) -> RecipeVersion:
        recipe = Recipe.objects.get(pk=recipe.pk)  # fresh current_version
        created = version_create(
            recipe=recipe,
            user=self.user,
            manifest=_with_changes(recipe.current_version.manifest, change),
            version=version,
            changelog=changelog,
            at=self.on(day, hours=5),
        )
        self.say(f"  version {version} of '{recipe.name}': {changelog}")
        return created

    def approve(
        self,
        recipe: Recipe,
        version: str | None = None,
        *,
        day: float | None = None,
        evidence_seed: int | None = None,
    ) -> RecipeVersion:
        """Approve on `day` through the gate on a real backtest run the day before
        (`evidence_seed`), or — to keep seeding fast — with an override whose reason says so.
        A gate that fails is overridden too, with its reasons quoted, so the demo shows both
        kinds of record."""
        at = self.on(day, hours=6)
        recipe = Recipe.objects.get(pk=recipe.pk)
        target = recipe.versions.get(version=version) if version else recipe.current_version
        if evidence_seed is None:
            approved = version_approve(version=target, user=self.user, override_reason=DEMO_OVERRIDE, at=at)
            self.say(f"  approved '{recipe.name}' {approved.version} (override: no evidence run in the demo)")
            return approved
        self.execute(
            self.start(recipe, run_type=RunType.BACKTEST, version=target, seed=evidence_seed),
            day=None if day is None else day - 1,
        )
        try:
            approved = version_approve(version=target, user=self.user, at=at)
            self.say(f"  approved '{recipe.name}' {approved.version} on its backtest")
        except Conflict as exc:
            approved = version_approve(
                version=target,
                user=self.user,
                override_reason=f"Seeded demo, approved although: {exc.detail}",
                at=at,
            )
            self.say(f"  approved '{recipe.name}' {approved.version} by override: {exc.detail}")
        return approved

    def execute(
        self, run: Run, expect: str = RunStatus.SUCCEEDED, *, day: float | None = None, hours: float = 2
    ) -> Run:
        """Execute `run` now (the real executor), then date it `day` of the demo's history."""
        started = time.monotonic()
        outcome = execute_run(run.id)
        run.refresh_from_db()
        if day is not None:
            run = run_move_in_time(run=run, at=self.on(day, hours=hours))
        if outcome != expect:
            raise DemoError(
                f"{run.run_type} run {run.id} of '{run.recipe.name}' ended '{outcome}', "
                f"expected '{expect}': {run.error}"
            )
        self.summary["runs"].append(run)
        note = f": {run.error[:160]}" if run.error else ""
        self.say(
            f"  {run.run_type} run on '{run.recipe.name}' {run.recipe_version.version} "
            f"{run.status} in {time.monotonic() - started:.1f}s{note}"
        )
        return run

    def start(self, recipe: Recipe, *, run_type=RunType.TRAIN, model=None, version=None, rows=None, seed=1):
        return run_start(
            user=self.user,
            recipe=recipe,
            recipe_version=version,
            run_type=run_type,
            model=model,
            params={"synthetic": {"rows": rows or self.rows, "seed": seed}},
        )

    def trained_model(
        self,
        recipe: Recipe,
        version: RecipeVersion,
        name: str,
        *,
        seed: int,
        rows: int | None = None,
        day: float | None = None,
    ) -> MLModel:
        model = model_register(
            user=self.user, name=name, recipe=recipe, recipe_version=version, at=self.on(day)
        )
        self.say(f"model '{name}' registered on '{recipe.name}' {version.version}")
        self.execute(self.start(recipe, model=model, version=version, seed=seed, rows=rows), day=day)
        model.refresh_from_db()
        self.summary["models"].append(model)
        return model

    def set_status(
        self, model: MLModel, *statuses: str, day: float | None = None, every: float = 4
    ) -> MLModel:
        """Move `model` through `statuses`, the first on `day`, the next `every` days later."""
        first = day
        for i, status in enumerate(statuses):
            result = model_set_status(
                model=model,
                user=self.user,
                status=status,
                at=self.on(None if first is None else first + i * every, hours=7),
            )
            model = result["model"]
            replaced = f" (replaced {', '.join(result['replaced'])})" if result["replaced"] else ""
            self.say(f"  model '{model.name}' → {status}{replaced}")
        return model

    def history(
        self,
        model: MLModel,
        *,
        days: int,
        rows: int,
        shifts: dict[int, float] | None = None,
        concepts: set[int] | None = None,
    ) -> MLModel:
        """One scheduled check a day, oldest first, ending yesterday: consecutive one-day
        windows of the model's own synthetic world, continuing after its training data (each
        check resolves the window after the previous one), with the covariate drift of
        `shifts` and the family's concept change on the days of `concepts`. A retrain that a
        check starts (the recipe's retraining policy) is trained and decided two hours later,
        as the workers would; a promoted challenger takes over the checks. Returns the
        production model at the end."""
        shifts = shifts or {}
        concepts = concepts or set()
        concept = next(iter(get_family(model.recipe.model_family).CONCEPTS))
        now = timezone.now().replace(minute=0, second=0, microsecond=0)
        started = time.monotonic()
        for day in range(days):
            k = shifts.get(day, 0)
            synthetic = {"rows": rows, "periods": 1}
            if k:
                synthetic["shift"] = {DRIFT_FEATURE: k}
            if day in concepts:
                synthetic["concept"] = concept
            captured_at = now - timedelta(days=days - day)
            snapshot = model_check(
                model=model, source="scheduled", synthetic=synthetic, captured_at=captured_at
            )
            firing = [name for name, r in snapshot.alerts_json.items() if r.get("firing")]
            if k or firing or day in concepts:
                psi = snapshot.drift_metrics_json.get("max_psi")
                shifted = f"{DRIFT_FEATURE} shifted {k} sd, " if k else ""
                changed = f"concept change '{concept}', " if day in concepts else ""
                psi_text = f"max PSI {psi:.2f}, " if isinstance(psi, (int, float)) else ""
                self.say(
                    f"  day {day + 1}/{days}: {shifted}{changed}{psi_text}"
                    f"firing: {', '.join(firing) or 'nothing'}"
                )
            model = self.retrains(model, captured_at + timedelta(hours=2))
        batch = ((snapshot.data_freshness_json or {}).get("batch") or {}) if days else {}
        window = batch.get("window") or {}
        world = f" (world seed {batch['seed']}, up to {window.get('end')})" if batch else ""
        self.say(f"  {days} daily checks{world} in {time.monotonic() - started:.1f}s")
        return model

    def retrains(self, model: MLModel, at: datetime) -> MLModel:
        """Train and decide the retrains of `model` that a check just started (the workers'
        job), dated `at`; returns the production model after the decision."""
        for retrain in Retrain.objects.filter(champion=model, status=RetrainStatus.TRAINING):
            self.say(f"  retrain ({retrain.get_trigger_display().lower()}): {retrain.reason}")
            run = self.execute(retrain.run)
            run_move_in_time(run=run, at=at)
            decided = retrain_decide(retrain=retrain, at=at + timedelta(hours=1))
            self.say(
                f"  retrain decided: {decided.get_decision_display() or decided.status}: {decided.reason}"
            )
            if decided.decision == RetrainDecision.PROMOTED:
                model = MLModel.objects.get(pk=decided.challenger_id)
                self.summary["models"].append(model)
        return model

    # --- the demo --------------------------------------------------------------------------

    def build(self) -> dict:
        base = {r.model_family: r for r in Recipe.objects.filter(level=Level.BASELINE)}
        self.forecasting(base["forecasting"])
        self.pricing(base["pricing"])
        self.next_best_action(base["next_best_action"])
        self.location_scoring(base["location_scoring"])
        return self.summary

    def forecasting(self, baseline: Recipe) -> None:
        grocery = self.clone(
            baseline,
            MARKER_NAME,
            "Daily store x product demand for grocery chains: fresh, ambient and frozen ranges, "
            "weekly promotions and price changes.",
            ["grocery", "retail", "demand"],
            day=3,
        )
        self.approve(grocery, "1.0.0", day=6)

        def tighter(m):
            m["evaluation"]["metrics"]["MAPE"]["target"] = 0.2
            m["evaluation"]["metrics"]["WAPE"]["target"] = 0.16

        self.new_version(
            grocery, "1.1.0", "Tighter MAPE (0.20) and WAPE (0.16) targets for grocery", tighter, day=27
        )
        self.approve(grocery, "1.1.0", day=29)

        def fresher(m):
            m["monitoring"]["freshness"]["max_age_hours"] = 24
            m["monitoring"]["alerts"]["wape_high"] = {"condition": "WAPE > 0.28", "severity": "warning"}

        self.new_version(grocery, "1.2.0", "Daily freshness SLA and a WAPE alert", fresher, day=55)
        self.approve(grocery, "1.2.0", day=58, evidence_seed=11)

        freshmart = self.clone(
            grocery,
            "FreshMart Stores",
            "FreshMart's 240 supermarkets and express stores: replenishment forecasts per store and SKU.",
            ["grocery", "freshmart"],
            day=64,
        )
        version = self.approve(freshmart, day=66)
        model = self.trained_model(freshmart, version, "FreshMart demand forecaster", seed=21, day=68)
        # Staging, not evaluated: the forecasting generator always covers the same dates, so
        # an eval run on fresh synthetic data would ask for forecasts inside the history.
        self.set_status(model, ModelStatus.STAGING, day=71)

        greengrocer = self.clone(
            grocery,
            "GreenGrocer Co",
            "GreenGrocer's organic neighbourhood stores: short shelf-life produce, fewer promotions.",
            ["grocery", "greengrocer"],
            change=lambda m: _stage(m, "training")["config"].update(horizon=28),
            day=118,
        )
        recipe_update(recipe=greengrocer, user=self.user, status=RecipeStatus.IN_REVIEW, at=self.on(121))
        self.say("  'GreenGrocer Co' sent for review")

    def pricing(self, baseline: Recipe) -> None:
        electronics = self.clone(
            baseline,
            "Consumer Electronics Pricing",
            "Weekly regular-price optimisation for consumer electronics: strong seasonality "
            "(Black Friday, back to school) and thin margins.",
            ["electronics", "retail", "pricing"],
            day=9,
        )
        self.approve(electronics, day=14, evidence_seed=12)

        voltmart = self.clone(
            electronics,
            "VoltMart",
            "VoltMart's 80 big-box stores: margin-maximising prices within +/-10% of today's.",
            ["electronics", "voltmart"],
            change=lambda m: _stage(m, "training")["config"]["price_bounds"].update(
                min_change=-0.1, max_change=0.1
            ),
            day=34,
        )
        version = self.approve(voltmart, day=37)
        model = model_register(
            user=self.user,
            name="VoltMart price elasticity",
            recipe=voltmart,
            recipe_version=version,
            at=self.on(39),
        )
        self.summary["models"].append(model)
        self.say(f"model '{model.name}' registered on 'VoltMart' {version.version}")
        # Seven weeks of data for a recipe that needs 52: the quality stage fails the run
        # (naming the time column) and the model stays registered, untrained.
        self.execute(
            self.start(voltmart, model=model, version=version, rows=FAILING_PRICING_ROWS, seed=31),
            expect=RunStatus.FAILED,
            day=39,
        )

        # Electronics improves after VoltMart was cloned: VoltMart shows "upstream update".
        def calibrated(m):
            m["evaluation"]["metrics"]["calibration"]["target"] = 0.015
            _stage(m, "evaluation")["config"]["curve_points"] = 61

        self.new_version(
            electronics, "1.1.0", "Tighter calibration target; finer demand curves", calibrated, day=84
        )
        self.approve(electronics, "1.1.0", day=86)

        legacy = self.clone(
            baseline,
            "Department Store Pricing (2023)",
            "Superseded by Consumer Electronics Pricing after the 2024 category review.",
            ["department-store", "pricing"],
            day=0,
        )
        self.approve(legacy, day=2)
        recipe_update(recipe=legacy, user=self.user, status=RecipeStatus.DEPRECATED, at=self.on(128))
        self.say("  'Department Store Pricing (2023)' deprecated")

    def next_best_action(self, baseline: Recipe) -> None:
        telco = self.clone(
            baseline,
            "Telco Retention Offers",
            "Which customers to send a retention offer (bonus data, handset discount) before "
            "their contract ends.",
            ["telco", "retention", "uplift"],
            day=12,
        )
        self.approve(telco, day=15)
        skyline = self.clone(
            telco,
            "Skyline Mobile",
            "Skyline Mobile's prepaid and contract base: monthly retention campaign.",
            ["telco", "skyline"],
            day=42,
        )
        version = self.approve(skyline, day=45)
        nba_rows = self.rows * NBA_ROWS_FACTOR
        model = self.trained_model(
            skyline, version, "Skyline Mobile retention uplift", seed=41, rows=nba_rows, day=48
        )
        self.set_status(model, ModelStatus.STAGING, ModelStatus.PRODUCTION, day=52, every=5)
        self.execute(self.start(skyline, run_type=RunType.EVAL, model=model, seed=43, rows=nba_rows), day=60)
        # A retrain someone thought better of: cancelled while still queued, never started.
        run = run_cancel(run=self.start(skyline, seed=42), user=self.user)
        run = run_move_in_time(run=run, at=self.on(125))
        self.summary["runs"].append(run)
        self.say(f"  train run on 'Skyline Mobile' {run.status} before it started")
        self.history(model, days=min(self.days, 30), rows=min(NBA_BATCH_ROWS, nba_rows))

    def location_scoring(self, baseline: Recipe) -> None:
        qsr = self.clone(
            baseline,
            "Quick-Service Restaurants Site Scoring",
            "Expected annual sales of drive-thru and in-line quick-service restaurant sites.",
            ["qsr", "restaurants", "site-selection"],
            day=7,
        )
        self.approve(qsr, day=10)
        burgerbay = self.clone(
            qsr,
            "BurgerBay",
            "BurgerBay's expansion programme: ranks candidate sites for 40 openings a year.",
            ["qsr", "burgerbay"],
            day=24,
        )
        # Where the loop's news would go: BurgerBay's ops channel, an example receiver left
        # inactive (no network in the demo) until someone points it at a real endpoint.
        webhook_create(
            user=self.user,
            name="BurgerBay ops channel (example)",
            url="https://hooks.example.invalid/burgerbay-ops",
            client=burgerbay.client,
            events=[
                "alert.opened",
                "alert.resolved",
                "retrain.decided",
                "comparison.verdict",
                "model.status",
            ],
            active=False,
        )
        first = self.approve(burgerbay, day=28, evidence_seed=50)
        old = self.trained_model(burgerbay, first, "BurgerBay site scorer 2024", seed=51, day=31)
        self.set_status(old, ModelStatus.STAGING, ModelStatus.PRODUCTION, day=35, every=5)

        def daily(m):
            m["deployment"]["schedule"] = "0 4 * * *"
            # The loop: the calibration alert retrains the model; a better challenger replaces it.
            m["retraining"] = {
                "triggers": {"alerts": ["calibration_critical"]},
                "cooldown": "1 day",
                "promotion": {"mode": "auto", "min_improvement": 0.02},
            }
            hp = _stage(m, "training")["config"]["hyperparameters"]
            hp.update(num_boost_round=400, learning_rate=0.04)

        self.new_version(
            burgerbay,
            "1.1.0",
            "Daily rescoring; more, smaller boosting steps; automatic retraining",
            daily,
            day=103,
        )
        second = self.approve(burgerbay, "1.1.0", day=109, evidence_seed=50)
        model = self.trained_model(burgerbay, second, "BurgerBay site scorer", seed=52, day=113)
        self.set_status(model, ModelStatus.STAGING, ModelStatus.PRODUCTION, day=117, every=5)
        self.set_status(MLModel.objects.get(pk=old.pk), ModelStatus.ARCHIVED, day=124)
        self.execute(
            self.start(burgerbay, run_type=RunType.EVAL, model=model, version=second, seed=53), day=126
        )
        champion = self.history(
            model,
            days=self.days,
            rows=min(BATCH_ROWS, self.rows),
            shifts=drift_schedule(self.days),
            concepts=concept_schedule(self.days),
        )
        for m in {model.pk: model, champion.pk: champion}.values():
            self.summary["alerts"].extend(m.alerts.order_by("fired_at"))
        self.scoring(champion, batches=SCORED_BATCHES, rows=min(BATCH_ROWS, self.rows))

    def scoring(self, model: MLModel, *, batches: int, rows: int) -> None:
        """The last `batches` hours of the batch-mode model's schedule, as the workers run it:
        each slot's next window is scored by a real score run (dated at its slot) and checked;
        the oldest batch then gets its outcomes (the synthetic world's real labels for that
        window)."""
        family = get_family(model.recipe.model_family)
        manifest = model.recipe_version.manifest
        now = timezone.now().replace(minute=0, second=0, microsecond=0)
        scored = []
        for i in range(batches):
            when = now - timedelta(hours=batches - i)
            dataset, batch = scoring_next_batch(model, rows=rows)
            scoring = scoring_start(model=model, scheduled_for=when, dataset=dataset, batch=batch)
            self.execute(scoring.run)
            run_move_in_time(run=scoring.run, at=when)
            scoring_claim_check(scoring, when)
            scoring_check(batch=scoring, captured_at=when)
            scored.append(scoring)
        first = scored[0]
        truth = worlds.generate(family, first.batch_json)
        keys = [*grain_columns(manifest), *manifest["requirements"]["labels"]]
        result = scoring_outcomes(batch=first, rows=truth[keys].to_dict("records"), user=self.user)
        self.say(
            f"  {batches} scored batches of '{model.name}'; outcomes for {first.window_key}: "
            f"{result['outcome_rows']} rows matched, {result['unmatched_rows']} unmatched"
        )


def seed_datasets(*, user, rows: int, log: Callable[[str], None]) -> list:
    """Two uploaded datasets, through the upload service as a user's file would go: FreshMart's
    store sales as CSV (it meets its recipe's requirements) and a short VoltMart price test as
    Parquet (too little history for the recipe's min_history, as the upload's check says)."""
    made = []
    for recipe_name, file_name, n in [
        ("FreshMart Stores", "freshmart_store_sales.csv", rows),
        ("VoltMart", "voltmart_price_test.parquet", FAILING_PRICING_ROWS),
    ]:
        recipe = Recipe.objects.filter(name=recipe_name).order_by("created_at").first()
        if recipe is None:
            continue
        frame = get_family(recipe.model_family).generate(n, 7)
        buffer = io.BytesIO()
        if file_name.endswith(".csv"):
            buffer.write(frame.to_csv(index=False).encode())
        else:
            frame.to_parquet(buffer, index=False)
        upload = SimpleUploadedFile(file_name, buffer.getvalue())
        dataset = dataset_create(user=user, upload=upload, recipe=recipe)
        problems = dataset.validation_json.get("errors") or []
        log(
            f"dataset '{dataset.name}' ({dataset.row_count} rows) for '{recipe.name}': {len(problems)} problems"
        )
        made.append(dataset)
    return made


def seed_demo(
    *, days: int = DEFAULT_DAYS, rows: int = DEFAULT_ROWS, log: Callable[[str], None] = print
) -> dict | None:
    """Build the demo; None if it already exists.

    One transaction: a failure half-way leaves nothing behind (so a re-run starts clean),
    and runs are only enqueued for the workers at commit, when they have already been
    executed here (the workers then find them no longer queued and skip them), so no worker
    can claim a run before this process executes it. On SQLite the
    transaction holds the write lock for the whole build (about a minute and a half), so
    run it before starting the server and workers, as `make run DEMO=1` does."""
    if not Recipe.objects.filter(pk="recipe_pricing_base").exists():
        call_command("loaddata", "baseline_recipes", verbosity=0)
        log("Loaded the baseline recipes.")
    with transaction.atomic():
        # Two seeders at once (PostgreSQL): the second waits here, then finds the demo.
        list(Recipe.objects.select_for_update().filter(pk="recipe_forecasting_base").values_list("pk"))
        if demo_exists():
            return None
        builder = DemoBuilder(user=demo_user(), days=days, rows=rows, log=log)
        summary = builder.build()
        summary["datasets"] = seed_datasets(user=builder.user, rows=rows, log=builder.say)
        return summary
